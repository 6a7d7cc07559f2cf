"""Typed events the training engine emits to a sink (the run store, the CLI progress bar, a test).

Every event turns into a plain dict (`to_dict`) and back (`event_from_dict`), so a store can keep them
as JSON and any reader gets the same typed objects back. Events are frozen: what a run said stays said.
A page reads facts from their fields (the device from `RunStartedEvent`, a stage from a status's
`code`), never from the English of a message.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

from lab.errors import Message

log = logging.getLogger(__name__)

# The keys of one per-label row, as evaluations, results, report.json, `lab show` and the pages carry it.
LABEL_ROW = ("label", "precision", "recall", "f1", "support")


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"
    time: float = field(default_factory=time.time, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class StatusEvent(Event):
    """The run changed state (queued, running, completed, failed, cancelled, interrupted), or, while
    running, its stage (loading, tokenising, training, evaluating, saving).

    `message` is the English sentence; `code` and `params` say it for a catalogue (`messages.CODE`).
    A `Message` given as `message` brings its own code and params."""

    kind: ClassVar[str] = "status"
    status: str = ""
    message: str = ""
    code: str = ""
    params: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.message, Message) and not self.code:
            object.__setattr__(self, "code", self.message.code)
            object.__setattr__(self, "params", dict(self.message.params))
        object.__setattr__(self, "message", str(self.message))  # stored and compared as plain text

    def said(self) -> Message:
        """The message with its code, as a page translates it."""
        return Message(self.message, self.code, **self.params)


@dataclass(frozen=True)
class LogEvent(Event):
    """A line for the run log (which data source was used, parameter counts, warnings), for people to read."""

    kind: ClassVar[str] = "log"
    message: str = ""
    level: str = "info"


@dataclass(frozen=True)
class RunStartedEvent(Event):
    """What the run trains on and with, once its model is built: the facts the Live run page shows."""

    kind: ClassVar[str] = "started"
    device: str = ""  # "cpu", "cuda", "cuda:1", "mps"
    precision: str = ""  # "fp32", "bf16", "fp16"
    learning_rate: float = 0.0
    head_learning_rate: Optional[float] = None  # when the new head learns at its own rate
    max_steps: int = 0  # optimizer steps the run will take
    max_length: int = 0  # where sequences are cut (below train.max_length when the model takes fewer)
    trainable_params: int = 0
    total_params: int = 0
    pooling: str = ""  # how a sentence vector is made, when the method changes it


@dataclass(frozen=True)
class TruncationEvent(Event):
    """Words of an evaluated split that fall past max_length (NER): they count as predicted O, lost recall."""

    kind: ClassVar[str] = "truncation"
    split: str = ""
    max_length: int = 0
    words_cut: int = 0
    words_total: int = 0


@dataclass(frozen=True)
class StepEvent(Event):
    """One logging interval of training (averaged over `logging_steps` optimizer steps)."""

    kind: ClassVar[str] = "step"
    step: int = 0
    max_steps: int = 0
    epoch: float = 0.0
    loss: float = float("nan")
    learning_rate: float = 0.0
    grad_norm: Optional[float] = None
    tokens_per_second: float = 0.0
    examples_per_second: float = 0.0
    elapsed_seconds: float = 0.0
    eta_seconds: Optional[float] = None
    # What the run holds now, as the training process measures it: GPU memory allocated on CUDA,
    # the process's resident memory elsewhere (lab.training.memory).
    memory_mb: Optional[float] = None


@dataclass(frozen=True)
class ProgressEvent(Event):
    """One optimizer step done: progress and ETA move every step, the loss every `logging_steps`."""

    kind: ClassVar[str] = "progress"
    step: int = 0
    max_steps: int = 0
    epoch: float = 0.0
    elapsed_seconds: float = 0.0
    eta_seconds: Optional[float] = None


@dataclass(frozen=True)
class EvalEvent(Event):
    """An evaluation on the validation split (during training) or the test split (at the end)."""

    kind: ClassVar[str] = "eval"
    split: str = "validation"
    step: int = 0
    epoch: float = 0.0
    loss: Optional[float] = None
    metrics: dict[str, float] = field(default_factory=dict)
    # One dict per label and per average row, keyed by LABEL_ROW.
    per_label: list[dict[str, Any]] = field(default_factory=list)
    # {"labels": [...], "matrix": [[...]]}, rows are true labels, columns predicted labels; above 50 labels
    # its largest cells and per-label totals instead (lab.training.metrics.confusion_matrix).
    confusion: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResult:
    """What one finished run returns to its caller (the engine's, the scripted stand-in's) and reports as
    its `ResultEvent`: one definition for both."""

    status: str = "completed"  # or "cancelled": stopped on request, no test metrics, no model saved
    output_dir: str = ""
    metrics: dict[str, float] = field(default_factory=dict)  # on the test split
    per_label: list[dict[str, Any]] = field(default_factory=list)
    trainable_params: int = 0
    total_params: int = 0
    wall_seconds: float = 0.0
    peak_memory_mb: Optional[float] = None
    completed_steps: int = 0


@dataclass(frozen=True)
class ResultEvent(Event, RunResult):
    """The final summary of a finished run: a RunResult with the time it was reported."""

    kind: ClassVar[str] = "result"

    @classmethod
    def of(cls, result: RunResult) -> ResultEvent:
        return cls(**{name.name: getattr(result, name.name) for name in dataclasses.fields(RunResult)})

    def result(self) -> RunResult:
        return RunResult(**{name.name: getattr(self, name.name) for name in dataclasses.fields(RunResult)})


@dataclass(frozen=True)
class RankEvent(Event):
    """AdaLoRA's rank budget at one evaluation: how many singular values each adapted matrix keeps."""

    kind: ClassVar[str] = "ranks"
    step: int = 0
    ranks: dict[str, int] = field(default_factory=dict)  # module path, as peft names it -> rank kept


