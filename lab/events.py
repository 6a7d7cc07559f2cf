"""Typed events the training engine emits to a sink (the run store, the CLI progress bar, a test).

Every event turns into a plain dict (`to_dict`) and back (`event_from_dict`), so a store can
keep them as JSON and any reader gets the same typed objects back.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

# The keys of one per-label row, as evaluations, results, report.json, `lab show` and the pages carry it.
LABEL_ROW = ("label", "precision", "recall", "f1", "support")


@dataclass
class Event:
    kind = "event"
    time: float = field(default_factory=time.time, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}


@dataclass
class StatusEvent(Event):
    """The run changed state: queued, running, completed, failed, cancelled, interrupted."""

    kind = "status"
    status: str = ""
    message: str = ""


@dataclass
class LogEvent(Event):
    """A line for the run log (which data source was used, parameter counts, warnings)."""

    kind = "log"
    message: str = ""
    level: str = "info"


@dataclass
class StepEvent(Event):
    """One logging interval of training (averaged over `logging_steps` optimizer steps)."""

    kind = "step"
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


@dataclass
class ProgressEvent(Event):
    """One optimizer step done: progress and ETA move every step, the loss every `logging_steps`."""

    kind = "progress"
    step: int = 0
    max_steps: int = 0
    epoch: float = 0.0
    elapsed_seconds: float = 0.0
    eta_seconds: Optional[float] = None


@dataclass
class EvalEvent(Event):
    """An evaluation on the validation split (during training) or the test split (at the end)."""

    kind = "eval"
    split: str = "validation"
    step: int = 0
    epoch: float = 0.0
    loss: Optional[float] = None
    metrics: dict[str, float] = field(default_factory=dict)
    # One dict per label and per average row, keyed by LABEL_ROW.
    per_label: list[dict[str, Any]] = field(default_factory=list)
    # {"labels": [...], "matrix": [[...]]}, rows are true labels, columns predicted labels.
    confusion: dict[str, Any] = field(default_factory=dict)


@dataclass
class ResultEvent(Event):
    """The final summary of a finished run: test metrics, parameter counts, time, where it was saved."""

    kind = "result"
    status: str = "completed"  # or "cancelled": stopped on request, no test metrics, no model saved
    metrics: dict[str, float] = field(default_factory=dict)
    per_label: list[dict[str, Any]] = field(default_factory=list)
    trainable_params: int = 0
    total_params: int = 0
    wall_seconds: float = 0.0
    peak_memory_mb: Optional[float] = None
    output_dir: str = ""


@dataclass
class RankEvent(Event):
    """AdaLoRA's rank budget at one evaluation: how many singular values each adapted matrix keeps."""

    kind = "ranks"
    step: int = 0
    ranks: dict[str, int] = field(default_factory=dict)  # module path, as peft names it -> rank kept


@dataclass
class ProjectionEvent(Event):
    """Where the validation examples' sentence vectors (what the head sees) lie at one evaluation: a 2-D
    PCA fitted at the run's first evaluation and reused, so the frames are comparable."""

    kind = "projection"
    step: int = 0
    points: list[list[float]] = field(default_factory=list)  # [x, y] per example, a few hundred at most
    labels: list[str] = field(default_factory=list)  # each point's gold label


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (StatusEvent, LogEvent, StepEvent, ProgressEvent, EvalEvent, ResultEvent, RankEvent, ProjectionEvent)
}

EventSink = Callable[[Event], None]


def event_from_dict(data: dict[str, Any]) -> Event:
    data = dict(data)
    cls = EVENT_TYPES[data.pop("kind")]
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def discard(event: Event) -> None:
    """A sink that ignores events."""
