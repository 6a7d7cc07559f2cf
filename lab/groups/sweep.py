"""Sweeps: an Optuna study driven with ask / tell, each trial a normal run in the run store, grouped under
the sweep (`sweep NAME`).

A trial's value is its best validation metric (never the test split: a sweep tuned on the test split
would report a flattering test figure). Each validation evaluation is reported to the trial, so Optuna's
pruner can stop a poor trial early: it ends with status `pruned` and says at which step. The study lives
in Optuna's own storage beside the run store (SQLite, `runs/sweeps/NAME.db`), with the sweep's setup
(base config, parameters, metric) as study attributes, so `python -m lab sweep --resume NAME` continues a
sweep after a crash or a restart and runs only the trials still missing. Trials run one at a time.

A sweep always ends: a failed trial counts as one of its trials, and after MAX_CONSECUTIVE_FAILURES
failures in a row (a wrong model path fails every trial) it stops with the last trial's error. A stop
request (the `should_stop` event that the CLI's SIGTERM and Ctrl-C handlers set), or a trial cancelled
from elsewhere, ends it before the next trial; `--resume` continues it.

A `--param` is `section.field=KIND:...`: `log:LOW:HIGH` (float, log scale), `float:LOW:HIGH`,
`int:LOW:HIGH` or `choice:A,B,...` (values parsed as YAML scalars).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from lab.config import RunConfig
from lab.errors import ConfigError, LabError, one_line
from lab.events import EvalEvent, Event, EventSink
from lab.runs.records import slugify
from lab.runs.store import RunStore

log = logging.getLogger(__name__)

SWEEPS_DIR = "sweeps"
KINDS = ("log", "float", "int", "choice")
PRUNERS = ("median", "none")
MAX_CONSECUTIVE_FAILURES = 3
# A trial's run status, kept on the trial: a failed run counts as an ended trial; a run lost with a crashed
# sweep, or stopped by the user, does not, so --resume runs it again.
RUN_STATUS_ATTR = "run_status"
SweepEnd = Literal["finished", "stopped"]


@dataclass(frozen=True)
class Param:
    key: str  # section.field
    kind: str  # one of KINDS
    low: Optional[float] = None
    high: Optional[float] = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        assert self.low is not None and self.high is not None  # parse_param gives every range both bounds
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high))
        return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "log")

    def text(self) -> str:
        if self.kind == "choice":
            return f"{self.key}=choice:" + ",".join(map(_scalar, self.choices))
        return f"{self.key}={self.kind}:{self.low:g}:{self.high:g}"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "low": self.low, "high": self.high, "choices": list(self.choices)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Param:
        return cls(data["key"], data["kind"], data["low"], data["high"], tuple(data["choices"]))


def parse_param(text: str, base: Optional[RunConfig] = None) -> Param:
    """`train.learning_rate=log:1e-5:1e-2` -> Param; the key must be a config field (checked on `base`)."""
    key, sep, spec = text.partition("=")
    kind, _, rest = spec.partition(":")
    key, kind = key.strip(), kind.strip()
    if not sep or not key or kind not in KINDS or not rest:
        raise ConfigError(
            f"--param {text!r}: expected section.field=KIND:..., KIND one of {', '.join(KINDS)} "
            "(log:1e-5:1e-2, float:0:0.3, int:4:32, choice:4,8,16)."
        )
    if base is not None and key not in base.flat():
        raise ConfigError(f"--param {text!r}: unknown config key {key!r}.")
    if kind == "choice":
        choices = tuple(_choice(part) for part in rest.split(",") if part.strip())
        if not choices:
            raise ConfigError(f"--param {text!r}: choice needs at least one value.")
        return Param(key, kind, choices=choices)
    bounds = rest.split(":")
    try:
        low, high = (float(bound) for bound in bounds)
    except ValueError:
        raise ConfigError(f"--param {text!r}: {kind} needs LOW:HIGH numbers, like {kind}:1e-5:1e-2.") from None
    if not low < high or (kind == "log" and low <= 0) or not all(map(math.isfinite, (low, high))):
        raise ConfigError(f"--param {text!r}: needs LOW < HIGH" + (", both above 0 for log." if kind == "log" else "."))
    return Param(key, kind, low, high)


def study_path(store: RunStore, name: str) -> Path:
    return store.runs_dir / SWEEPS_DIR / f"{slugify(name) or 'sweep'}.db"


def group_of(name: str) -> str:
    return f"sweep {name}"


def _storage(path: Path):
    """Optuna's SQLite storage: a killed sweep leaves no lock behind (a journal file's lock would stay)."""
    import optuna

    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(f"sqlite:///{path}")


@dataclass
class SweepSetup:
    name: str
    base: RunConfig
    params: list[Param]
    trials: int
    metric: str
    direction: str = "maximize"
    pruner: str = "median"
    seed: int = 42


def create_study(store: RunStore, setup: SweepSetup):
    """A new study for `setup`, its setup kept as study attributes; refuses a name already used."""
    import optuna

    path = study_path(store, setup.name)
    if path.exists():
        raise LabError(
            f"A sweep named {setup.name!r} exists; continue it with python -m lab sweep --resume "
            f"{setup.name!r}, or choose another --name."
        )
    direction = optuna.study.StudyDirection[setup.direction.upper()]
    study = optuna.create_study(study_name=setup.name, storage=_storage(path), direction=direction)
    study.set_user_attr("base", setup.base.to_dict())
    study.set_user_attr("params", [param.to_dict() for param in setup.params])
    for key in ("trials", "metric", "pruner", "seed"):
        study.set_user_attr(key, getattr(setup, key))
    return study


def load_study(store: RunStore, name: str) -> tuple[Any, SweepSetup]:
    import optuna

    path = study_path(store, name)
    if not path.is_file():
        raise LabError(f"No sweep named {name!r} in {store.runs_dir / SWEEPS_DIR}.")
    study = optuna.load_study(study_name=name, storage=_storage(path))
    attrs = study.user_attrs
    base = RunConfig.from_dict(attrs["base"])
    setup = SweepSetup(
        name=name,
        base=base,
        params=[Param.from_dict(data) for data in attrs["params"]],
        trials=int(attrs["trials"]),
        metric=attrs["metric"],
        direction=study.direction.name.lower(),
        pruner=attrs["pruner"],
        seed=int(attrs["seed"]),
    )
    return study, setup


def _sampler_and_pruner(setup: SweepSetup, finished: int):
    import optuna

    # Seeded, and offset by the trials already told, so a resumed sweep does not redraw the first ones.
    sampler = optuna.samplers.TPESampler(seed=setup.seed + finished)
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
        if setup.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    return sampler, pruner


RunTrial = Callable[[RunConfig, str, EventSink, Callable[[], bool]], str]
OnTrial = Callable[[int, str, Optional[float], str], None]


def _ended_trials(study) -> int:
    """Trials that count towards the sweep's total: completed, pruned, and failed runs."""
    from optuna.trial import TrialState

    return sum(
        trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (trial.state == TrialState.FAIL and trial.user_attrs.get(RUN_STATUS_ATTR) == "failed")
        for trial in study.get_trials(deepcopy=False)
    )


