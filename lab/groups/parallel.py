"""A group's runs side by side: a comparison's, a sweep's or a lesson's, up to `parallel` at once.

The runs go through a job runner with that many slots (lab.launch.slots: one per GPU, the CPU counting
as one, or what --parallel asks for), each in a worker process of its own so it trains as it would alone;
on a Ray cluster each is a job that asks Ray for its own resources. The store stays the one writer: this
module only submits, waits and cancels, and reads how each run ended.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Optional

from lab.errors import LabError
from lab.launch.runner import JobRunner
from lab.launch.slots import device_slots, visible_gpus
from lab.runs.records import RunRecord
from lab.runs.store import RunStore


def default_parallel() -> int:
    """Runs at once when the user does not say: one per GPU here, the CPU counting as one."""
    return device_slots(visible_gpus())


def group_runner(store: RunStore, parallel: int, **options: Any) -> Any:
    """A job runner for one group, `parallel` runs at once (the CLI's; the app keeps its own). The runs it
    submits belong to the store's viewer (the CLI's --as NAME), within that person's quotas."""
    runner = JobRunner(store, parallel=parallel, **options)
    if store.viewer is None:
        return runner
    from lab.launch.personal import PersonalRunner

    return PersonalRunner(runner, store.viewer)


def cancel_group(runner: Any, store: RunStore, group: str) -> list[str]:
    """Stop every run of `group` that has not ended: a queued one never starts, a running one stops at its
    next optimizer step. Returns the ids asked to stop."""
    asked = []
    for run in store.list_runs(group=group):
        if run.is_active:
            try:
                runner.cancel(run.id)
                asked.append(run.id)
            except LabError:
                pass  # it ended meanwhile
    return asked


def wait_for_runs(
    runner: Any,
    store: RunStore,
    run_ids: Sequence[str],
    on_end: Callable[[RunRecord], None] = lambda run: None,
    should_stop: Optional[threading.Event] = None,
    poll_seconds: float = 0.5,
) -> list[RunRecord]:
    """Wait until every run has ended, calling `on_end` once for each as it ends (in the order they end).
    Setting `should_stop` cancels the runs that have not ended, then waits for them. Returns the records
    in the order of `run_ids`."""
    waiting, cancelled = list(run_ids), False
    while waiting:
        if should_stop is not None and should_stop.is_set() and not cancelled:
            cancelled = True
            for run_id in waiting:
                try:
                    runner.cancel(run_id)
                except LabError:
                    pass  # it ended meanwhile
        for run_id in list(waiting):
            run = store.get_run(run_id)
            if not run.is_active:
                waiting.remove(run_id)
                on_end(run)
        if waiting:
            runner.wait(waiting[0], timeout=poll_seconds)
    return [store.get_run(run_id) for run_id in run_ids]
