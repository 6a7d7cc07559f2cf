"""`learning_rate: auto`: a learning-rate range test before training (Leslie Smith, "Cyclical Learning Rates for
Training Neural Networks", 2017, section 3.3; what fastai's `lr_find` and Lightning's `Tuner.lr_find` do).

A copy of the prepared model trains on mini-batches of the training data while the rate rises exponentially from
START_RATE towards END_RATE, one rate per optimizer step, for at most RANGE_TEST_STEPS steps (steps that count
against nothing the run was asked for). It is the lab's own Trainer with the run's optimizer, parameter groups and
head rate, batch, accumulation and precision, so the test sees what the run will. It stops when the loss diverges
(DIVERGENCE times its best), when the steps run out, or when the run is cancelled. `choose_rate` reads the curve;
the run then trains from the untouched initial weights at that rate, and its stored config records the number.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

from datasets import DatasetDict
from torch.optim.lr_scheduler import LambdaLR
from transformers import PrinterCallback, ProgressCallback, TrainerCallback, TrainingArguments, set_seed

from lab.config import VIRTUAL_TOKEN_METHODS, RunConfig
from lab.data.preprocessing import make_collator, tokenize_splits
from lab.data.splits import LoadedData, load_splits
from lab.errors import Message
from lab.events import EventSink, LearningRateFoundEvent, LogEvent, StatusEvent
from lab.model.adapting import adapt
from lab.model.defaults import head_learning_rate_for, learning_rate_for
from lab.model.device import pick_device, pick_precision
from lab.model.loading import load_model, load_tokenizer
from lab.training.trainer import (
    LabTrainer,
    is_head_parameter,
    total_optimizer_steps,
    training_arguments,
    virtual_token_offset,
)

START_RATE, END_RATE = 1e-6, 1.0
RANGE_TEST_STEPS = 80  # 0.075 decades a step: about 13 points per decade of rates
DIVERGENCE = 4.0  # stop once the smoothed loss passes this many times its best
STOP_SMOOTHING = 0.8  # the running (bias-corrected) average that watches for divergence while the test runs
SMOOTHING_WINDOW = 7  # the centred moving average the rule reads: it does not lag behind the rising rate
SLOPE_SPAN = 2  # the steepest descent is measured over this many points either side
SKIPPED_START = 3  # the first points: a new head's loss moves at any rate
MAX_HEAD_RATE = 0.5  # a head's rate beside a found rate stays below this (the config field takes < 1)


def rate_at(step: int, steps: int = RANGE_TEST_STEPS) -> float:
    """The rate of test step `step` (0 first): START_RATE to END_RATE, evenly spaced in log."""
    return START_RATE * (END_RATE / START_RATE) ** (step / max(1, steps - 1))


@dataclasses.dataclass(frozen=True)
class RangeTest:
    """One range test's curve and what it chose."""

    rates: list[float]
    losses: list[float]
    smoothed: list[float]
    learning_rate: float
    head_learning_rate: Optional[float]  # beside it at the method's ratio; None when the user set the head's rate
    rule: str
    diverged: bool
    seconds: float

    def event(self) -> LearningRateFoundEvent:
        return LearningRateFoundEvent(
            rates=self.rates,
            losses=self.losses,
            smoothed=self.smoothed,
            learning_rate=self.learning_rate,
            head_learning_rate=self.head_learning_rate,
            rule=self.rule,
            diverged=self.diverged,
            seconds=self.seconds,
        )

    def describe(self) -> str:
        """The line the CLI prints: `learning rate: auto -> 3.2e-3 (steepest descent over 80 steps, 6 s)`."""
        rule = "steepest descent" if self.rule == "steepest" else "a tenth of the minimum"
        rate = f"{self.learning_rate:.1e}".replace("e-0", "e-")
        return f"learning rate: auto -> {rate} ({rule} over {len(self.rates)} steps, {self.seconds:.0f} s)"


def centred_average(values: Sequence[float], window: int = SMOOTHING_WINDOW) -> list[float]:
    """Each value averaged with its neighbours (fewer at the ends); non-finite values count as the largest seen."""
    finite = [v for v in values if math.isfinite(v)]
    ceiling = max(finite) if finite else 0.0
    cleaned = [v if math.isfinite(v) else ceiling for v in values]
    half = window // 2
    windows = [cleaned[max(0, i - half) : i + half + 1] for i in range(len(cleaned))]
    return [sum(values) / len(values) for values in windows]