def run_sweep(
    store: RunStore,
    study,
    setup: SweepSetup,
    run_trial: RunTrial,
    on_trial: OnTrial = lambda number, status, value, message: None,
    should_stop: Optional[threading.Event] = None,
) -> SweepEnd:
    """Ask, train, tell until `setup.trials` trials have ended (completed, pruned or failed); returns
    "finished", or "stopped" when `should_stop` was set or a trial was cancelled (resumable). Raises
    LabError after MAX_CONSECUTIVE_FAILURES failed trials in a row. A trial left running by a crash is told
    failed and run again. `run_trial(config, group, sink, prune)` trains one run (sink: its events;
    prune(): a check the sink may use) and returns its run id."""
    from optuna.trial import TrialState

    should_stop = should_stop or threading.Event()
    for lost in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(lost.number, state=TrialState.FAIL)  # its process died with it
    study.sampler, study.pruner = _sampler_and_pruner(setup, _ended_trials(study))
    failures_in_a_row = 0
    while _ended_trials(study) < setup.trials:
        if should_stop.is_set():
            return "stopped"
        trial = study.ask()
        values = {param.key: param.suggest(trial) for param in setup.params}
        config = setup.base.with_overrides([f"{key}={_scalar(value)}" for key, value in values.items()])
        config.name = f"{setup.name} #{trial.number}"
        best: list[float] = []
        pruned_at: list[int] = []

        sink = _trial_sink(setup.metric, trial, best, pruned_at)
        run_id = run_trial(config, group_of(setup.name), sink, lambda: bool(pruned_at))  # noqa: B023
        trial.set_user_attr("run_id", run_id)
        run = store.get_run(run_id)
        trial.set_user_attr(RUN_STATUS_ATTR, run.status)
        value = (max(best) if setup.direction == "maximize" else min(best)) if best else None
        if pruned_at and run.status in ("cancelled", "completed"):
            store.mark_pruned(
                run_id,
                f"Pruned by the {setup.pruner} pruner at step {pruned_at[0]}: its validation "
                f"{setup.metric} was below the median of earlier trials at that step.",
            )
            study.tell(trial, state=TrialState.PRUNED)
            on_trial(trial.number, "pruned", value, "")
        elif run.status == "completed" and value is not None:
            study.tell(trial, value)
            on_trial(trial.number, "completed", value, "")
        else:
            study.tell(trial, state=TrialState.FAIL)
            on_trial(trial.number, run.status, value, run.message)
            if run.status in ("cancelled", "interrupted"):
                return "stopped"  # the user stopped it: the sweep stops too, resumable
        failures_in_a_row = failures_in_a_row + 1 if run.status == "failed" else 0
        if failures_in_a_row >= MAX_CONSECUTIVE_FAILURES and _ended_trials(study) < setup.trials:
            raise LabError(
                f"Sweep {setup.name!r} stopped: its last {failures_in_a_row} trials failed. "
                f"The last one (run {run_id}): {one_line(run.message)}"
            )
    return "finished"


