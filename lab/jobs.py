"""Background training jobs that write only through the run store.

`JobRunner` takes configs, creates their runs, and trains them one per device at a time, the rest
queued first in, first out. Two executors run the same job:

- `thread`: `train()` in a background thread of this process (the app's default). Cancel sets the
  `should_stop` event the engine checks at every optimizer step.
- `process`: `python -m lab train --run-id ID` (through torchrun when the config asks for more than
  one device), in its own process group, for crash isolation and multi-GPU. Cancel raises a flag in
  the store that the worker polls; if the worker has not stopped after a grace period it gets
  SIGTERM, then SIGKILL of its whole process group.

`run_stored_job` is what such a worker process runs; `prepare_resume` turns an interrupted,
cancelled or failed run back into a queued one that continues from its last checkpoint.
"""
from __future__ import annotations

import errno
import gc
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import IO, Any, Callable, Optional

from lab.config import RunConfig
from lab.errors import OUT_OF_MEMORY_ADVICE, LabError, is_out_of_memory
from lab.events import EvalEvent, Event, EventSink, LogEvent, ResultEvent, StatusEvent, discard
from lab.openmp import release_openmp_team
from lab.store import HEARTBEAT_SECONDS, RunRecord, RunStore

log = logging.getLogger(__name__)

TrainFn = Callable[..., Any]
WorkerCommand = Callable[[str, int], list[str]]
EXECUTORS = ("thread", "process")
EXIT_CODES = {"completed": 0, "failed": 1, "cancelled": 130, "interrupted": 130}
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# Trainer writes trainer_state.json last: a checkpoint folder without it was cut off mid-save.
_CHECKPOINT_COMPLETE_MARKER = "trainer_state.json"


def default_train_fn() -> TrainFn:
    from lab.engine import train  # lazily: importing the engine imports torch and transformers

    return train