def choose_rate(rates: Sequence[float], losses: Sequence[float]) -> tuple[float, str, list[float]]:
    """The rate to train at, the rule that chose it, and the smoothed curve it read.

    The steepest descent of the smoothed loss (per decade of rate, before its minimum): there the model learns
    fastest while the rate is still safely below where the loss turns up; Lightning's `suggestion()` reads the same
    point. When the curve never descends (too few points, or a loss that only rises), a tenth of the rate at the
    minimum, fastai's older rule: a decade below where training stops improving."""
    smoothed = centred_average(losses)
    lowest = min(range(len(smoothed)), key=smoothed.__getitem__) if smoothed else 0
    logs = [math.log10(rate) for rate in rates]
    slopes = {
        i: (smoothed[i + SLOPE_SPAN] - smoothed[i - SLOPE_SPAN]) / (logs[i + SLOPE_SPAN] - logs[i - SLOPE_SPAN])
        for i in range(max(SLOPE_SPAN, SKIPPED_START), min(lowest, len(rates) - 1 - SLOPE_SPAN) + 1)
    }
    steepest = min(slopes, key=slopes.__getitem__) if slopes else None
    if steepest is not None and slopes[steepest] < 0:
        return rates[steepest], "steepest", smoothed
    tenth = rates[lowest] / 10 if rates else START_RATE
    return max(tenth, rates[0] if rates else START_RATE), "minimum", smoothed


class _Watch(TrainerCallback):
    """Records each step's loss, stops on divergence or when the run is cancelled."""

    def __init__(self, should_stop: threading.Event) -> None:
        self.should_stop = should_stop
        self.losses: list[float] = []
        self.average, self.best = 0.0, math.inf
        self.diverged = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:
            return
        loss = float(logs["loss"])
        self.losses.append(loss)
        self.average = STOP_SMOOTHING * self.average + (1 - STOP_SMOOTHING) * loss
        smoothed = self.average / (1 - STOP_SMOOTHING ** len(self.losses))
        self.best = min(self.best, smoothed)
        if not math.isfinite(loss) or smoothed > DIVERGENCE * self.best:
            self.diverged = control.should_training_stop = True

    def on_step_end(self, args, state, control, **kwargs):
        if self.should_stop.is_set():
            control.should_training_stop = True


class _RangeTestTrainer(LabTrainer):
    """The lab's Trainer whose schedule is the test's: every step a higher rate, the head at the rate the run would
    give it beside that rate (`head_rate_for(rate)`)."""

    def __init__(self, *args: Any, rate_for: Callable[[int], float], head_rate_for: Callable[[float], float], **kwargs):
        super().__init__(*args, **kwargs)
        self.rate_for, self.head_rate_for = rate_for, head_rate_for

    def create_scheduler(self, num_training_steps, optimizer=None):
        if self.lr_scheduler is None:
            optimizer = optimizer or self.optimizer
            model = self.model
            assert optimizer is not None and model is not None
            head = {id(param) for name, param in model.named_parameters() if is_head_parameter(name)}
            factors = [
                self._factor(self.head_rate_for if all(id(p) in head for p in group["params"]) else None, group["lr"])
                for group in optimizer.param_groups
            ]
            self.lr_scheduler = LambdaLR(optimizer, factors)
        return self.lr_scheduler

    def _factor(self, head_rate_for: Optional[Callable[[float], float]], first: float) -> Callable[[int], float]:
        """A parameter group's multiple of its first rate at each step: the test's rate, or the head's beside it."""
        if head_rate_for is None:
            return lambda step: self.rate_for(step) / first
        return lambda step: head_rate_for(self.rate_for(step)) / first


