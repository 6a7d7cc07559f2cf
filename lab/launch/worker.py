"""Worker processes and terminals: what `python -m lab train --run-id ID` runs (through torchrun for
several devices), how a worker's end is settled when it exits, and how a terminal trains or follows a
run wherever its launcher (lab.launch.launchers) trains it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
import traceback
from pathlib import Path
from typing import Optional

from lab.config import RunConfig
from lab.errors import LabError
from lab.events import EventSink, LogEvent, discard
from lab.launch.execute import (
    EXIT_CODES,
    Terminated,
    TrainFn,
    default_train_fn,
    describe_failure,
    execute_run,
    on_sigterm,
    release_memory,
)
from lab.launch.launchers import choose_launcher, train_in_this_process
from lab.launch.processes import WorkerCommand, cap_log, last_log_line, worker_command, worker_env, worker_log
from lab.runs.owner import HEARTBEAT_SECONDS
from lab.runs.records import RunRecord
from lab.runs.store import RunStore

log = logging.getLogger(__name__)


class _OwnerWatch:
    """In a worker process: beat the heartbeat, and turn a cancel flag in the store, or the caller's
    `interrupted` event, into should_stop."""

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        should_stop: threading.Event,
        beat: bool,
        interrupted: Optional[threading.Event] = None,
        poll_seconds: float = 0.5,
    ) -> None:
        self.store, self.run_id, self.should_stop, self.beat = store, run_id, should_stop, beat
        self.interrupted, self.poll_seconds = interrupted, poll_seconds
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"lab-watch-{run_id}", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        last_beat = time.monotonic()
        while not self._done.wait(self.poll_seconds):
            if self.interrupted is not None and self.interrupted.is_set():
                self.should_stop.set()
            try:
                if self.store.cancel_requested(self.run_id):
                    self.should_stop.set()
                if self.beat and time.monotonic() - last_beat > HEARTBEAT_SECONDS:
                    self.store.heartbeat([self.run_id])
                    last_beat = time.monotonic()
            except Exception:
                log.exception("Watching run %s failed; retrying", self.run_id)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def run_stored_job(
    run_id: str,
    store: RunStore,
    train_fn: Optional[TrainFn] = None,
    extra_sink: Optional[EventSink] = None,
    interrupted: Optional[threading.Event] = None,
) -> int:
    """Train a stored run in this process (what `python -m lab train --run-id ID` runs); returns the
    exit code. Under torchrun only rank 0 writes events, status and artifacts.

    A caller that handles SIGTERM and Ctrl-C itself (a sweep) passes the event its handlers set as
    `interrupted`: the run then stops at its next step, and no handler of this function replaces the caller's."""
    train_fn = train_fn or default_train_fn()
    run = store.get_run(run_id)
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0 and run.status != "queued":
        raise LabError(
            f"Run {run_id} is {run.status}, not queued; an ended run continues with python -m lab resume {run_id}."
        )
    should_stop = threading.Event()
    watch = _OwnerWatch(store, run_id, should_stop, beat=rank == 0, interrupted=interrupted)
    previous = None
    if interrupted is None and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        if rank != 0:
            return _run_other_rank(store, run, train_fn, should_stop, rank)
        where = " (torchrun rank 0)" if "LOCAL_RANK" in os.environ else ""
        status = execute_run(
            store, run_id, train_fn, should_stop, extra_sink, message=f"Training in process {os.getpid()}{where}."
        )
        return EXIT_CODES.get(status, 1)
    finally:
        watch.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run_other_rank(store: RunStore, run: RunRecord, train_fn: TrainFn, should_stop: threading.Event, rank: int) -> int:
    run_id = run.id
    try:
        train_fn(
            store.load_config(run_id),
            store.output_dir(run),
            discard,
            should_stop=should_stop,
            resume_from_checkpoint=run.resume_from or None,
        )
    except (Exception, Terminated, KeyboardInterrupt) as exc:
        # Rank 0 may never see why the group died; the first final status written wins.
        status, text = describe_failure(exc, run_id, should_stop.is_set())
        store.finish(run_id, status, f"Rank {rank}: {text}", traceback.format_exc())
        return EXIT_CODES.get(status, 1)
    finally:
        release_memory()
    return 0


