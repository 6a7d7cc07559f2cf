"""Sweeps: an Optuna study driven with ask / tell, each trial a normal run in the run store, grouped under
the sweep (`sweep NAME`).

A trial's value is its best validation metric (never the test split: a sweep tuned on the test split
would report a flattering test figure). Each validation evaluation is reported to the trial, so Optuna's
pruner can stop a poor trial early: it ends with status `pruned` and says at which step. The study lives
in Optuna's own storage beside the run store (SQLite, `runs/sweeps/NAME.db`), with the sweep's setup
(base config, parameters, metric) as study attributes, so `python -m lab sweep --resume NAME` continues a
sweep after a crash or a restart and runs only the trials still missing. Trials run one at a time, or
`parallel` at once (each through the job runner in a worker process; Optuna is asked and told from the
sweep's thread only).

A sweep always ends: a failed trial counts as one of its trials, and after MAX_CONSECUTIVE_FAILURES
failures in a row (a wrong model path fails every trial) it stops with the last trial's error. A stop
request (the `should_stop` event that the CLI's SIGTERM and Ctrl-C handlers set), or a trial cancelled
from elsewhere, ends it before the next trial; `--resume` continues it.

A `--param` is `section.field=KIND:...` (lab.groups.sweep_params).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from lab.config import RunConfig
from lab.errors import LabError, one_line
from lab.events import EvalEvent, Event, EventSink
from lab.groups.sweep_params import KINDS as KINDS  # the --param grammar, importable from here as before
from lab.groups.sweep_params import Param, yaml_scalar
from lab.groups.sweep_params import parse_param as parse_param
from lab.groups.sweep_params import parse_params as parse_params
from lab.runs.records import slugify
from lab.runs.store import RunStore

log = logging.getLogger(__name__)

SWEEPS_DIR = "sweeps"
PRUNERS = ("median", "none")
MAX_CONSECUTIVE_FAILURES = 3
# A trial's run status, kept on the trial: a failed run counts as an ended trial; a run lost with a crashed
# sweep, or stopped by the user, does not, so --resume runs it again.
RUN_STATUS_ATTR = "run_status"
SweepEnd = Literal["finished", "stopped"]


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


def _sampler_and_pruner(setup: SweepSetup, finished: int, parallel: int = 1):
    import optuna

    # Seeded, and offset by the trials already told, so a resumed sweep does not redraw the first ones. With
    # trials side by side, the constant liar keeps TPE from asking for the same point again while they run.
    sampler = optuna.samplers.TPESampler(seed=setup.seed + finished, constant_liar=parallel > 1)
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


@dataclass
class _Trial:
    """A trial in flight: its Optuna trial, what its run's evaluations said, and how its training ended."""

    trial: Any
    best: list[float] = field(default_factory=list)
    pruned_at: list[int] = field(default_factory=list)
    run_id: str = ""
    error: Optional[BaseException] = None
    done: threading.Event = field(default_factory=threading.Event)