def run_range_test(
    config: RunConfig,
    model: Any,
    tokenizer: Any,
    loaded: LoadedData,
    device: str,
    precision: str,
    should_stop: Optional[threading.Event] = None,
    steps: Optional[int] = None,
) -> Optional[RangeTest]:
    """The range test on a copy of `model` (prepared: loaded and adapted); None when cancelled."""
    started, should_stop = time.time(), should_stop or threading.Event()
    steps = steps or RANGE_TEST_STEPS
    t = config.train
    examples = steps * t.train_batch_size * t.gradient_accumulation_steps * max(1, t.num_devices)
    train = loaded.splits["train"]
    subset = train.shuffle(seed=t.seed).select(range(min(len(train), examples)))
    reserved = config.peft.num_virtual_tokens if config.peft.method in VIRTUAL_TOKEN_METHODS else 0
    tokenized = tokenize_splits(
        DatasetDict(train=subset),
        tokenizer,
        config.task,
        t.max_length,
        position_limit=getattr(model.config, "max_position_embeddings", None),
        reserved=reserved,
    )["train"]

    budget = total_optimizer_steps(config, len(train))  # the run's own steps pick its default head ratio

    def head_rate_for(rate: float) -> float:
        return head_rate_beside(config, rate, budget)

    watch = _Watch(should_stop)
    with tempfile.TemporaryDirectory(prefix="lab-lr-find-") as folder:
        arguments = training_arguments(config, Path(folder), device, precision, START_RATE, steps, False)
        arguments.update(
            max_steps=steps,
            warmup_steps=0,
            eval_strategy="no",
            eval_steps=None,
            save_strategy="no",
            save_steps=None,
            logging_steps=1,
            logging_nan_inf_filter=False,  # a loss that runs to inf or nan is the divergence to see
            load_best_model_at_end=False,
            metric_for_best_model=None,
            greater_is_better=None,
            report_to="none",
        )
        trainer = _RangeTestTrainer(
            model=copy.deepcopy(model),  # the run trains from the untouched weights
            args=TrainingArguments(**arguments),
            train_dataset=tokenized,
            processing_class=tokenizer,
            data_collator=make_collator(config.task, tokenizer),
            callbacks=[watch],
            virtual_tokens=virtual_token_offset(config),
            head_learning_rate=head_rate_for(START_RATE),
            rate_for=lambda step: rate_at(step, steps),
            head_rate_for=head_rate_for,
        )
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        trainer.train()
        del trainer
    if should_stop.is_set():
        return None
    rates = [rate_at(step, steps) for step in range(len(watch.losses))]
    rate, rule, smoothed = choose_rate(rates, watch.losses)
    head = head_rate_beside(config, rate, budget) if head_rate_ratio(config, budget) is not None else None
    return RangeTest(rates, watch.losses, smoothed, rate, head, rule, watch.diverged, time.time() - started)


def head_rate_ratio(config: RunConfig, steps: Optional[int] = None) -> Optional[float]:
    """How much faster than the rest the new head learns by the method's defaults, which the test and the run keep
    at every rate: a head at its own fixed rate would make the loss fall at any tested rate, and the test would read
    the head, not the rate. None when the head's rate is the user's own, or the run trains only the head."""
    if config.peft.method == "head" or config.train.head_learning_rate:
        return None
    defaults = dataclasses.replace(config, train=dataclasses.replace(config.train, learning_rate=None))
    return head_learning_rate_for(defaults, steps) / learning_rate_for(defaults, steps)


def head_rate_beside(config: RunConfig, rate: float, steps: Optional[int] = None) -> float:
    """The head's rate when the rest trains at `rate` in a run of `steps` optimizer steps (below 1, as the
    config field asks)."""
    ratio = head_rate_ratio(config, steps)
    if ratio is None:
        given = dataclasses.replace(config, train=dataclasses.replace(config.train, learning_rate=rate))
        return head_learning_rate_for(given, steps)
    return min(rate * ratio, MAX_HEAD_RATE)


def find_learning_rate(config: RunConfig, should_stop: Optional[threading.Event] = None) -> Optional[RangeTest]:
    """The range test a run of `config` would make before training (the same seed, data, model and method, so the
    same curve), without training: what the New run page's "Find a rate now" shows. None when cancelled."""
    config.validate()
    set_seed(config.train.seed)
    tokenizer = load_tokenizer(config.model, pre_split_words=config.task == "ner")
    loaded = load_splits(config.data, config.task, config.data.split_seed)
    device = pick_device(config.train.device)
    precision = pick_precision(config.train.precision, device)
    model = load_model(config.model, config.task, loaded.label_names, pad_token_id=tokenizer.pad_token_id)
    if config.train.gradient_checkpointing:
        model.gradient_checkpointing_enable()  # type: ignore[operator]  # a transformers model, typed nn.Module
    model, _ = adapt(model, config, total_optimizer_steps(config, len(loaded.splits["train"])))
    return run_range_test(config, model, tokenizer, loaded, device, precision, should_stop)


def with_found_learning_rate(
    config: RunConfig,
    model: Any,
    tokenizer: Any,
    loaded: LoadedData,
    device: str,
    precision: str,
    emit: EventSink,
    should_stop: threading.Event,
) -> Optional[RunConfig]:
    """`config` with `learning_rate: auto` replaced by the rate the range test finds, the curve emitted as a
    LearningRateFoundEvent; None when the run was cancelled during the test."""
    emit(StatusEvent(status="running", message=Message("finding a learning rate", "stage_finding_rate")))
    found = run_range_test(config, model, tokenizer, loaded, device, precision, should_stop)
    if found is None:
        return None
    emit(found.event())
    emit(LogEvent(message=found.describe()))
    train = dataclasses.replace(config.train, learning_rate=found.learning_rate)
    if found.head_learning_rate is not None:
        train.head_learning_rate = found.head_learning_rate
    return dataclasses.replace(config, train=train)
