"""The training engine: one run from a `RunConfig` to a saved model and a final report.

It is the Hugging Face `Trainer` with three callbacks: one turns Trainer logs into typed events
for a sink (the run store, the CLI, a test), one checks the stop flag every optimizer step, one
drives AdaLoRA's rank allocation. The story of a run, in order:

 1. load the tokenizer and the data splits;
 2. load the model with a new head and wrap it with the PEFT method, then tokenise without padding
    (the collator pads per batch), so a wrong file, model or method fails before the slow part;
 3. train with evaluation (and a checkpoint) every `eval_steps` or once per epoch;
 4. evaluate on the test split, save the model / adapter with tokenizer and label maps, write report.json.
"""
from __future__ import annotations

import json
import math
import resource
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from transformers import EarlyStoppingCallback, PrinterCallback, ProgressCallback, Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.utils import logging as hf_logging

from lab import metrics as lab_metrics
from lab.config import TRUST_REMOTE_CODE_WARNING, RunConfig
from lab.data import LoadedData, load_splits
from lab.estimate import estimate
from lab.errors import OUT_OF_MEMORY_ADVICE, LabError, is_out_of_memory
from lab.events import EvalEvent, EventSink, LogEvent, ResultEvent, StatusEvent, StepEvent, discard
from lab.modeling import (LORA_FAMILY, apply_peft, count_parameters, load_model, load_tokenizer,
                          pick_device, pick_precision)
from lab.predict import MODEL_INFO_FILE
from lab.preprocessing import make_collator, tokenize_splits

# Learning rates measured on the offline MiniLM (see README, "Default learning rates").
# Small models and PEFT methods want much larger rates than full fine-tuning of bert-base.
DEFAULT_LEARNING_RATES: dict[str, dict[str, float]] = {
    "classification": {"full": 5e-5, "head": 5e-2, "lora": 1e-3, "adalora": 2e-3, "ia3": 3e-2,
                       "prompt": 2e-2, "prefix": 2e-2, "loha": 6e-3, "lokr": 5e-3},
    "ner": {"full": 3e-4, "head": 1e-2, "lora": 2e-3, "adalora": 6e-3, "ia3": 1e-2,
            "prompt": 2e-2, "prefix": 1e-2, "loha": 6e-3, "lokr": 1e-2},
}

REPORT_FILE = "report.json"


def learning_rate_for(config: RunConfig) -> float:
    return config.train.learning_rate or DEFAULT_LEARNING_RATES[config.task][config.peft.method]


@dataclass
class RunResult:
    status: str  # "completed" or "cancelled"
    output_dir: str
    metrics: dict[str, float] = field(default_factory=dict)
    per_label: list[dict[str, Any]] = field(default_factory=list)
    trainable_params: int = 0
    total_params: int = 0
    wall_seconds: float = 0.0
    peak_memory_mb: Optional[float] = None
    completed_steps: int = 0


