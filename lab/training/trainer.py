"""The lab's `Trainer`: its loss, and the TrainingArguments a RunConfig becomes.

The loss is computed here for both tasks, never by the model's head. BERT-family heads accept
`**kwargs`, so transformers assumes their loss is already normalised over the whole accumulated
batch (`num_items_in_batch`) and skips the division by the accumulation steps; the heads still
average per micro-batch, so with k accumulation steps the loss and the gradients came out about
k times too large (transformers issue #47688). Here each micro-batch's summed cross-entropy is
divided by the number of labelled items (examples, or non -100 tokens for NER) of the whole
accumulated batch: one batch of 16 and 2 x 8 accumulated give the same loss and the same update.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import torch
from transformers import Trainer

from lab.config import RunConfig
from lab.data.preprocessing import IGNORE_INDEX
from lab.insight.dynamics import TrainingDynamics
from lab.methods.adapter import has_adapters, load_adapter_weights, save_adapters
from lab.training import metrics as lab_metrics
from lab.training.ordering import ReproducibleOrder


class LabTrainer(ReproducibleOrder, Trainer):
    """Trainer whose loss is normalised over the accumulated batch (see the module docstring).

    `virtual_tokens`: prompt tuning on token classification prepends that many positions to the
    sequence, so the token logits are longer than the labels; those first positions are dropped.
    `head_learning_rate`: the peak rate of the task head's parameters (`is_head_parameter`), when it
    differs from the others'; the scheduler scales both alike. `dynamics`: where the training pass's
    gold-label probabilities go, for batches that carry `example_index`.
    """

    # compute_loss divides by num_items_in_batch itself: training_step must not divide again.
    loss_is_scaled_for_ga = True

    def __init__(
        self,
        *args,
        virtual_tokens: int = 0,
        head_learning_rate: Optional[float] = None,
        dynamics: Optional[TrainingDynamics] = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.virtual_tokens = virtual_tokens
        self.head_learning_rate = head_learning_rate
        self.dynamics = dynamics  # records each training example's gold-label probability (the data map)
        # Makes the Trainer count num_items_in_batch over the accumulated batch for every model.
        self.model_accepts_loss_kwargs = True

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        if self.head_learning_rate is None or self.head_learning_rate == self.args.learning_rate:
            return optimizer
        trained_model = model if model is not None else self.model
        if trained_model is None:
            return optimizer
        head = {id(param) for name, param in trained_model.named_parameters() if is_head_parameter(name)}
        for group in list(optimizer.param_groups):  # before any step, so there is no state to move
            head_params = [param for param in group["params"] if id(param) in head]
            if head_params:
                group["params"] = [param for param in group["params"] if id(param) not in head]
                optimizer.add_param_group({**group, "params": head_params, "lr": self.head_learning_rate})
        optimizer.param_groups[:] = [group for group in optimizer.param_groups if group["params"]]
        return optimizer

    def _save(self, output_dir: Optional[str] = None, state_dict=None) -> None:
        """Bottleneck adapters save only what they trained (lab.methods.adapter), in checkpoints too; every
        other model saves the Trainer's way."""
        model = self.model
        if model is None or not has_adapters(model):
            return super()._save(output_dir, state_dict)
        folder = Path(output_dir or self.args.output_dir or ".")
        if self.args.should_save:
            save_adapters(model, folder, base_model=getattr(getattr(model, "config", None), "name_or_path", ""))
            if self.processing_class is not None:
                self.processing_class.save_pretrained(str(folder))
            torch.save(self.args, folder / "training_args.bin")

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        model = model or self.model
        if model is not None and has_adapters(model):
            return load_adapter_weights(model, resume_from_checkpoint)
        return super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_best_model(self) -> None:
        if self.model is not None and has_adapters(self.model) and self.state.best_model_checkpoint:
            return load_adapter_weights(self.model, self.state.best_model_checkpoint)
        return super()._load_best_model()

    def _get_eval_sampler(self, eval_dataset):
        # Not the Trainer's length-grouped eval sampler: its random order would not map predictions back to
        # examples. Longest first pads as little, and the scorer reads the same order (evaluation_order).
        return evaluation_order(eval_dataset["length"])

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        indices = inputs.pop("example_index", None)  # training examples' row numbers, for the data map
        outputs = model(**inputs)
        logits = outputs.logits[:, self.virtual_tokens :, :] if self.virtual_tokens else outputs.logits
        if indices is not None and self.dynamics is not None and model.training:
            self.dynamics.record(int(self.state.epoch or 0), indices, logits, labels)
        summed = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        counted_by_trainer = num_items_in_batch is not None
        if not counted_by_trainer:  # a caller outside train() or evaluate(): this batch alone
            num_items_in_batch = labels.ne(IGNORE_INDEX).sum()
        loss = summed / torch.as_tensor(num_items_in_batch, device=summed.device).clamp(min=1)
        if counted_by_trainer and self.args.average_tokens_across_devices and self.args.world_size > 1:
            # The Trainer counted every rank's items, and DDP averages the gradients over the ranks.
            loss = loss * self.accelerator.num_processes
        outputs.logits, outputs.loss = logits, loss
        return (loss, outputs) if return_outputs else loss


def is_head_parameter(name: str) -> bool:
    """A parameter of the newly initialised task head: the classifier (`score` in some architectures),
    or a module peft trains and saves beside the adapter (the head, and a trained pooler)."""
    return ".modules_to_save." in name or name.split(".")[0] in ("classifier", "score")


def evaluation_order(lengths: Sequence[int]) -> list[int]:
    """The order evaluation visits examples in: longest first (ties in dataset order)."""
    return sorted(range(len(lengths)), key=lambda index: -lengths[index])


def virtual_token_offset(config: RunConfig) -> int:
    """Logit positions that prompt tuning adds in front of a token-classification sequence."""
    return config.peft.num_virtual_tokens if (config.task == "ner" and config.peft.method == "prompt") else 0


def argmax_logits(logits, labels):
    # Keep only predicted ids during evaluation: storing full logits for a large eval set costs memory.
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(dim=-1)


def total_optimizer_steps(config: RunConfig, train_examples: int) -> int:
    t = config.train
    if t.max_steps:
        return t.max_steps
    world = max(1, t.num_devices)
    per_epoch = math.ceil(train_examples / (t.train_batch_size * world) / t.gradient_accumulation_steps)
    return max(1, math.ceil(per_epoch * t.epochs))


def training_arguments(
    config: RunConfig,
    output_dir: Path,
    device: str,
    precision: str,
    learning_rate: float,
    total_steps: int,
    progress_bar: bool,
) -> dict[str, Any]:
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
        # TensorBoard and MLflow are the lab's own callbacks (lab.training.trackers); these are the user's extras.
        report_to=list(config.tracking.report_to) or "none",
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