def best_trial(study) -> Optional[Any]:
    from optuna.trial import TrialState

    return study.best_trial if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) else None


def _choice(text: str) -> Any:
    """A choice as YAML reads it, but 1e-3 a number (YAML 1.1 wants 1.0e-3 for that)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def parse_params(texts: Sequence[str], base: RunConfig) -> list[Param]:
    params = [parse_param(text, base) for text in texts]
    if not params:
        raise ConfigError("A sweep needs at least one --param, e.g. --param train.learning_rate=log:1e-5:1e-2.")
    return params


def runner_trial(
    runner, store: RunStore, should_stop: Optional[threading.Event] = None, poll_seconds: float = 0.5
) -> RunTrial:
    """A RunTrial for the app: the trial goes through the job runner like any run, and its events are read
    back from the store for the pruner; a pruned trial, or any trial once `should_stop` is set, is
    cancelled at its next optimizer step."""
    stopping = should_stop or threading.Event()

    def run_trial(config: RunConfig, group: str, sink: EventSink, prune: Callable[[], bool]) -> str:
        run_id, seq = runner.submit(config, group=group), 0
        while True:
            ended = not store.get_run(run_id).is_active  # read before the events, so none is missed
            for seq, event in store.events_since(run_id, seq):  # noqa: B007, B020 (the cursor moves on)
                sink(event)
            if ended:
                return run_id
            if prune() or stopping.is_set():
                try:
                    runner.cancel(run_id)
                except LabError:
                    pass  # it ended meanwhile
            time.sleep(poll_seconds)

    return run_trial


def start_in_background(
    runner, store: RunStore, setup: SweepSetup, should_stop: Optional[threading.Event] = None
) -> threading.Thread:
    """Create the study and run it in a daemon thread (the app's Sweeps page); returns the thread. Setting
    `should_stop` cancels the running trial and ends the sweep."""
    study = create_study(store, setup)

    def work() -> None:
        try:
            run_sweep(store, study, setup, runner_trial(runner, store, should_stop), should_stop=should_stop)
        except LabError as exc:  # trials kept failing: each failed run shows its error on the Sweeps page
            log.warning("%s", exc)

    thread = threading.Thread(target=work, name=f"lab-sweep-{setup.name}", daemon=True)
    thread.start()
    return thread


def sweep_names(store: RunStore) -> list[str]:
    """The sweeps kept beside this run store, newest first."""
    folder = store.runs_dir / SWEEPS_DIR
    paths = sorted(folder.glob("*.db"), key=lambda path: path.stat().st_mtime, reverse=True) if folder.is_dir() else []
    import optuna

    names = []
    for path in paths:
        names += [summary.study_name for summary in optuna.get_all_study_summaries(_storage(path))]
    return names


def _trial_sink(metric: str, trial: Any, best: list[float], pruned_at: list[int]) -> EventSink:
    """Reads one trial's validation metric: the best so far, and the step its pruner stopped it at."""

    def sink(event: Event) -> None:
        if isinstance(event, EvalEvent) and event.split == "validation" and metric in event.metrics:
            best.append(event.metrics[metric])
            trial.report(event.metrics[metric], event.step)
            if not pruned_at and trial.should_prune():
                pruned_at.append(event.step)

    return sink