# ---- event sinks --------------------------------------------------------------------------------
class StoreSink:
    """Buffers events and writes them from a background thread every `flush_seconds`, at once for
    status / eval / result events, so the training loop never waits on SQLite for a step event."""

    _URGENT = (StatusEvent, EvalEvent, ResultEvent)

    def __init__(self, store: RunStore, run_id: str, flush_seconds: float = 0.5) -> None:
        self.store, self.run_id, self.flush_seconds = store, run_id, flush_seconds
        self._buffer: list[Event] = []
        self._buffer_lock = threading.Lock()
        self._write_lock = threading.Lock()  # keeps batches in emission order
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._flush_loop, name=f"lab-sink-{run_id}", daemon=True)
        self._thread.start()

    def __call__(self, event: Event) -> None:
        with self._buffer_lock:
            self._buffer.append(event)
        if isinstance(event, self._URGENT):
            self._wake.set()

    def flush(self) -> None:
        with self._write_lock:
            with self._buffer_lock:
                batch, self._buffer = self._buffer, []
            if not batch:
                return
            try:
                self.store.append_events(self.run_id, batch)
            except Exception:
                with self._buffer_lock:  # keep them for the next try rather than lose them
                    self._buffer[:0] = batch
                raise

    def _flush_loop(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("Could not write events of run %s; retrying", self.run_id)

    def close(self) -> None:
        """Stop the background thread and write what is left."""
        self._closed.set()
        self._wake.set()
        self._thread.join()
        self.flush()


def tee(*sinks: EventSink) -> EventSink:
    def send(event: Event) -> None:
        for sink in sinks:
            sink(event)

    return send


# ---- one job, start to end ----------------------------------------------------------------------
class _Terminated(BaseException):
    """Raised in a worker's main thread by SIGTERM so the run can still record why it ended."""


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise _Terminated()


def execute_run(store: RunStore, run_id: str, train_fn: TrainFn, should_stop: threading.Event,
                extra_sink: Optional[EventSink] = None, message: str = "") -> str:
    """Claim a queued run, train it, record the final status; returns that status. Never raises for
    a training error: the error is the run's outcome (KeyboardInterrupt and SIGTERM included)."""
    if not store.mark_running(run_id, message):
        return store.get_run(run_id).status  # cancelled while it waited in the queue
    sink = StoreSink(store, run_id)
    try:
        run = store.get_run(run_id)
        config = store.load_config(run_id)
        result = train_fn(config, store.output_dir(run), tee(sink, extra_sink) if extra_sink else sink,
                          should_stop=should_stop, resume_from_checkpoint=run.resume_from or None)
    except BaseException as exc:  # noqa: BLE001 - every way a job can end must land in the store
        sink.close()
        cancel_asked = should_stop.is_set() or store.cancel_requested(run_id)
        status, text = describe_failure(exc, run_id, cancel_asked)
        store.finish(run_id, status, text, traceback.format_exc())
        if not isinstance(exc, (Exception, KeyboardInterrupt, _Terminated)):
            raise  # SystemExit and the like still end the process
        return status
    finally:
        release_memory()
    sink.close()
    return _record_result(store, run_id, result)


def describe_failure(exc: BaseException, run_id: str, cancel_asked: bool) -> tuple[str, str]:
    """The status and the one-line message a person can act on for an exception that ended a run."""
    if isinstance(exc, KeyboardInterrupt):
        return "cancelled", "Stopped with Ctrl-C."
    if isinstance(exc, _Terminated):
        if cancel_asked:
            return "cancelled", "Cancelled; the worker stopped on SIGTERM."
        return "interrupted", (f"The worker was terminated (SIGTERM) before it finished; "
                               f"resume it with python -m lab resume {run_id}.")
    if isinstance(exc, LabError):
        return "failed", str(exc)
    if is_out_of_memory(exc):
        detail = str(exc).splitlines()[0][:200] if str(exc) else ""
        return "failed", f"Out of memory: {OUT_OF_MEMORY_ADVICE}." + (f" ({detail})" if detail else "")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = f" ({exc.filename})" if exc.filename else ""
        return "failed", (f"The disk is full{where}: free some space (python -m lab delete removes old runs), "
                          f"then resume it with python -m lab resume {run_id}.")
    return "failed", " ".join(f"{type(exc).__name__}: {exc}".split())


def _record_result(store: RunStore, run_id: str, result: Any) -> str:
    status = getattr(result, "status", "completed")
    status = status if status in ("completed", "cancelled") else "completed"
    summary = {key: getattr(result, key, None)
               for key in ("trainable_params", "total_params", "wall_seconds", "peak_memory_mb", "output_dir")}
    summary["output_dir"] = str(summary["output_dir"] or "")
    metrics = dict(getattr(result, "metrics", {}) or {})
    per_label = list(getattr(result, "per_label", []) or [])
    _write_report(store.output_dir(store.get_run(run_id)) / "report.json", run_id, status, metrics, per_label, summary, result)
    seconds = summary["wall_seconds"]
    message = "Cancelled at the user's request." if status == "cancelled" else (
        f"Finished in {seconds:.0f} s." if isinstance(seconds, (int, float)) else "Finished.")
    store.finish(run_id, status, message, metrics=metrics, per_label=per_label, summary=summary)
    return status


def _write_report(path: Path, run_id: str, status: str, metrics: dict, per_label: list, summary: dict,
                  result: Any) -> None:
    # The engine may write a richer report itself; never overwrite it.
    if path.exists():
        return
    report = asdict(result) if is_dataclass(result) and not isinstance(result, type) else {}
    report.update({"run_id": run_id, "status": status, "metrics": metrics, "per_label": per_label, **summary})
    path.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")


def release_memory() -> None:
    """Give cached GPU memory back after a job so the next one (or another program) can use it."""
    gc.collect()
    torch = sys.modules.get("torch")  # a job that never imported torch has no GPU memory to release
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---- resume -------------------------------------------------------------------------------------
def last_checkpoint(folder: Path) -> Optional[Path]:
    """The newest complete `checkpoint-<step>` folder (like transformers' get_last_checkpoint, but
    skipping one a kill cut off mid-save)."""
    if not folder.is_dir():
        return None
    steps = [(int(m.group(1)), path) for path in folder.iterdir()
             if (m := _CHECKPOINT.match(path.name)) and (path / _CHECKPOINT_COMPLETE_MARKER).is_file()]
    return max(steps)[1] if steps else None


def prepare_resume(store: RunStore, run_id: str) -> Optional[Path]:
    """Queue an ended run again in the same record; it continues from its last checkpoint, or starts
    over (and says so) when none was written. Returns the checkpoint, or None."""
    run = store.get_run(run_id)
    if run.is_active:
        raise LabError(f"Run {run_id} is {run.status}; only an interrupted, cancelled or failed run can be resumed.")
    if run.status == "completed":
        raise LabError(f"Run {run_id} already completed. To train again, start a new run from its config: "
                       f"python -m lab train {store.run_dir(run_id) / 'config.yaml'}")
    output_dir = store.output_dir(run)
    checkpoints = output_dir / "checkpoints"
    checkpoint = last_checkpoint(checkpoints)
    for partial in checkpoints.glob("checkpoint-*"):  # cut off mid-save: Trainer would trip over them
        if partial.is_dir() and not (partial / _CHECKPOINT_COMPLETE_MARKER).is_file():
            shutil.rmtree(partial, ignore_errors=True)
    (output_dir / "report.json").unlink(missing_ok=True)
    if checkpoint is not None:
        message = (f"Resuming from {checkpoint.name} (step {checkpoint.name.split('-')[1]}), with its optimizer "
                   f"and scheduler state.")
    else:
        message = "No checkpoint was written before the run stopped: starting it over from step 0."
    store.requeue(run_id, str(checkpoint or ""), message)
    store.append_event(run_id, LogEvent(message=message, level="info" if checkpoint else "warning"))
    return checkpoint


# ---- worker processes ---------------------------------------------------------------------------
def worker_command(run_id: str, num_devices: int) -> list[str]:
    """`python -m lab train --run-id ID`, through torchrun (same interpreter) for several devices."""
    command = ["-m", "lab", "train", "--run-id", run_id]
    if num_devices > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={num_devices}", *command]
    return [sys.executable, *command]


class _OwnerWatch:
    """In a worker process: beat the heartbeat, and turn a cancel flag in the store into should_stop."""

    def __init__(self, store: RunStore, run_id: str, should_stop: threading.Event, beat: bool,
                 poll_seconds: float = 0.5) -> None:
        self.store, self.run_id, self.should_stop, self.beat = store, run_id, should_stop, beat
        self.poll_seconds = poll_seconds
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"lab-watch-{run_id}", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        last_beat = time.monotonic()
        while not self._done.wait(self.poll_seconds):
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


def run_stored_job(run_id: str, store: RunStore, train_fn: Optional[TrainFn] = None,
                   extra_sink: Optional[EventSink] = None) -> int:
    """Train a stored run in this process (what `python -m lab train --run-id ID` runs); returns the
    exit code. Under torchrun only rank 0 writes events, status and artifacts."""
    train_fn = train_fn or default_train_fn()
    run = store.get_run(run_id)
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0 and run.status != "queued":
        raise LabError(f"Run {run_id} is {run.status}, not queued; "
                       f"an ended run continues with python -m lab resume {run_id}.")
    should_stop = threading.Event()
    watch = _OwnerWatch(store, run_id, should_stop, beat=rank == 0)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if rank != 0:
            return _run_other_rank(store, run, train_fn, should_stop, rank)
        where = " (torchrun rank 0)" if "LOCAL_RANK" in os.environ else ""
        status = execute_run(store, run_id, train_fn, should_stop, extra_sink,
                             message=f"Training in process {os.getpid()}{where}.")
        return EXIT_CODES.get(status, 1)
    finally:
        watch.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run_other_rank(store: RunStore, run: RunRecord, train_fn: TrainFn, should_stop: threading.Event,
                    rank: int) -> int:
    run_id = run.id
    try:
        train_fn(store.load_config(run_id), store.output_dir(run), discard, should_stop=should_stop,
                 resume_from_checkpoint=run.resume_from or None)
    except (Exception, _Terminated, KeyboardInterrupt) as exc:
        # Rank 0 may never see why the group died; the first final status written wins.
        status, text = describe_failure(exc, run_id, should_stop.is_set())
        store.finish(run_id, status, f"Rank {rank}: {text}", traceback.format_exc())
        return EXIT_CODES.get(status, 1)
    finally:
        release_memory()
    return 0


def settle_after_exit(store: RunStore, run_id: str, returncode: int, cancel_asked: bool,
                      log_path: Optional[Path] = None) -> None:
    """After a worker process ended: give a run it left active the status that tells the truth."""
    run = store.get_run(run_id)
    if not run.is_active:
        return
    where = f" Its output is in {log_path}." if log_path else ""
    if cancel_asked or run.cancel_requested:
        store.finish(run_id, "cancelled", "Cancelled; the worker process was stopped.")
    elif returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        store.finish(run_id, "interrupted", f"The worker process was killed by {name} before it finished; "
                                            f"resume it with python -m lab resume {run_id}.{where}")
    else:
        last = _last_line(log_path) if log_path else ""
        store.finish(run_id, "failed", f"The worker process exited with code {returncode} without finishing "
                                       f"the run{': ' + last if last else ''}.{where}")


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def worker_env(store: RunStore, gpu_ids: list[str]) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", LAB_RUNS_DIR=str(store.runs_dir.resolve()))
    if gpu_ids:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)  # a runner inside a torchrun job must not leak its rank to a new worker
    return env