def settle_after_exit(
    store: RunStore, run_id: str, returncode: int, cancel_asked: bool, log_path: Optional[Path] = None
) -> None:
    """After a worker process ended: give a run it left active the status that tells the truth."""
    run = store.get_run(run_id)
    if not run.is_active:
        return
    where = f" Its output is in {log_path}." if log_path else ""
    if cancel_asked or run.cancel_requested:
        store.finish(run_id, "cancelled", "Cancelled; the worker process was stopped.")
    elif returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        store.finish(
            run_id,
            "interrupted",
            f"The worker process was killed by {name} before it finished; "
            f"resume it with python -m lab resume {run_id}.{where}",
        )
    else:
        last = last_log_line(log_path) if log_path else ""
        store.finish(
            run_id,
            "failed",
            f"The worker process exited with code {returncode} without finishing "
            f"the run{': ' + last if last else ''}.{where}",
        )


def run_in_foreground(
    config: RunConfig,
    output_dir: str | Path | None = None,
    sink: Optional[EventSink] = None,
    store: Optional[RunStore] = None,
    train_fn: Optional[TrainFn] = None,
    group: str = "",
) -> tuple[str, int]:
    """`python -m lab train`: record the run in the store like any other (in `group` when given) and train
    it in this terminal, events going to the store and to `sink`. Returns the run id and the exit code."""
    store = store or RunStore()
    # The store's `executor` column says "cli" for a run a terminal trains itself, "ray" for a cluster's.
    recorded = "ray" if choose_launcher(config) == "ray" else "cli"
    run = store.create_run(config, executor=recorded, output_dir=output_dir, group=group)
    note = LogEvent(
        message=f"Run {run.id}: folder {store.run_dir(run.id)}; "
        f"follow it elsewhere with python -m lab show {run.id} --follow"
    )
    store.append_event(run.id, note)
    if sink is not None:
        sink(note)
    return run.id, continue_in_foreground(store, run.id, sink, train_fn)


def continue_in_foreground(
    store: RunStore,
    run_id: str,
    sink: Optional[EventSink] = None,
    train_fn: Optional[TrainFn] = None,
    command: WorkerCommand = worker_command,
    interrupted: Optional[threading.Event] = None,
) -> int:
    """Train a queued run from this terminal wherever its launcher trains it (in this process, through
    torchrun, or as a Ray job), following its events into `sink`. Returns the exit code. `interrupted`:
    as for `run_stored_job`."""
    config = store.load_config(run_id)
    launcher = choose_launcher(config)
    if launcher != "torchrun":
        fn = train_in_this_process(launcher, store, run_id, train_fn or default_train_fn())
        return run_stored_job(run_id, store, fn, sink, interrupted)
    log_path = worker_log(store, run_id)
    seq, cancel_asked = store.last_seq(run_id), False
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            command(run_id, config.train.num_devices),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=worker_env(store, []),
        )
        while True:
            try:
                returncode = process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                returncode = None
            except KeyboardInterrupt:  # the worker group got the same Ctrl-C; ask nicely, then end it
                cancel_asked = True
            if interrupted is not None and interrupted.is_set():
                cancel_asked = True
            if cancel_asked and returncode is None:
                store.request_cancel(run_id)
                _stop(process)
                returncode = process.returncode
            for seq, event in store.events_since(run_id, seq):  # noqa: B007, B020 (the cursor moves on)
                if sink is not None:
                    sink(event)
            cap_log(log_path)
            if returncode is not None:
                break
    settle_after_exit(store, run_id, returncode, cancel_asked, log_path)
    return EXIT_CODES.get(store.get_run(run_id).status, 1)


def _stop(process: subprocess.Popen, grace_seconds: float = 10.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            process.wait(timeout=grace_seconds)
            return
        except subprocess.TimeoutExpired:
            process.send_signal(sig)
    process.wait()


def cancel_run(store: RunStore, run_id: str) -> None:
    """Ask whichever process owns an active run to stop it (it polls the flag in the store)."""
    run = store.get_run(run_id)
    if not run.is_active:
        raise LabError(f"Run {run_id} is {run.status}, not queued or running: nothing to cancel.")
    store.request_cancel(run_id)
