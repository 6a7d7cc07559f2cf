"""The job runner: runs stored jobs in the background, one per device at a time, the rest queued.

Where each job trains is its launcher (lab.launch.launchers.choose_launcher):

- `thread`: `train()` in a background thread of this process (the app's default). Cancel sets the
  `should_stop` event the engine checks at every optimizer step and between tokenisation batches.
- `process` and `torchrun`: `python -m lab train --run-id ID` (through torchrun when the config asks for
  more than one device), in its own process group, for crash isolation and multi-GPU. Cancel raises a
  flag in the store that the worker polls; if the worker has not stopped after a grace period it gets
  SIGTERM, then SIGKILL of its whole process group. Its output goes to the run's capped `worker.log`.
- `ray`: a job on a Ray cluster (config `train.executor: ray`), followed from a thread of this process
  (lab.launch.ray_launcher). It takes no local device; the cluster schedules it. Cancel stops the job.

Slots (lab.launch.slots): one per GPU, the CPU counting as one, or `parallel` of them when asked (a
comparison's or a sweep's --parallel N); with more than one slot a one-device run trains in a worker
process of its own, so runs side by side train as each would alone. With `parallel`, Ray jobs count too.

The queue holds at most `max_queued` waiting jobs (LAB_QUEUE_LIMIT, default 50): a submit beyond that is
refused with a LabError before any run is recorded. Jobs start round-robin across the people who own
them, within each person's quotas (lab.launch.fairness); with one person, first in, first out.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
import traceback
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import IO, Optional

from lab.config import RunConfig
from lab.errors import ConfigError, LabError
from lab.launch.execute import TrainFn, default_train_fn, execute_run
from lab.launch.fairness import Quotas, next_in_line, refuse_over_quota
from lab.launch.launchers import LOCAL_LAUNCHERS, Launcher, choose_launcher, train_in_this_process
from lab.launch.processes import WorkerCommand, cap_log, worker_command, worker_env, worker_log
from lab.launch.slots import (
    check_devices_here,
    cpu_threads_per_slot,
    device_slots,
    gpus_for,
    pick_slots,
    visible_gpus,
)
from lab.launch.worker import cancel_run, settle_after_exit
from lab.runs.owner import HEARTBEAT_SECONDS
from lab.runs.resume import prepare_resume
from lab.runs.store import RunStore
from lab.training.openmp import release_openmp_team

log = logging.getLogger(__name__)

QUEUE_LIMIT_ENV = "LAB_QUEUE_LIMIT"
DEFAULT_QUEUE_LIMIT = 50  # a class's worth of runs; each waits for the one before it on the device


@dataclass
class _Job:
    run_id: str
    launcher: Launcher
    num_devices: int
    owner: str = ""  # the account the run belongs to: the queue takes turns between them
    first: bool = False  # a teacher's run: may go first, counts against no quota
    devices: list[str] = field(default_factory=list)  # train.devices: the GPUs it may take (empty: any)
    should_stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    slots: list[int] = field(default_factory=list)
    process: Optional[subprocess.Popen] = None
    log_file: Optional[IO[bytes]] = None
    cancel_at: Optional[float] = None  # monotonic times of the cancel escalation steps
    sigterm_at: Optional[float] = None
    sigkill_at: Optional[float] = None


def queue_limit() -> int:
    """How many jobs may wait in a runner's queue: LAB_QUEUE_LIMIT, or DEFAULT_QUEUE_LIMIT."""
    text = os.environ.get(QUEUE_LIMIT_ENV, "").strip()
    if not text:
        return DEFAULT_QUEUE_LIMIT
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if limit < 1:
        raise ConfigError(f"{QUEUE_LIMIT_ENV} must be a whole number of at least 1, got {text!r}.")
    return limit