@dataclass(frozen=True)
class ProjectionEvent(Event):
    """Where the validation examples' sentence vectors (what the head sees) lie at one evaluation: a 2-D
    PCA fitted at the run's first evaluation and reused, so the frames are comparable."""

    kind: ClassVar[str] = "projection"
    step: int = 0
    points: list[list[float]] = field(default_factory=list)  # [x, y] per example, a few hundred at most
    labels: list[str] = field(default_factory=list)  # each point's gold label


@dataclass(frozen=True)
class EstimateEvent(Event):
    """The pre-flight estimate on the machine the run trains on (lab.training.estimate), before its first
    step: what the Live page promises until the measured ETA takes over."""

    kind: ClassVar[str] = "estimate"
    device: str = ""
    total_seconds: float = 0.0  # every step and evaluation of the run
    seconds_per_step: float = 0.0
    total_steps: int = 0


@dataclass(frozen=True)
class LearningRateFoundEvent(Event):
    """`learning_rate: auto`: the range test's curve (each step's rate and loss, rising exponentially until the
    loss diverged or the steps ran out) and the rate the run trains at, by which rule (lab.training.lr_find)."""

    kind: ClassVar[str] = "lr_found"
    rates: list[float] = field(default_factory=list)  # the rate of each test step
    losses: list[float] = field(default_factory=list)  # each step's training loss, as measured
    smoothed: list[float] = field(default_factory=list)  # the same, smoothed: the curve the rule reads
    learning_rate: float = 0.0  # the rate chosen; the run's stored config records it
    head_learning_rate: Optional[float] = None  # the head's beside it (the method's ratio); None: the user's own
    rule: str = ""  # "steepest" (descent of the smoothed loss) or "minimum" (a tenth of its minimum's rate)
    diverged: bool = False  # the test stopped early because the loss ran away
    seconds: float = 0.0


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        StatusEvent,
        LogEvent,
        RunStartedEvent,
        TruncationEvent,
        StepEvent,
        ProgressEvent,
        EvalEvent,
        ResultEvent,
        RankEvent,
        ProjectionEvent,
        LearningRateFoundEvent,
        EstimateEvent,
    )
}

EventSink = Callable[[Event], None]

_reported: set[tuple[str, str]] = set()  # (kind, field) pairs already warned about, once per process


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """The typed event of a stored dict. A field this lab does not know (a misspelling, or a newer lab's
    field) is left out with a warning naming it, once per kind and field, so a store stays readable; a
    field the dict lacks (an older lab's event) takes its default."""
    values = dict(data)
    kind = values.pop("kind", None)
    cls = EVENT_TYPES.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown event kind {kind!r}; known: {', '.join(EVENT_TYPES)}")
    names = {known.name for known in dataclasses.fields(cls)}
    for unknown in sorted(set(values) - names):
        if (cls.kind, unknown) not in _reported:
            _reported.add((cls.kind, unknown))
            log.warning("A stored %s event has a field this lab does not know, %r: it is ignored.", cls.kind, unknown)
    return cls(**{name: value for name, value in values.items() if name in names})


def discard(event: Event) -> None:
    """A sink that ignores events."""
