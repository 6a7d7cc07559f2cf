"""Pre-flight estimates (lab.training.estimate) for pages that must stay fast: each config is estimated
once, in a background thread, and a page asks again at its next rerun.

An estimate reads the data and builds the model's shape on the meta device (no weights): a few seconds,
too long for every rerun of the Home page or for each method of a comparison in turn.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import yaml

from lab.config import RunConfig
from lab.errors import LabError
from lab.training.estimate import Estimate


@dataclass(frozen=True)
class Planned:
    """The estimates of a group of runs: what a page says before it queues them."""

    seconds: Optional[float]  # wall time over the slots; None until every run is estimated
    device: str
    runs: int
    failed: int  # runs whose estimate failed (their data or model is missing): left out of `seconds`


def config_key(settings: Any) -> str:
    """A config (or one of its sections) as a short key: equal settings, equal keys."""
    return hashlib.sha256(yaml.safe_dump(dataclasses.asdict(settings), sort_keys=True).encode()).hexdigest()


class EstimateCache:
    """Estimates by config, computed one at a time in a daemon thread; `get` never waits."""

    def __init__(self, prepare: Callable[[], None] = lambda: None, estimator: Optional[Callable] = None) -> None:
        self._prepare = prepare  # what must happen before the first estimate (the app's warm-up import)
        self._estimator = estimator
        self._lock = threading.Lock()
        self._done: dict[str, Optional[Estimate]] = {}  # None: the estimate failed
        self._waiting: dict[str, RunConfig] = {}
        self._worker: Optional[threading.Thread] = None
        self._data_key: Optional[tuple[str, str]] = None  # the splits the worker read last, kept for the next
        self._loaded: Any = None

    def get(self, config: RunConfig) -> Optional[Estimate]:
        """The estimate if it is ready; otherwise None, and it is on its way."""
        key = config_key(config)
        with self._lock:
            if key in self._done:
                return self._done[key]
            self._waiting.setdefault(key, config)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="lab-estimates", daemon=True)
                self._worker.start()
        return None

    def ready(self, config: RunConfig) -> bool:
        with self._lock:
            return config_key(config) in self._done

    def _work(self) -> None:
        self._prepare()
        while True:
            with self._lock:
                if not self._waiting:
                    self._worker = None
                    return
                key, config = next(iter(self._waiting.items()))
            try:
                result: Optional[Estimate] = self._estimate(config)
            except (LabError, OSError, ValueError, RuntimeError):
                result = None  # the page shows no estimate; training would report the error itself
            with self._lock:
                self._done[key] = result
                self._waiting.pop(key, None)

    def _estimate(self, config: RunConfig) -> Estimate:
        if self._estimator is not None:
            return self._estimator(config)
        from lab.data.splits import load_splits
        from lab.training.estimate import estimate

        # A comparison's runs share their data: read it once for all of them.
        data_key = (config.task, config_key(config.data))
        if self._data_key != data_key:
            self._loaded = load_splits(config.data, config.task, config.data.split_seed, log=lambda message: None)
            self._data_key = data_key
        return estimate(config, self._loaded)

    def plan(self, configs: Sequence[RunConfig], slots: int = 1) -> Planned:
        """The time a group takes on `slots` runs at once: each run, in queue order, on the
        slot free soonest, as the job runner starts them; None while any is still being estimated."""
        for config in configs:
            self.get(config)  # on its way, unless it is in
        keys = [config_key(config) for config in configs]
        with self._lock:  # one look: an estimate landing half-way must not count as failed
            pending = any(key not in self._done for key in keys)
            estimates = [self._done.get(key) for key in keys]
        found = [e for e in estimates if e is not None]
        device = found[0].device if found else ""
        failed = 0 if pending else len(configs) - len(found)
        if pending:
            return Planned(None, device, len(configs), failed)
        return Planned(wall_seconds([e.total_seconds for e in found], slots), device, len(configs), failed)


def wall_seconds(durations: Sequence[float], slots: int) -> float:
    """How long `durations` take, in this order, when `slots` run at once, each on the slot free soonest."""
    finishes = [0.0] * max(1, slots)
    for seconds in durations:
        soonest = finishes.index(min(finishes))
        finishes[soonest] += seconds
    return max(finishes)
