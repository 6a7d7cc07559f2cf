"""The training engine: one run from a `RunConfig` to a saved model and a final report.

It is the Hugging Face `Trainer` (`lab.training.trainer`, which computes the loss) with the
callbacks of `lab.training.callbacks`: one turns Trainer logs into typed events for a sink (the
run store, the CLI, a test) and checks the stop flag every optimizer step, one drives AdaLoRA's
rank allocation. The story of a run, in order:

 1. load the tokenizer and the data splits;
 2. load the model with a new head and wrap it with the PEFT method, then tokenise without padding
    (the collator pads per batch), so a wrong file, model or method fails before the slow part;
 3. train with evaluation (and a checkpoint) every `eval_steps` or once per epoch;
 4. evaluate on the test split, save the model / adapter with tokenizer and label maps, write report.json.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path
from typing import Optional

import torch
from transformers import (
    EarlyStoppingCallback,
    PrinterCallback,
    ProgressCallback,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.utils import logging as hf_logging

from lab.config import TRUST_REMOTE_CODE_WARNING, VIRTUAL_TOKEN_METHODS, RunConfig
from lab.data.preprocessing import (
    EXAMPLE_INDEX,
    TokenisingStopped,
    effective_max_length,
    make_collator,
    tokenize_splits,
    words_cut,
)
from lab.data.splits import LoadedData, load_splits
from lab.errors import OUT_OF_MEMORY_ADVICE, LabError, Message, is_out_of_memory
from lab.events import (
    EstimateEvent,
    EventSink,
    LogEvent,
    ResultEvent,
    RunResult,
    RunStartedEvent,
    StatusEvent,
    TruncationEvent,
    discard,
)
from lab.insight.dynamics import EvaluationDynamicsCallback, needs_evaluation_sample, training_dynamics
from lab.insight.projection import ProjectionCallback, head_module
from lab.model.adapting import adapt, restore_adalora_ranks
from lab.model.defaults import head_learning_rate_for, learning_rate_for
from lab.model.device import pick_device, pick_precision
from lab.model.loading import load_model, load_tokenizer
from lab.model.parameters import ParameterCount, count_parameters
from lab.training.callbacks import AdaLoraAllocationCallback, EventCallback
from lab.training.estimate import estimate
from lab.training.lr_find import with_found_learning_rate
from lab.training.memory import RunMemory
from lab.training.model_card import write_model_card
from lab.training.saving import save_model, write_report
from lab.training.scoring import EvaluationScorer, WordReference
from lab.training.trackers import finish_trackers, tracker_callbacks
from lab.training.trainer import (
    LabTrainer,
    argmax_logits,
    evaluation_order,
    total_optimizer_steps,
    training_arguments,
    virtual_token_offset,
)


def train(
    config: RunConfig,
    output_dir: str | Path,
    sink: EventSink = discard,
    should_stop: Optional[threading.Event] = None,
    resume_from_checkpoint: Optional[str] = None,
    progress_bar: bool = False,
) -> RunResult:
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
    emit(StatusEvent(status="running", message=Message("loading data and model", "stage_loading")))
    if config.model.trust_remote_code:
        emit(LogEvent(level="warning", message=TRUST_REMOTE_CODE_WARNING.format(model=config.model.name_or_path)))
    set_seed(config.train.seed)

    # 1. Data.
    tokenizer = load_tokenizer(config.model, pre_split_words=config.task == "ner")
    loaded = load_splits(
        config.data, config.task, config.data.split_seed, log=lambda message: emit(LogEvent(message=message))
    )
    for note in loaded.notes:
        emit(LogEvent(message=note))
    emit(LogEvent(message=_describe_splits(loaded)))

    # 2. Model, before tokenising: a wrong model id or method shows at once, not after minutes of tokenising.
    device = pick_device(config.train.device)
    precision = pick_precision(config.train.precision, device)
    total_steps = total_optimizer_steps(config, len(loaded.splits["train"]))
    model = load_model(config.model, config.task, loaded.label_names, pad_token_id=tokenizer.pad_token_id)
    if config.train.gradient_checkpointing:
        model.gradient_checkpointing_enable()  # type: ignore[operator]  # a transformers model, typed nn.Module
    model, pooling = adapt(model, config, total_steps)
    params = count_parameters(model)
    if config.train.finds_learning_rate:  # learning_rate: auto, a range test on a copy of the model
        found = with_found_learning_rate(config, model, tokenizer, loaded, device, precision, emit, should_stop)
        if found is None:  # cancelled during the test: nothing trained, nothing to save
            return _cancelled_before_training(output_dir, params, started)
        config = found
    learning_rate = learning_rate_for(config, total_steps)  # an empty field picks the default for this budget
    head_learning_rate = head_learning_rate_for(config, total_steps)
    emit(LogEvent(message=f"{config.peft.method}: {params.describe()}" + (f"; pooling {pooling}" if pooling else "")))
    head_rate = f" (head {head_learning_rate:g})" if head_learning_rate != learning_rate else ""
    emit(
        LogEvent(
            message=f"device {device}, precision {precision}, learning rate {learning_rate:g}{head_rate}, "
            f"{total_steps} optimizer steps"
        )
    )
    # Prompt and prefix tuning's virtual tokens take positions of the model's position embeddings.
    max_length = effective_max_length(
        tokenizer,
        config.train.max_length,
        getattr(model.config, "max_position_embeddings", None),
        config.peft.num_virtual_tokens if config.peft.method in VIRTUAL_TOKEN_METHODS else 0,
    )
    if max_length < config.train.max_length:
        emit(
            LogEvent(
                level="warning",
                message=f"max_length {config.train.max_length} is more than this model can "
                f"take with {config.peft.method}: sequences are cut at {max_length}.",
            )
        )
    emit(
        RunStartedEvent(
            device=device,
            precision=precision,
            learning_rate=learning_rate,
            head_learning_rate=head_learning_rate if head_learning_rate != learning_rate else None,
            max_steps=total_steps,
            max_length=max_length,
            trainable_params=params.trainable,
            total_params=params.total,
            pooling=pooling or "",
        )
    )
    emit(StatusEvent(status="running", message=Message("tokenising", "stage_tokenising")))
    try:
        tokenized = tokenize_splits(loaded.splits, tokenizer, config.task, max_length, should_stop=should_stop)
    except TokenisingStopped:  # cancelled before any step: nothing trained, nothing to save
        return _cancelled_before_training(output_dir, params, started)
    references = _word_references(loaded, tokenized, emit, max_length) if config.task == "ner" else None
    preflight = estimate(config, loaded)
    emit(LogEvent(message=preflight.describe(), level="warning" if preflight.warning else "info"))
    if preflight.budget_warning:
        emit(LogEvent(message=preflight.budget_warning, level="warning"))
    emit(
        EstimateEvent(
            device=preflight.device,
            total_seconds=preflight.total_seconds,
            seconds_per_step=preflight.seconds_per_step,
            total_steps=preflight.total_steps,
        )
    )

    # 3. Train.
    scorer = EvaluationScorer(config.task, loaded.label_names, loaded.tag_scheme, references)
    args = TrainingArguments(
        **training_arguments(config, output_dir, device, precision, learning_rate, total_steps, progress_bar)
    )
    events = EventCallback(emit, scorer, should_stop)
    callbacks: list[TrainerCallback] = [events]
    if config.peft.method == "adalora":
        callbacks.append(AdaLoraAllocationCallback(emit))
        if resume_from_checkpoint:
            restore_adalora_ranks(model, resume_from_checkpoint)
            emit(
                LogEvent(
                    level="warning",
                    message="AdaLoRA keeps its importance scores outside checkpoints: "
                    "after this resume the allocation rebuilds them from this step "
                    "on (ranks pruned so far stay pruned).",
                )
            )
    if config.train.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.train.early_stopping_patience))
    # The data map and the moving embeddings: gathered from the training and evaluation passes.
    dynamics = training_dynamics(config.task, loaded)
    tokenized["train"] = tokenized["train"].add_column(EXAMPLE_INDEX, list(range(len(loaded.splits["train"]))))
    if needs_evaluation_sample(config, total_steps, len(loaded.splits["train"])):  # before the projection's callback
        callbacks.append(
            EvaluationDynamicsCallback(
                dynamics,
                tokenized["train"],
                make_collator(config.task, tokenizer),
                lambda: scorer.split,
                config.train.eval_batch_size,
                virtual_token_offset(config),
                seed=config.train.seed,
            )
        )
    if config.task == "classification":
        head = head_module(model)
        if head is not None:
            order = evaluation_order(tokenized["validation"]["length"])
            gold = [loaded.label_names[loaded.splits["validation"]["label"][i]] for i in order]
            callbacks.append(ProjectionCallback(emit, head, gold, lambda: scorer.split, seed=config.train.seed))
    trackers = tracker_callbacks(config, output_dir, scorer, config.name or output_dir.name) if is_main else []
    callbacks += trackers
    trainer = LabTrainer(
        model=model,
        args=args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        data_collator=make_collator(config.task, tokenizer),
        compute_metrics=scorer,
        preprocess_logits_for_metrics=argmax_logits,
        callbacks=callbacks,
        virtual_tokens=virtual_token_offset(config),
        head_learning_rate=head_learning_rate,
        dynamics=dynamics,
    )
    # Our EventCallback reports progress; the Trainer's own printers would repeat every log line.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    memory = RunMemory(device)  # this run's own peak, not the long-lived process's
    events.memory = memory
    try:
        try:
            trainer.train(resume_from_checkpoint=resume_from_checkpoint)
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not is_out_of_memory(exc):
                raise
            raise LabError(f"Out of memory during training: {OUT_OF_MEMORY_ADVICE}.", code="oom_training") from None
        completed_steps = trainer.state.global_step

        # Cancelled only if the stop request ended training early: a cancel that arrives after the last
        # step (during the final save, say) leaves a fully trained run, which completes.
        result = RunResult(
            status="cancelled" if events.stopped_on_request else "completed",
            output_dir=str(output_dir),
            trainable_params=params.trainable,
            total_params=params.total,
            completed_steps=completed_steps,
        )
        if result.status == "completed":
            # 4. Test, save, report.
            scorer.split = "test"
            emit(StatusEvent(status="running", message=Message("evaluating on the test split", "stage_testing")))
            trainer.evaluate(tokenized["test"], metric_key_prefix="test")
            result = dataclasses.replace(result, metrics=scorer.last_metrics, per_label=scorer.last_per_label)
            if is_main:
                emit(StatusEvent(status="running", message=Message("saving the model", "stage_saving")))
                save_model(trainer, config, loaded.label_names, output_dir / "model", max_length, pooling)
    except BaseException:
        if is_main:
            finish_trackers(trackers, output_dir, "failed")
        raise
    finally:
        peak = memory.stop()
    result = dataclasses.replace(result, wall_seconds=time.time() - started, peak_memory_mb=peak)
    if is_main:
        write_report(output_dir, config, loaded, result, scorer)
        if dynamics is not None:
            dynamics.write(output_dir)
        if result.status == "completed":
            write_model_card(output_dir / "model", config, loaded, result, f"{device} ({precision})")
        finish_trackers(trackers, output_dir, result.status)
        emit(ResultEvent.of(result))
    return result


def _word_references(loaded: LoadedData, tokenized, emit: EventSink, max_length: int) -> dict[str, WordReference]:
    """Each evaluated split's gold word tags and word ids, for scoring on words; logs what truncation cut."""
    names = loaded.label_names
    references = {}
    for split in ("validation", "test"):
        gold = [[names[t] for t in tags] for tags in loaded.splits[split]["tags"]]
        word_ids = tokenized[split]["word_ids"]
        order = evaluation_order(tokenized[split]["length"])  # the order predictions arrive in
        references[split] = WordReference([word_ids[i] for i in order], [gold[i] for i in order])
        cut = sum(words_cut(ids, len(tags)) for ids, tags in zip(word_ids, gold))
        if cut:
            total = sum(len(tags) for tags in gold)
            emit(TruncationEvent(split=split, max_length=max_length, words_cut=cut, words_total=total))
            emit(
                LogEvent(
                    level="warning",
                    message=f"{split}: max_length {max_length} cut off {cut:,} of {total:,} "
                    "words; they count as predicted O (lost recall).",
                )
            )
    return references


def _describe_splits(loaded: LoadedData) -> str:
    sizes = ", ".join(f"{name} {len(split):,}" for name, split in loaded.splits.items())
    return f"data: {loaded.source}; {sizes}; {len(loaded.label_names)} labels"


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _cancelled_before_training(output_dir: Path, params: ParameterCount, started: float) -> RunResult:
    """A run cancelled before its first step: nothing trained, nothing to save."""
    return RunResult(
        status="cancelled",
        output_dir=str(output_dir),
        trainable_params=params.trainable,
        total_params=params.total,
        wall_seconds=time.time() - started,
    )