def run_sweep(
    store: RunStore,
    study,
    setup: SweepSetup,
    run_trial: RunTrial,
    on_trial: OnTrial = lambda number, status, value, message: None,
    should_stop: Optional[threading.Event] = None,
    parallel: int = 1,
) -> SweepEnd:
    """Ask, train, tell until `setup.trials` trials have ended (completed, pruned or failed); returns
    "finished", or "stopped" when `should_stop` was set or a trial was cancelled (resumable). Raises
    LabError after MAX_CONSECUTIVE_FAILURES failed trials in a row. A trial left running by a crash is told
    failed and run again. `run_trial(config, group, sink, prune)` trains one run (sink: its events;
    prune(): a check the sink may use) and returns its run id.

    With `parallel` above 1, that many trials train at once, each `run_trial` in a thread of its own; the
    study is asked, reported to and told only from this thread (its events come here through a queue), so
    pruning judges side-by-side trials against the ones already completed. A stop, a cancelled trial or
    too many failures stop the trials still in flight (prune() says so) before this returns."""
    from optuna.trial import TrialState

    should_stop = should_stop or threading.Event()
    for lost in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(lost.number, state=TrialState.FAIL)  # its process died with it
    study.sampler, study.pruner = _sampler_and_pruner(setup, _ended_trials(study), parallel)
    halt, here = threading.Event(), threading.get_ident()
    arrived: queue.SimpleQueue[tuple[_Trial, Optional[Event]]] = queue.SimpleQueue()
    flights: list[_Trial] = []
    failures_in_a_row, stopped, failure = 0, False, None

    def report(flight: _Trial, event: Event) -> None:
        if isinstance(event, EvalEvent) and event.split == "validation" and setup.metric in event.metrics:
            flight.best.append(event.metrics[setup.metric])
            flight.trial.report(event.metrics[setup.metric], event.step)
            if not flight.pruned_at and flight.trial.should_prune():
                flight.pruned_at.append(event.step)

    def launch() -> _Trial:
        trial = study.ask()
        values = {param.key: param.suggest(trial) for param in setup.params}
        config = setup.base.with_overrides([f"{key}={yaml_scalar(value)}" for key, value in values.items()])
        config.name = f"{setup.name} #{trial.number}"
        flight = _Trial(trial)

        def sink(event: Event) -> None:
            # Optuna is spoken to from the sweep's thread only: a trial training beside others queues its events.
            report(flight, event) if threading.get_ident() == here else arrived.put((flight, event))

        def train() -> None:
            try:
                flight.run_id = run_trial(
                    config, group_of(setup.name), sink, lambda: bool(flight.pruned_at) or halt.is_set()
                )
            except BaseException as exc:  # noqa: BLE001 - raised again in the sweep's thread
                flight.error = exc
            finally:
                flight.done.set()
                arrived.put((flight, None))

        if parallel > 1:
            threading.Thread(target=train, name=f"lab-sweep-trial-{trial.number}", daemon=True).start()
        else:
            train()
        return flight

    while True:
        while not halt.is_set() and len(flights) < parallel and _ended_trials(study) + len(flights) < setup.trials:
            if should_stop.is_set():
                stopped = True
                halt.set()
                break
            flights.append(launch())
        if not flights:
            break
        try:
            flight, event = arrived.get(timeout=0.5)
            if event is not None:
                report(flight, event)
        except queue.Empty:
            pass
        if should_stop.is_set():
            halt.set()
        for flight in [flight for flight in flights if flight.done.is_set()]:
            _drain(arrived, report)
            flights.remove(flight)
            if flight.error is not None:
                halt.set()
                failure = failure or flight.error
                study.tell(flight.trial, state=TrialState.FAIL)
                continue
            status = _settle(store, study, setup, flight, on_trial)
            if status in ("cancelled", "interrupted"):
                stopped = True  # the user stopped it: the sweep stops too, resumable
                halt.set()
            failures_in_a_row = failures_in_a_row + 1 if status == "failed" else 0
            if failures_in_a_row >= MAX_CONSECUTIVE_FAILURES and _ended_trials(study) < setup.trials and not failure:
                run = store.get_run(flight.run_id)
                halt.set()
                failure = LabError(
                    f"Sweep {setup.name!r} stopped: its last {failures_in_a_row} trials failed. "
                    f"The last one (run {run.id}): {one_line(run.message)}"
                )
    if failure is not None:
        raise failure
    return "stopped" if stopped and _ended_trials(study) < setup.trials else "finished"


def _drain(arrived: queue.SimpleQueue, report: Callable[[_Trial, Event], None]) -> None:
    while True:
        try:
            flight, event = arrived.get_nowait()
        except queue.Empty:
            return
        if event is not None:
            report(flight, event)


def _settle(store: RunStore, study, setup: SweepSetup, flight: _Trial, on_trial: OnTrial) -> str:
    """Tell the study how a trial's run ended; returns the run's status."""
    from optuna.trial import TrialState

    trial, run_id, best, pruned_at = flight.trial, flight.run_id, flight.best, flight.pruned_at
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
        return "pruned"
    if run.status == "completed" and value is not None:
        study.tell(trial, value)
        on_trial(trial.number, "completed", value, "")
        return "completed"
    study.tell(trial, state=TrialState.FAIL)
    on_trial(trial.number, run.status, value, run.message)
    return run.status


def best_trial(study) -> Optional[Any]:
    from optuna.trial import TrialState

    return study.best_trial if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) else None


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
    runner,
    store: RunStore,
    setup: SweepSetup,
    should_stop: Optional[threading.Event] = None,
    parallel: Optional[int] = None,
) -> threading.Thread:
    """Create the study and run it in a daemon thread (the app's Sweeps page), `parallel` trials at once (by
    default as many as the runner has device slots); returns the thread. Setting `should_stop` cancels the
    running trials and ends the sweep."""
    study = create_study(store, setup)
    at_once: int = parallel if parallel is not None else getattr(runner, "slot_count", 1)

    def work() -> None:
        try:
            trial = runner_trial(runner, store, should_stop)
            run_sweep(store, study, setup, trial, should_stop=should_stop, parallel=at_once)
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