def train(config: RunConfig, output_dir: str | Path, sink: EventSink = discard,
          should_stop: Optional[threading.Event] = None, resume_from_checkpoint: Optional[str] = None,
          progress_bar: bool = False) -> RunResult:
    """Train, evaluate and save one run. User mistakes raise LabError; cancelling returns status 'cancelled'."""
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # checkpoint "Writing model shards" bars; events carry progress
    config.validate()
    started = time.time()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    should_stop = should_stop or threading.Event()
    is_main = _is_main_process()
    emit = sink if is_main else discard
    emit(StatusEvent(status="running", message="loading data and model"))
    if config.model.trust_remote_code:
        emit(LogEvent(level="warning", message=TRUST_REMOTE_CODE_WARNING.format(model=config.model.name_or_path)))
    set_seed(config.train.seed)

    # 1. Data.
    tokenizer = load_tokenizer(config.model)
    loaded = load_splits(config.data, config.task, config.train.seed,
                         log=lambda message: emit(LogEvent(message=message)))
    for note in loaded.notes:
        emit(LogEvent(message=note))
    emit(LogEvent(message=_describe_splits(loaded)))

    # 2. Model, before tokenising: a wrong model id or method shows at once, not after minutes of tokenising.
    device = pick_device(config.train.device)
    precision = pick_precision(config.train.precision, device)
    total_steps = _total_optimizer_steps(config, len(loaded.splits["train"]))
    model = load_model(config.model, config.task, loaded.label_names, pad_token_id=tokenizer.pad_token_id)
    if config.train.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model = apply_peft(model, config.peft, config.task, total_steps)
    params = count_parameters(model)
    learning_rate = learning_rate_for(config)
    emit(LogEvent(message=f"{config.peft.method}: {params.describe()}"))
    emit(LogEvent(message=f"device {device}, precision {precision}, learning rate {learning_rate:g}, "
                          f"{total_steps} optimizer steps"))
    tokenized = tokenize_splits(loaded.splits, tokenizer, config.task, config.train.max_length)
    preflight = estimate(config, loaded)
    emit(LogEvent(message=preflight.describe(), level="warning" if preflight.warning else "info"))

    # 3. Train.
    scorer = EvaluationScorer(config.task, loaded.label_names)
    args = TrainingArguments(**_training_arguments(config, output_dir, device, precision, learning_rate, total_steps,
                                                   progress_bar))
    callbacks = [EventCallback(emit, scorer, should_stop)]
    if config.peft.method == "adalora":
        callbacks.append(AdaLoraAllocationCallback())
    if config.train.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.train.early_stopping_patience))
    trainer = LabTrainer(model=model, args=args, train_dataset=tokenized["train"],
                         eval_dataset=tokenized["validation"], processing_class=tokenizer,
                         data_collator=make_collator(config.task, tokenizer), compute_metrics=scorer,
                         preprocess_logits_for_metrics=_argmax_logits, callbacks=callbacks,
                         virtual_tokens=_virtual_token_offset(config))
    # Our EventCallback reports progress; the Trainer's own printers would repeat every log line.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    try:
        trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        raise LabError(f"Out of memory during training: {OUT_OF_MEMORY_ADVICE}.") from None
    completed_steps = trainer.state.global_step

    result = RunResult(status="cancelled" if should_stop.is_set() else "completed", output_dir=str(output_dir),
                       trainable_params=params.trainable, total_params=params.total, completed_steps=completed_steps)
    if result.status == "completed":
        # 4. Test, save, report.
        scorer.split = "test"
        trainer.evaluate(tokenized["test"], metric_key_prefix="test")
        result.metrics, result.per_label = scorer.last_metrics, scorer.last_per_label
        if is_main:
            save_model(trainer, config, loaded.label_names, output_dir / "model")
    result.wall_seconds = time.time() - started
    result.peak_memory_mb = peak_memory_mb(device)
    if is_main:
        write_report(output_dir, config, loaded, result, scorer)
        emit(ResultEvent(metrics=result.metrics, per_label=result.per_label, trainable_params=params.trainable,
                         total_params=params.total, wall_seconds=result.wall_seconds,
                         peak_memory_mb=result.peak_memory_mb, output_dir=str(output_dir)))
    return result


# ---- Trainer pieces --------------------------------------------------------------------------
class LabTrainer(Trainer):
    """Trainer that drops the logits of prompt tuning's virtual tokens on token classification.

    Prompt tuning prepends `num_virtual_tokens` positions to the sequence, so token logits are
    longer than the labels; the first positions belong to the virtual tokens.
    """

    def __init__(self, *args, virtual_tokens: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.virtual_tokens = virtual_tokens

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.virtual_tokens:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs.logits[:, self.virtual_tokens:, :]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(),
                                                 labels.reshape(-1), ignore_index=-100)
        outputs.logits = logits
        outputs.loss = loss
        return (loss, outputs) if return_outputs else loss


def _virtual_token_offset(config: RunConfig) -> int:
    return config.peft.num_virtual_tokens if (config.task == "ner" and config.peft.method == "prompt") else 0


def _argmax_logits(logits, labels):
    # Keep only predicted ids during evaluation: storing full logits for a large eval set costs memory.
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(dim=-1)


