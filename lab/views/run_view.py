"""A run's event log folded into the tables the Live run and Runs pages draw."""
from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

import pandas as pd

from lab.events import EvalEvent, Event, LogEvent, ResultEvent, StatusEvent, StepEvent


@dataclass
class RunView:
    """Everything the live and compare pages draw, folded from a run's events."""

    steps: pd.DataFrame  # one row per StepEvent: step, epoch, loss, learning_rate, ...
    evaluations: pd.DataFrame  # validation evaluations: step, epoch, loss, then one column per metric
    per_label_history: pd.DataFrame  # validation per-label rows (no averages): step, label, precision, ...
    latest_eval: Optional[EvalEvent] = None  # the last validation evaluation
    test_eval: Optional[EvalEvent] = None
    result: Optional[ResultEvent] = None
    last_step: Optional[StepEvent] = None
    log: list[str] = field(default_factory=list)
    device: str = ""  # from the engine's "device cpu, precision fp32, ..." log line

    @property
    def metric_names(self) -> list[str]:
        return [c for c in self.evaluations.columns if c not in ("step", "epoch", "loss")]


STEP_COLUMNS = ["step", "max_steps", "epoch", "loss", "learning_rate", "grad_norm", "tokens_per_second",
                "elapsed_seconds", "eta_seconds"]
LABEL_COLUMNS = ["label", "precision", "recall", "f1", "support"]
_DEVICE_LINE = re.compile(r"^device ([^,\s]+), precision ([^,\s]+)")


def is_average_row(label: str) -> bool:
    return label.endswith(" avg") or label == "accuracy"


def run_view(events: Iterable[Event]) -> RunView:
    steps, evaluations, history, log = [], [], [], []
    view = RunView(pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    for event in events:
        if isinstance(event, StepEvent):
            steps.append({name: getattr(event, name) for name in STEP_COLUMNS})
            view.last_step = event
        elif isinstance(event, EvalEvent) and event.split == "test":
            view.test_eval = event
        elif isinstance(event, EvalEvent):
            view.latest_eval = event
            evaluations.append({"step": event.step, "epoch": event.epoch, "loss": event.loss, **event.metrics})
            history += [{"step": event.step, **row} for row in event.per_label if not is_average_row(row["label"])]
        elif isinstance(event, ResultEvent):
            view.result = event
        elif isinstance(event, (LogEvent, StatusEvent)) and event.message:
            stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
            prefix = f"[{event.status}] " if isinstance(event, StatusEvent) else (
                "" if event.level == "info" else f"{event.level.upper()}: ")
            log.append(f"{stamp}  {prefix}{event.message}")
            match = _DEVICE_LINE.match(event.message) if isinstance(event, LogEvent) else None
            if match:
                view.device = f"{match.group(1)} ({match.group(2)})"
    view.steps = pd.DataFrame(steps, columns=STEP_COLUMNS)
    view.evaluations = pd.DataFrame(evaluations)
    view.per_label_history = pd.DataFrame(history, columns=["step", *LABEL_COLUMNS])
    view.log = log
    return view


def per_label_frame(per_label: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The per-label table as shown: one row per label, then the averages."""
    frame = pd.DataFrame(list(per_label), columns=LABEL_COLUMNS)
    return frame.set_index("label")


def gpu_memory_mb() -> Optional[float]:
    """GPU memory this process holds now (the thread executor trains in this process), or None."""
    torch = sys.modules.get("torch")  # never import torch just to learn there is no GPU
    if torch is None or not torch.cuda.is_available():
        return None
    return torch.cuda.memory_allocated() / 2**20