def run_in_foreground(config: RunConfig, output_dir: str | Path | None = None, sink: Optional[EventSink] = None,
                      store: Optional[RunStore] = None, train_fn: Optional[TrainFn] = None) -> tuple[str, int]:
    """`python -m lab train`: record the run in the store like any other and train it in this terminal,
    events going to the store and to `sink`. Returns the run id and the exit code."""
    store = store or RunStore.open()
    run = store.create_run(config, executor="cli", output_dir=output_dir)
    note = LogEvent(message=f"Run {run.id}: folder {store.run_dir(run.id)}; "
                            f"follow it elsewhere with python -m lab show {run.id} --follow")
    store.append_event(run.id, note)
    if sink is not None:
        sink(note)
    return run.id, continue_in_foreground(store, run.id, sink, train_fn)


def continue_in_foreground(store: RunStore, run_id: str, sink: Optional[EventSink] = None,
                           train_fn: Optional[TrainFn] = None, command: WorkerCommand = worker_command) -> int:
    """Train a queued run in this process, or through torchrun for several devices (following its
    events into `sink`). Returns the exit code."""
    num_devices = store.load_config(run_id).train.num_devices
    if num_devices <= 1 or "RANK" in os.environ:
        return run_stored_job(run_id, store, train_fn, sink)
    log_path = store.run_dir(run_id) / "worker.log"
    seq, cancel_asked = store.last_seq(run_id), False
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(command(run_id, num_devices), stdout=log_file, stderr=subprocess.STDOUT,
                                   env=worker_env(store, []))
        while True:
            try:
                returncode = process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                returncode = None
            except KeyboardInterrupt:  # the worker group got the same Ctrl-C; ask nicely, then end it
                cancel_asked = True
                store.request_cancel(run_id)
                _stop(process)
                returncode = process.returncode
            for seq, event in store.events_since(run_id, seq):
                if sink is not None:
                    sink(event)
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