class EvaluationScorer:
    """`compute_metrics` for the Trainer; keeps the detailed tables of the last evaluation for events."""

    def __init__(self, task: str, label_names: list[str]):
        self.task = task
        self.label_names = label_names
        self.split = "validation"
        self.last_metrics: dict[str, float] = {}
        self.last_per_label: list[dict[str, Any]] = []
        self.last_confusion: dict[str, Any] = {}

    def __call__(self, prediction) -> dict[str, float]:
        predicted, labels = np.asarray(prediction.predictions), np.asarray(prediction.label_ids)
        names = self.label_names
        if self.task == "ner":
            keep = labels != -100
            true_tags = [[names[t] for t in row[mask]] for row, mask in zip(labels, keep)]
            pred_tags = [[names[p] for p in row[mask]] for row, mask in zip(predicted, keep)]
            report = lab_metrics.entity_report(true_tags, pred_tags)
            metrics = lab_metrics.entity_metrics(true_tags, pred_tags)
            confusion = lab_metrics.token_confusion_matrix(true_tags, pred_tags, names)
        else:
            report = lab_metrics.classification_report(labels, predicted, names)
            metrics = lab_metrics.classification_metrics(labels, predicted, names)
            confusion = lab_metrics.confusion_matrix(labels, predicted, names)
        self.last_metrics = {k: float(v) for k, v in metrics.items()}
        self.last_per_label = lab_metrics.report_to_records(report)
        self.last_confusion = confusion
        return self.last_metrics


class EventCallback(TrainerCallback):
    """Turns Trainer logs into StepEvents / EvalEvents and stops cooperatively when asked."""

    def __init__(self, emit: EventSink, scorer: EvaluationScorer, should_stop: threading.Event):
        self.emit, self.scorer, self.should_stop = emit, scorer, should_stop
        self.train_started = time.time()
        self.first_step = 0
        self.last_time = time.time()
        self.last_tokens = 0
        self.last_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.train_started = self.last_time = time.time()
        self.first_step = self.last_step = state.global_step
        self.last_tokens = state.num_input_tokens_seen
        self.emit(StatusEvent(status="running", message=f"training {state.max_steps} steps"))

    def on_step_end(self, args, state, control, **kwargs):
        if _any_rank_stopping(self.should_stop.is_set(), args.device):
            # Save where we are so a resume continues from this exact step.
            control.should_training_stop = True
            control.should_save = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs:
            return
        now = time.time()
        elapsed = now - self.train_started
        steps_done = state.global_step - self.first_step
        interval = max(now - self.last_time, 1e-9)
        tokens_per_second = (state.num_input_tokens_seen - self.last_tokens) / interval
        examples = (state.global_step - self.last_step) * args.train_batch_size * args.gradient_accumulation_steps
        eta = elapsed / steps_done * (state.max_steps - state.global_step) if steps_done else None
        self.last_time, self.last_tokens, self.last_step = now, state.num_input_tokens_seen, state.global_step
        self.emit(StepEvent(step=state.global_step, max_steps=state.max_steps, epoch=float(state.epoch or 0),
                            loss=float(logs["loss"]), learning_rate=float(logs.get("learning_rate", 0.0)),
                            grad_norm=_float_or_none(logs.get("grad_norm")),
                            tokens_per_second=tokens_per_second, examples_per_second=examples / interval,
                            elapsed_seconds=elapsed, eta_seconds=eta))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics = metrics or {}
        split = self.scorer.split
        loss = metrics.get(f"{'test' if split == 'test' else 'eval'}_loss")
        self.emit(EvalEvent(split=split, step=state.global_step, epoch=float(state.epoch or 0),
                            loss=_float_or_none(loss), metrics=dict(self.scorer.last_metrics),
                            per_label=list(self.scorer.last_per_label),
                            confusion=dict(self.scorer.last_confusion)))


class AdaLoraAllocationCallback(TrainerCallback):
    """AdaLoRA prunes ranks only if `update_and_allocate` runs after every optimizer step
    (before gradients are zeroed); the Trainer does not call it (peft issues #1801, #3373)."""

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        peft_model = getattr(model, "module", model)
        peft_model.base_model.update_and_allocate(state.global_step)


