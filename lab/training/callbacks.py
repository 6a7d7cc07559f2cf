"""The engine's Trainer callbacks: events for the run store, the cooperative stop, AdaLoRA's allocation."""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Optional

import torch
from transformers import TrainerCallback

from lab.errors import Message
from lab.events import EvalEvent, EventSink, ProgressEvent, RankEvent, StatusEvent, StepEvent, discard
from lab.insight.ranks import adalora_ranks
from lab.training.memory import RunMemory
from lab.training.pace import StepPace
from lab.training.scoring import EvaluationScorer


class EventCallback(TrainerCallback):
    """Turns Trainer logs into StepEvents / EvalEvents and stops cooperatively when asked."""

    def __init__(self, emit: EventSink, scorer: EvaluationScorer, should_stop: threading.Event):
        self.emit, self.scorer, self.should_stop = emit, scorer, should_stop
        self.train_started = time.time()
        self.last_time = time.time()
        self.last_tokens = 0
        self.last_step = 0
        self.stopped_on_request = False  # training ended early because should_stop was set
        self.pace = StepPace()  # the ETA follows the recent steps, not the run's average
        self.memory: Optional[RunMemory] = None  # the engine's meter, for the step events

    def on_train_begin(self, args, state, control, **kwargs):
        self.train_started = self.last_time = time.time()
        self.last_step = state.global_step
        self.last_tokens = state.num_input_tokens_seen
        self.pace = StepPace()
        self.pace.start(state.global_step, self.train_started)
        self.emit(
            StatusEvent(
                status="running",
                message=Message(f"training {state.max_steps} steps", "stage_training", steps=state.max_steps),
            )
        )

    def on_step_end(self, args, state, control, **kwargs):
        now = time.time()
        elapsed = now - self.train_started
        self.pace.step_done(state.global_step, now)
        if state.global_step >= state.max_steps:
            # The Trainer logs only every `logging_steps`: a run shorter than that would have no loss point.
            control.should_log = True
        self.emit(
            ProgressEvent(
                step=state.global_step,
                max_steps=state.max_steps,
                epoch=float(state.epoch or 0),
                elapsed_seconds=elapsed,
                eta_seconds=self._eta(state),
            )
        )
        if control.should_evaluate:  # the Trainer's flow callback (which runs first) asked for one now
            step = state.global_step
            self.emit(
                StatusEvent(
                    status="running", message=Message(f"evaluating at step {step}", "stage_evaluating", step=step)
                )
            )
        if any_rank_stopping(self.should_stop.is_set(), args.device):
            # Save where we are so a resume continues from this exact step.
            self.stopped_on_request = state.global_step < state.max_steps
            control.should_training_stop = True
            control.should_save = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs:
            return
        now = time.time()
        elapsed = now - self.train_started
        interval = max(now - self.last_time, 1e-9)
        tokens_per_second = (state.num_input_tokens_seen - self.last_tokens) / interval
        examples = (state.global_step - self.last_step) * args.train_batch_size * args.gradient_accumulation_steps
        eta = self._eta(state)
        self.last_time, self.last_tokens, self.last_step = now, state.num_input_tokens_seen, state.global_step
        self.emit(
            StepEvent(
                step=state.global_step,
                max_steps=state.max_steps,
                epoch=float(state.epoch or 0),
                loss=float(logs["loss"]),
                learning_rate=float(logs.get("learning_rate", 0.0)),
                grad_norm=float_or_none(logs.get("grad_norm")),
                tokens_per_second=tokens_per_second,
                examples_per_second=examples / interval,
                elapsed_seconds=elapsed,
                eta_seconds=eta,
                memory_mb=self.memory.current_mb() if self.memory else None,
            )
        )

    def _eta(self, state) -> Optional[float]:
        """The time left at the pace of the recent steps (evaluations and saves spread over the steps)."""
        return self.pace.eta(state.global_step, state.max_steps)

    def on_save(self, args, state, control, **kwargs):
        self.pace.pause_done(time.time())

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.pace.pause_done(time.time())
        metrics = metrics or {}
        split = self.scorer.split
        loss = metrics.get(f"{'test' if split == 'test' else 'eval'}_loss")
        self.emit(
            EvalEvent(
                split=split,
                step=state.global_step,
                epoch=float(state.epoch or 0),
                loss=float_or_none(loss),
                metrics=dict(self.scorer.last_metrics),
                per_label=list(self.scorer.last_per_label),
                confusion=dict(self.scorer.last_confusion),
            )
        )


class AdaLoraAllocationCallback(TrainerCallback):
    """AdaLoRA prunes ranks only if `update_and_allocate` runs after every optimizer step
    (before gradients are zeroed); the Trainer does not call it (peft issues #1801, #3373). At each
    evaluation the ranks each matrix keeps go out as a RankEvent, for the rank heatmap."""

    def __init__(self, emit: EventSink = discard):
        self.emit = emit

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        peft_model = getattr(model, "module", model)
        peft_model.base_model.update_and_allocate(state.global_step)

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        if model is not None:
            self.emit(RankEvent(step=state.global_step, ranks=adalora_ranks(getattr(model, "module", model))))


def any_rank_stopping(stop: bool, device: torch.device) -> bool:
    """Each rank reads the cancel flag on its own; agree on it so all ranks stop at the same step."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return stop
    if torch.distributed.get_world_size() == 1:
        return stop
    flag = torch.tensor([1.0 if stop else 0.0], device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


def float_or_none(value: Any) -> Optional[float]:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value