class JobRunner:
    """Runs stored jobs in the background, one per device at a time, the others in turn: round-robin
    across their owners, first in, first out for each.

    Keep one per process (the app holds it in st.cache_resource). A thread job always takes device
    slot 0 (the device the engine picks in this process); a process or torchrun job takes
    `num_devices` free slots (among its train.devices) and sees only those GPUs; a Ray job takes none,
    or one of the `parallel` slots when the runner was asked for that many runs at once.
    """

    def __init__(
        self,
        store: RunStore,
        train_fn: Optional[TrainFn] = None,
        gpu_ids: Optional[list[str]] = None,
        command: WorkerCommand = worker_command,
        cancel_grace_seconds: float = 10.0,
        poll_seconds: float = 0.25,
        max_queued: Optional[int] = None,
        quotas: Optional[Quotas] = None,
        parallel: Optional[int] = None,
    ) -> None:
        self.store = store
        self.max_queued = queue_limit() if max_queued is None else max_queued
        self.quotas = Quotas.from_env() if quotas is None else quotas
        self._last_served: dict[str, int] = {}  # owner -> the count of starts when their last job started
        self._starts = 0
        self._train_fn = train_fn
        self.gpu_ids = visible_gpus() if gpu_ids is None else gpu_ids
        self.command = command
        self.cancel_grace_seconds = cancel_grace_seconds
        self.poll_seconds = poll_seconds
        if parallel is not None and parallel < 1:
            raise LabError(f"Runs at once (--parallel) must be at least 1, got {parallel}.")
        # `parallel` slots (GPUs shared round-robin, or the CPU split), else one per GPU; see lab.launch.slots.
        self.parallel = parallel
        self._slot_count = parallel or device_slots(self.gpu_ids)
        self._free_slots = set(range(self._slot_count))
        self._queue: deque[_Job] = deque()
        self._running: dict[str, _Job] = {}
        self._jobs: dict[str, _Job] = {}
        self._cond = threading.Condition()
        self._admission = threading.Lock()  # one submit at a time checks the bound, records and enqueues
        self._closing = threading.Event()
        self._loop_thread = threading.Thread(target=self._loop, name="lab-job-runner", daemon=True)
        self._loop_thread.start()

    @property
    def slot_count(self) -> int:
        """How many runs this runner trains at once here (its device slots)."""
        return self._slot_count

    @property
    def train_fn(self) -> TrainFn:
        if self._train_fn is None:
            self._train_fn = default_train_fn()
        return self._train_fn

    # -- public --
    def submit(
        self, config: RunConfig, local: str = "thread", group: str = "", owner: str = "", first: bool = False
    ) -> str:
        """Create the run (queued, in `group` when given, belonging to `owner`) and schedule it; returns its
        id. `local` is how a one-device run trains on this machine: `thread` or `process` (see
        choose_launcher). `first`: a teacher's run, ahead of the students' and within no quota."""
        config.validate()
        launcher = choose_launcher(config, local, self._slot_count)
        check_devices_here(config, self.gpu_ids)
        with self._admission:
            self._refuse_when_full()
            self._refuse_over_quota(owner, first)
            run = self.store.create_run(config, executor=launcher, group=group, owner=owner)
            devices = config.train.devices
            self._enqueue(_Job(run.id, launcher, config.train.num_devices, owner=owner, first=first, devices=devices))
        return run.id

    def resume(self, run_id: str, local: Optional[str] = None, first: bool = False) -> str:
        """Queue an ended run again; it continues from its last checkpoint (see prepare_resume). A local
        run trains where it trained before unless `local` says otherwise; `first`: as in `submit`."""
        run = self.store.get_run(run_id)
        local = local or (run.executor if run.executor in LOCAL_LAUNCHERS else "thread")
        config = self.store.load_config(run_id)
        launcher = choose_launcher(config, local, self._slot_count)
        with self._admission:
            with self._cond:
                if run_id in self._running or any(job.run_id == run_id for job in self._queue):
                    raise LabError(f"Run {run_id} is already queued or running here.")
            self._refuse_when_full()
            self._refuse_over_quota(run.owner, first=first)
            prepare_resume(self.store, run_id)
            devices = config.train.devices
            job = _Job(run_id, launcher, config.train.num_devices, owner=run.owner, first=first, devices=devices)
            self._enqueue(job)
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
    def _refuse_when_full(self) -> None:
        with self._cond:
            waiting = len(self._queue)
        if waiting >= self.max_queued:
            raise LabError(
                f"The queue is full: {waiting} runs are waiting. Cancel a queued run or wait for one to start, "
                f"then submit again (the limit is {QUEUE_LIMIT_ENV}, now {self.max_queued}).",
                code="queue_full",
                waiting=waiting,
                setting=QUEUE_LIMIT_ENV,
                limit=self.max_queued,
            )

    def _refuse_over_quota(self, owner: str, first: bool) -> None:
        if first:
            return
        with self._cond:
            waiting = sum(job.owner == owner for job in self._queue)
        refuse_over_quota(self.store, owner, waiting, self.quotas)

    def _enqueue(self, job: _Job) -> None:
        if job.launcher == "thread":
            # This caller's idle OpenMP team would slow the job's thread down (see lab.training.openmp).
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
        if job.launcher == "ray":
            # The cluster places it; a runner asked for `parallel` runs at once counts it as one of them.
            return [] if self.parallel is None else pick_slots(self._free_slots, 1, [])
        if job.launcher == "thread":
            return [0] if 0 in self._free_slots else None
        # On CPU, torchrun's processes share the slots there are; on GPUs each process needs its own.
        wanted = min(job.num_devices, self._slot_count, len(self.gpu_ids) or self._slot_count)
        return pick_slots(self._free_slots, wanted, self.gpu_ids, job.devices)

    def _start_ready_jobs(self) -> None:
        ready = []
        with self._cond:
            while self._queue:  # strictly in turn: a job that does not fit yet holds the ones behind it
                running = Counter(job.owner for job in self._running.values())
                turn = next_in_line(self._queue, running, self._last_served, self.quotas)
                slots = None if turn is None else self._take_slots(self._queue[turn])
                if turn is None or slots is None:
                    break
                job = self._queue[turn]
                del self._queue[turn]
                self._starts += 1
                self._last_served[job.owner] = self._starts
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
        if job.launcher in ("thread", "ray"):
            threading.Thread(
                target=self._run_thread_job, args=(job,), name=f"lab-job-{job.run_id}", daemon=True
            ).start()
            return
        gpu_ids = gpus_for(job.slots, self.gpu_ids)
        job.log_file = open(worker_log(self.store, job.run_id), "ab")  # noqa: SIM115 (closed when the job ends)
        # A new session makes the worker (and torchrun's children) one process group we can signal.
        job.process = subprocess.Popen(
            self.command(job.run_id, job.num_devices),
            stdout=job.log_file,
            stderr=subprocess.STDOUT,
            env=worker_env(self.store, gpu_ids, cpu_threads_per_slot(self._slot_count, self.gpu_ids)),
            start_new_session=True,
        )

    def _run_thread_job(self, job: _Job) -> None:
        try:
            # Resolve the engine inside the call: importing it takes 10-30 s on a cold process, and the
            # run should say "running" (not "queued") while it does.
            engine: TrainFn = lambda *args, **kwargs: self.train_fn(*args, **kwargs)  # noqa: E731
            train_fn = train_in_this_process(job.launcher, self.store, job.run_id, engine)
            message = (
                "Submitting to the Ray cluster."
                if job.launcher == "ray"
                else f"Training in a thread of pid {os.getpid()}."
            )
            execute_run(self.store, job.run_id, train_fn, job.should_stop, message=message)
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
            assert job.process is not None
            returncode = job.process.poll()
            log_path = worker_log(self.store, job.run_id)
            if returncode is not None:
                settle_after_exit(self.store, job.run_id, returncode, job.cancel_at is not None, log_path)
                self._job_done(job)
            else:
                cap_log(log_path)
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
            if job.process is not None:
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