# ---- the job runner -----------------------------------------------------------------------------
@dataclass
class _Job:
    run_id: str
    executor: str
    num_devices: int
    should_stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    slots: list[int] = field(default_factory=list)
    process: Optional[subprocess.Popen] = None
    log_file: Optional[IO[bytes]] = None
    cancel_at: Optional[float] = None  # monotonic times of the cancel escalation steps
    sigterm_at: Optional[float] = None
    sigkill_at: Optional[float] = None


def visible_gpus() -> list[str]:
    """CUDA device ids this process may hand out, as CUDA_VISIBLE_DEVICES would name them."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return (visible or [str(i) for i in range(count)])[:count]


class JobRunner:
    """Runs stored jobs in the background, one per device at a time, the others first in, first out.

    Keep one per process (the app holds it in st.cache_resource). A thread job always takes device
    slot 0 (the device the engine picks in this process); a process job takes `num_devices` free
    slots and sees only those GPUs.
    """

    def __init__(self, store: RunStore, train_fn: Optional[TrainFn] = None, gpu_ids: Optional[list[str]] = None,
                 command: WorkerCommand = worker_command, cancel_grace_seconds: float = 10.0,
                 poll_seconds: float = 0.25) -> None:
        self.store = store
        self._train_fn = train_fn
        self.gpu_ids = visible_gpus() if gpu_ids is None else gpu_ids
        self.command = command
        self.cancel_grace_seconds = cancel_grace_seconds
        self.poll_seconds = poll_seconds
        self._slot_count = max(1, len(self.gpu_ids))
        self._free_slots = set(range(self._slot_count))
        self._queue: deque[_Job] = deque()
        self._running: dict[str, _Job] = {}
        self._jobs: dict[str, _Job] = {}
        self._cond = threading.Condition()
        self._closing = threading.Event()
        self._loop_thread = threading.Thread(target=self._loop, name="lab-job-runner", daemon=True)
        self._loop_thread.start()

    @property
    def train_fn(self) -> TrainFn:
        if self._train_fn is None:
            self._train_fn = default_train_fn()
        return self._train_fn

    # -- public --
    def submit(self, config: RunConfig, executor: str = "thread") -> str:
        """Create the run (queued) and schedule it; returns its id."""
        if executor not in EXECUTORS:
            raise LabError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}.")
        config.validate()
        # A thread cannot drive several devices: multi-device runs always go through torchrun.
        executor = "process" if config.train.num_devices > 1 else executor
        run = self.store.create_run(config, executor=executor)
        self._enqueue(_Job(run.id, executor, config.train.num_devices))
        return run.id

    def resume(self, run_id: str, executor: Optional[str] = None) -> str:
        """Queue an ended run again; it continues from its last checkpoint (see prepare_resume)."""
        run = self.store.get_run(run_id)
        executor = executor or (run.executor if run.executor in EXECUTORS else "thread")
        if executor not in EXECUTORS:
            raise LabError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}.")
        with self._cond:
            if run_id in self._running or any(job.run_id == run_id for job in self._queue):
                raise LabError(f"Run {run_id} is already queued or running here.")
        prepare_resume(self.store, run_id)
        num_devices = self.store.load_config(run_id).train.num_devices
        self._enqueue(_Job(run_id, "process" if num_devices > 1 else executor, num_devices))
        return run_id

    def cancel(self, run_id: str) -> None:
        """Stop a run: drop it from the queue, or stop it at its next optimizer step (escalating to
        SIGTERM then SIGKILL for a worker process that does not stop in time)."""
        with self._cond:
            queued = next((job for job in self._queue if job.run_id == run_id), None)
            if queued is not None:
                self._queue.remove(queued)
            running = self._running.get(run_id)
        if queued is not None:
            self.store.finish(run_id, "cancelled", "Cancelled before it started.")
            queued.done.set()
            return
        cancel_run(self.store, run_id)
        if running is not None:
            self._stop_running(running)

    def wait(self, run_id: str, timeout: Optional[float] = None) -> str:
        """Block until the run ends (or `timeout` passes); returns its status in the store."""
        job = self._jobs.get(run_id)
        if job is not None:
            job.done.wait(timeout)
        else:
            deadline = None if timeout is None else time.monotonic() + timeout
            while self.store.get_run(run_id).is_active and (deadline is None or time.monotonic() < deadline):
                time.sleep(self.poll_seconds)
                self.store.recover_orphans()
        return self.store.get_run(run_id).status

    def queued(self) -> list[str]:
        with self._cond:
            return [job.run_id for job in self._queue]

    def running(self) -> list[str]:
        with self._cond:
            return list(self._running)

    def shutdown(self, cancel: bool = True, timeout: Optional[float] = None) -> None:
        """Cancel (or let finish) every job, wait for them, and stop the scheduler thread."""
        if cancel:
            for run_id in self.queued() + self.running():
                try:
                    self.cancel(run_id)
                except LabError:
                    pass  # ended meanwhile
        for job in list(self._jobs.values()):
            job.done.wait(timeout)
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
        self._loop_thread.join(timeout)

    # -- scheduling --
    def _enqueue(self, job: _Job) -> None:
        if job.executor == "thread":
            # This caller's idle OpenMP team would slow the job's thread down (see lab.openmp).
            release_openmp_team()
        with self._cond:
            self._jobs[job.run_id] = job
            self._queue.append(job)
            self._cond.notify_all()

    def _loop(self) -> None:
        last_beat = time.monotonic()
        while not self._closing.is_set():
            try:
                self._start_ready_jobs()
                self._watch_processes()
                self._take_cancel_requests()
                if time.monotonic() - last_beat > HEARTBEAT_SECONDS:
                    self.store.heartbeat(self.queued() + self.running())
                    last_beat = time.monotonic()
            except Exception:
                log.exception("Job runner step failed; continuing")
            with self._cond:
                self._cond.wait(self.poll_seconds)

    def _take_slots(self, job: _Job) -> Optional[list[int]]:
        if job.executor == "thread":
            return [0] if 0 in self._free_slots else None
        wanted = min(job.num_devices, self._slot_count)  # on CPU, torchrun's processes share the one slot
        if len(self._free_slots) < wanted:
            return None
        return sorted(self._free_slots)[:wanted]

    def _start_ready_jobs(self) -> None:
        ready = []
        with self._cond:
            while self._queue:  # strictly in order: a job that does not fit yet holds the ones behind it
                slots = self._take_slots(self._queue[0])
                if slots is None:
                    break
                job = self._queue.popleft()
                job.slots = slots
                self._free_slots -= set(slots)
                self._running[job.run_id] = job
                ready.append(job)
        for job in ready:
            try:
                self._start(job)
            except Exception as exc:  # noqa: BLE001 - a job that cannot start fails, the queue goes on
                self.store.finish(job.run_id, "failed", f"Could not start the job: {exc}", traceback.format_exc())
                self._job_done(job)

    def _start(self, job: _Job) -> None:
        if job.executor == "thread":
            threading.Thread(target=self._run_thread_job, args=(job,), name=f"lab-job-{job.run_id}",
                             daemon=True).start()
            return
        gpu_ids = [self.gpu_ids[slot] for slot in job.slots if slot < len(self.gpu_ids)]
        log_path = self.store.run_dir(job.run_id) / "worker.log"
        job.log_file = open(log_path, "ab")
        # A new session makes the worker (and torchrun's children) one process group we can signal.
        job.process = subprocess.Popen(self.command(job.run_id, job.num_devices), stdout=job.log_file,
                                       stderr=subprocess.STDOUT, env=worker_env(self.store, gpu_ids),
                                       start_new_session=True)

    def _run_thread_job(self, job: _Job) -> None:
        try:
            # Resolve train_fn inside the call: importing the engine takes 10-30 s on a cold process,
            # and the run should say "running" (not "queued") while it does.
            execute_run(self.store, job.run_id, lambda *args, **kwargs: self.train_fn(*args, **kwargs),
                        job.should_stop, message=f"Training in a thread of pid {os.getpid()}.")
        except BaseException:  # noqa: BLE001 - execute_run records the outcome; never kill the runner
            log.exception("Job %s ended abnormally", job.run_id)
        finally:
            self._job_done(job)

    def _job_done(self, job: _Job) -> None:
        if job.log_file is not None:
            job.log_file.close()
        with self._cond:
            self._running.pop(job.run_id, None)
            self._free_slots |= set(job.slots)
            job.done.set()
            self._cond.notify_all()

    def _watch_processes(self) -> None:
        with self._cond:
            jobs = [job for job in self._running.values() if job.process is not None]
        for job in jobs:
            returncode = job.process.poll()
            if returncode is not None:
                log_path = self.store.run_dir(job.run_id) / "worker.log"
                settle_after_exit(self.store, job.run_id, returncode, job.cancel_at is not None, log_path)
                self._job_done(job)
            else:
                self._escalate(job)

    def _escalate(self, job: _Job) -> None:
        now, grace = time.monotonic(), self.cancel_grace_seconds
        if job.cancel_at is None:
            return
        if job.sigterm_at is None and now - job.cancel_at > grace:
            job.sigterm_at = now
            self._signal_group(job, signal.SIGTERM)
        elif job.sigterm_at is not None and job.sigkill_at is None and now - job.sigterm_at > grace:
            job.sigkill_at = now
            self._signal_group(job, signal.SIGKILL)

    @staticmethod
    def _signal_group(job: _Job, sig: signal.Signals) -> None:
        log.warning("Run %s did not stop in time; sending %s to its process group", job.run_id, sig.name)
        try:
            os.killpg(job.process.pid, sig)
        except ProcessLookupError:
            pass  # already gone

    def _stop_running(self, job: _Job) -> None:
        job.should_stop.set()
        if job.process is not None and job.cancel_at is None:
            job.cancel_at = time.monotonic()
        with self._cond:
            self._cond.notify_all()

    def _take_cancel_requests(self) -> None:
        """Honour cancels asked for by other processes (the CLI, another app server)."""
        for run_id in self.store.cancel_requests(self.queued() + self.running()):
            with self._cond:
                queued = any(job.run_id == run_id for job in self._queue)
                running = self._running.get(run_id)
            if queued:
                self.cancel(run_id)
            elif running is not None and not running.should_stop.is_set():
                self._stop_running(running)
