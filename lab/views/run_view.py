"""A run's event log folded into the tables the Live run and Runs pages draw."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import pandas as pd

from lab.events import (
    LABEL_ROW,
    EstimateEvent,
    EvalEvent,
    Event,
    LearningRateFoundEvent,
    LogEvent,
    ProgressEvent,
    ProjectionEvent,
    RankEvent,
    ResultEvent,
    RunStartedEvent,
    StatusEvent,
    StepEvent,
    TruncationEvent,
)
from lab.training.metrics import is_average_row


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
    progress: Optional[ProgressEvent] = None  # the last optimizer step: step, epoch, ETA (every step)
    log: list[str] = field(default_factory=list)
    started: Optional[RunStartedEvent] = None  # device, precision, parameter counts (None in stores before it)
    stage: Optional[StatusEvent] = None  # what the run is doing now: its last "running" status (tokenising, ...)
    last_status: Optional[StatusEvent] = None  # the last change of state, with why (failed: the error)
    truncated: dict[str, TruncationEvent] = field(default_factory=dict)  # NER: split -> words cut at max_length
    ranks: dict[int, dict[str, int]] = field(default_factory=dict)  # AdaLoRA: step -> module -> rank kept
    projections: list[ProjectionEvent] = field(default_factory=list)  # the validation vectors, per evaluation
    estimate: Optional[EstimateEvent] = None  # the pre-flight estimate on the run's machine, before its first step
    rate_test: Optional[LearningRateFoundEvent] = None  # learning_rate: auto, the range test's curve and choice

    @property
    def device(self) -> str:
        """Device and precision as shown, like `cpu (fp32)`; empty until the run has built its model, and in
        stores from before the lab recorded them."""
        return f"{self.started.device} ({self.started.precision})" if self.started else ""

    @property
    def metric_names(self) -> list[str]:
        return [c for c in self.evaluations.columns if c not in ("step", "epoch", "loss")]


STEP_COLUMNS = [
    "step",
    "max_steps",
    "epoch",
    "loss",
    "learning_rate",
    "grad_norm",
    "tokens_per_second",
    "elapsed_seconds",
    "eta_seconds",
]


class _Columns:
    """Numeric columns that grow in place (capacity doubles), so appending a row is O(1) and the
    DataFrame over them is built from views of the arrays, not from a copy of every row."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names, self.size = list(names), 0
        self._arrays = {name: np.empty(1024) for name in self.names}

    def append(self, values: Sequence[Optional[float]]) -> None:
        if self.size == len(self._arrays[self.names[0]]):
            for name, array in self._arrays.items():
                grown = np.empty(2 * len(array))
                grown[: self.size] = array
                self._arrays[name] = grown
        for name, value in zip(self.names, values):
            self._arrays[name][self.size] = np.nan if value is None else value
        self.size += 1

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame({name: array[: self.size] for name, array in self._arrays.items()}, copy=False)
        return frame.astype({"step": "int64", "max_steps": "int64"}) if "step" in frame else frame


class RunViewFolder:
    """Folds a run's events into a RunView a few at a time: the Live page keeps one per session and run,
    hands it only the events after its cursor (`seq`), so a refresh costs the same at step 100 and at
    step 100,000. Steps are kept as columns, which become a DataFrame without a per-row dict."""

    def __init__(self) -> None:
        self.seq = 0  # the last event folded in
        self._steps = _Columns(STEP_COLUMNS)
        self._evaluations: list[dict[str, Any]] = []
        self._history: list[dict[str, Any]] = []
        self._log: list[str] = []
        self._view = RunView(pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
        self._stale = {"steps": True, "evaluations": True}  # tables to rebuild at the next view()

    def add(self, events: Iterable[tuple[int, Event]]) -> RunViewFolder:
        view = self._view
        for seq, event in events:
            self.seq = max(self.seq, seq)
            if isinstance(event, StepEvent):
                self._steps.append([getattr(event, name) for name in STEP_COLUMNS])
                view.last_step = event
                self._stale["steps"] = True
            elif isinstance(event, ProgressEvent):
                view.progress = event
            elif isinstance(event, EvalEvent) and event.split == "test":
                view.test_eval = event
            elif isinstance(event, EvalEvent):
                view.latest_eval = event
                self._evaluations.append(
                    {"step": event.step, "epoch": event.epoch, "loss": event.loss, **event.metrics}
                )
                self._history += [
                    {"step": event.step, **row} for row in event.per_label if not is_average_row(row["label"])
                ]
                self._stale["evaluations"] = True
            elif isinstance(event, ResultEvent):
                view.result = event
            elif isinstance(event, RankEvent):
                view.ranks[event.step] = event.ranks
            elif isinstance(event, ProjectionEvent):
                view.projections.append(event)
            elif isinstance(event, LearningRateFoundEvent):
                view.rate_test = event
            elif isinstance(event, RunStartedEvent):
                view.started = event
            elif isinstance(event, TruncationEvent):
                view.truncated[event.split] = event
            elif isinstance(event, EstimateEvent):
                view.estimate = event
            if isinstance(event, StatusEvent):
                view.last_status = event
                view.stage = event if event.status == "running" else view.stage
            if isinstance(event, (LogEvent, StatusEvent)) and event.message:
                stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
                prefix = (
                    f"[{event.status}] "
                    if isinstance(event, StatusEvent)
                    else ("" if event.level == "info" else f"{event.level.upper()}: ")
                )
                self._log.append(f"{stamp}  {prefix}{event.message}")
        return self

    def view(self) -> RunView:
        """The tables as of the last event added; each is rebuilt only when its kind of event came in
        (a live run's refresh brings steps, rarely an evaluation with its per-label rows)."""
        if self._stale["steps"]:
            self._view.steps = self._steps.frame()
        if self._stale["evaluations"]:
            self._view.evaluations = pd.DataFrame(self._evaluations)
            self._view.per_label_history = pd.DataFrame(self._history, columns=["step", *LABEL_ROW])
        self._stale = {"steps": False, "evaluations": False}
        self._view.log = self._log
        return self._view


def run_view(events: Iterable[Event]) -> RunView:
    """A whole event log folded at once (the Runs page's comparison, tests)."""
    return RunViewFolder().add((seq, event) for seq, event in enumerate(events, start=1)).view()


def per_label_frame(per_label: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The per-label table as shown: one row per label, then the averages."""
    frame = pd.DataFrame(list(per_label), columns=list(LABEL_ROW))
    return frame.set_index("label")


_MODULE = re.compile(r"layer\.(\d+)\.(.+)$")


def rank_table(ranks: dict[str, int]) -> pd.DataFrame:
    """AdaLoRA's ranks as a layer x matrix table (`attention.self.query` shown as `query`)."""
    cells: dict[str, dict[int, int]] = {}
    for name, rank in ranks.items():
        match = _MODULE.search(name)
        layer, matrix = (int(match.group(1)), match.group(2)) if match else (0, name)
        cells.setdefault(matrix.split(".")[-1] if match else matrix, {})[layer] = rank
    return pd.DataFrame(cells).sort_index()