def _any_rank_stopping(stop: bool, device: torch.device) -> bool:
    """Each rank reads the cancel flag on its own; agree on it so all ranks stop at the same step."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return stop
    if torch.distributed.get_world_size() == 1:
        return stop
    flag = torch.tensor([1.0 if stop else 0.0], device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


def _float_or_none(value: Any) -> Optional[float]:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _total_optimizer_steps(config: RunConfig, train_examples: int) -> int:
    t = config.train
    if t.max_steps:
        return t.max_steps
    world = max(1, t.num_devices)
    per_epoch = math.ceil(train_examples / (t.train_batch_size * world) / t.gradient_accumulation_steps)
    return max(1, math.ceil(per_epoch * t.epochs))


def _training_arguments(config: RunConfig, output_dir: Path, device: str, precision: str, learning_rate: float,
                        total_steps: int, progress_bar: bool) -> dict[str, Any]:
    t = config.train
    by_steps = t.eval_steps > 0
    return dict(
        output_dir=str(output_dir / "checkpoints"),
        per_device_train_batch_size=t.train_batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        learning_rate=learning_rate,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        # Fused AdamW on every device (torch has CPU and MPS kernels too): on the 2-core CPU with MiniLM
        # it made the optimizer step 6x faster (147 -> 24 ms) and NER training 12% faster (python -m bench).
        optim={"adamw": "adamw_torch_fused", "sgd": "sgd", "adafactor": "adafactor"}[t.optimizer],
        optim_args=f"momentum={t.momentum}" if t.optimizer == "sgd" else None,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        seed=t.seed,
        data_seed=t.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device == "cpu",
        eval_strategy="steps" if by_steps else "epoch",
        eval_steps=t.eval_steps if by_steps else None,
        save_strategy="steps" if by_steps else "epoch",
        save_steps=t.eval_steps if by_steps else None,
        save_total_limit=t.save_total_limit,
        logging_strategy="steps",
        logging_steps=t.logging_steps,
        logging_first_step=True,
        load_best_model_at_end=t.early_stopping_patience > 0,
        metric_for_best_model=lab_metrics.primary_metric_name(config.task) if t.early_stopping_patience else None,
        greater_is_better=True if t.early_stopping_patience else None,
        report_to="none",
        disable_tqdm=not progress_bar,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        length_column_name="length",
        include_num_input_tokens_seen="non_padding",
        torch_compile=t.torch_compile,
        dataloader_num_workers=t.dataloader_workers,
        label_names=["labels"],
        # Keep the `length` column for the length-grouped sampler; the collator drops non-model columns.
        remove_unused_columns=False,
        tf32=True if device == "cuda" else None,
    )


# ---- saving and reporting ---------------------------------------------------------------------
def save_model(trainer, config: RunConfig, label_names: list[str], model_dir: Path) -> None:
    """Save the model (or adapter) with tokenizer, label maps and what `lab predict` needs to reload it."""
    model_dir.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(model_dir))
    info = {"task": config.task, "peft_method": config.peft.method, "base_model": config.model.name_or_path,
            "label_names": label_names, "max_length": config.train.max_length,
            "num_virtual_tokens": _virtual_token_offset(config),
            "trust_remote_code": config.model.trust_remote_code}
    (model_dir / MODEL_INFO_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
    if config.peft.merge_adapter and config.peft.method in LORA_FAMILY:
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(str(model_dir / "merged"))
        trainer.processing_class.save_pretrained(str(model_dir / "merged"))
        merged_info = dict(info, peft_method="full")
        (model_dir / "merged" / MODEL_INFO_FILE).write_text(json.dumps(merged_info, indent=2), encoding="utf-8")


def write_report(output_dir: Path, config: RunConfig, loaded: LoadedData, result: RunResult,
                 scorer: EvaluationScorer) -> None:
    report = {"run": config.to_dict(), "status": result.status, "data_source": loaded.source,
              "data_notes": loaded.notes, "split_sizes": {k: len(v) for k, v in loaded.splits.items()},
              "label_names": loaded.label_names, "test_metrics": result.metrics, "per_label": result.per_label,
              "confusion": scorer.last_confusion if result.status == "completed" else {},
              **{k: v for k, v in asdict(result).items() if k not in ("metrics", "per_label", "status")}}
    (output_dir / REPORT_FILE).write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")


def peak_memory_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    # ru_maxrss is KiB on Linux, bytes on macOS: the peak resident memory of this process.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def _describe_splits(loaded: LoadedData) -> str:
    sizes = ", ".join(f"{name} {len(split):,}" for name, split in loaded.splits.items())
    return f"data: {loaded.source}; {sizes}; {len(loaded.label_names)} labels"


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"
