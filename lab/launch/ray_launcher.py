"""The Ray launcher: a run trained by a job on a Ray cluster, followed live from the lab's host.

`RayJob` is a train function (see lab.launch.execute) like the engine's, so the job runner and the CLI
drive a cluster run as they drive a local one: `execute_run` claims it, records its events and settles
how it ended. It submits `python -m lab.launch.ray_worker` through Ray's job-submission API (the lab's
code as the job's working directory, the config in its environment, GPUs from `train.num_devices`),
follows the job's log as it grows (Ray's log-tail stream: each line arrives once) for the events the
worker prints, stops the job when the run is cancelled, and turns the job's end into the run's: the
worker's result or failure, or `interrupted` when the job died without saying (killed, or its node
lost) so that a resume can carry on from the last checkpoint.

Artifacts travel by a shared filesystem: the job writes the model, checkpoints and report into the
run's folder at the same absolute path, so the runs folder must be on storage every node mounts there
(one machine, NFS, a cloud file share). The run fails with that advice when the report is missing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import shlex
import signal
import threading
import time
from pathlib import Path
from typing import Any, Optional

from lab.config import RunConfig
from lab.errors import LabError, one_line
from lab.events import EventSink, LogEvent, RunResult, event_from_dict
from lab.launch.execute import RunEndedElsewhere
from lab.launch.processes import cap_log, last_log_line, torchrun_prefix
from lab.launch.ray_worker import CONFIG_ENV, EVENT_TAG, FAILURE_TAG, RESULT_TAG, RUN_ID_ENV, parse_line

log = logging.getLogger(__name__)

ADDRESS_ENV = "RAY_ADDRESS"
JOB_FILE = "ray_job.json"  # in the run's folder: which Ray job trains it now (a resume stops a stale one)
LAB_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the lab package: the job's working dir
# Left out of the working directory Ray uploads: history, runs, caches and what the job does not import.
# (gitignore patterns: a leading / anchors one at the lab's folder, so lab/runs stays.)
UPLOAD_EXCLUDES = ["/runs", "/mlruns", "/tests", "/docs", "/.ci", "__pycache__", "*.db", "*.log"]
FINAL_STATES = {"SUCCEEDED", "FAILED", "STOPPED"}
LOST_CONTACT_SECONDS = 60  # how long the cluster may not answer before the run counts as interrupted
LAST_LINES_SECONDS = 10  # how long the log's last lines may take to arrive after the job ended
PREVIOUS_JOB_STOP_SECONDS = 30  # how long a resume waits for an earlier attempt's job to stop


def resolve_address(config: RunConfig) -> str:
    address = config.train.ray_address.strip() or os.environ.get(ADDRESS_ENV, "").strip()
    if not address:
        raise LabError(
            "train.executor is ray but no cluster is named: set train.ray_address (like "
            "http://HOST:8265, the cluster's job-submission address) or RAY_ADDRESS."
        )
    return address


def connect(address: str):
    """A JobSubmissionClient for `address`, or a LabError that says what to check."""
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError:
        raise LabError("The ray launcher needs the ray package: pip install -r requirements.txt.") from None
    # Ray's SDK logs each packaging step at INFO on the terminal; the lab says what matters itself.
    logging.getLogger("ray").setLevel(logging.WARNING)
    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # noqa: BLE001 - connection refused, bad URL, version mismatch
        raise LabError(
            f"Could not reach the Ray cluster at {address}: {one_line(exc, limit=300)}. Check that it "
            f"runs (ray status) and that this is its dashboard address (port 8265 by default)."
        ) from None


def entrypoint(config: RunConfig, output_dir: Path, checkpoint: Optional[str]) -> str:
    """The job's command: the Ray worker, through torchrun for several devices, or with several Ray Train
    workers the driver that starts them (lab.launch.ray_train)."""
    # Absolute paths: the job runs in Ray's copy of the lab's folder, not where the lab runs.
    arguments = [str(output_dir)] + ([str(Path(checkpoint).resolve())] if checkpoint else [])
    # `python` as the node's environment finds it: this machine's interpreter path may not exist there.
    if config.train.num_workers > 1:
        return shlex.join(["python", "-m", "lab.launch.ray_train", *arguments])
    return shlex.join(torchrun_prefix("python", config.train.num_devices) + ["-m", "lab.launch.ray_worker", *arguments])


def gpus_wanted(config: RunConfig) -> int:
    # Ray holds a job with GPUs until a node has them free; a run only asks when it says it trains on CUDA.
    # Ray Train's driver asks for none: its workers ask for their own.
    return config.train.num_devices if config.train.device == "cuda" and config.train.num_workers == 1 else 0


class RayJob:
    """Train run `run_id` as a Ray job: callable like the engine's `train` (see lab.launch.execute)."""

    def __init__(self, run_id: str, log_path: Path, poll_seconds: float = 1.0) -> None:
        self.run_id, self.log_path, self.poll_seconds = run_id, log_path, poll_seconds

    def __call__(
        self,
        config: RunConfig,
        output_dir: str | Path,
        sink: EventSink,
        should_stop: Optional[threading.Event] = None,
        resume_from_checkpoint: Optional[str] = None,
    ) -> RunResult:
        should_stop = should_stop or threading.Event()
        output_dir = Path(output_dir).resolve()
        address = resolve_address(config)
        client = connect(address)
        _stop_previous_job(client, output_dir)
        try:
            job_id = client.submit_job(
                entrypoint=entrypoint(config, output_dir, resume_from_checkpoint),
                runtime_env={
                    "working_dir": str(LAB_ROOT),
                    "excludes": UPLOAD_EXCLUDES,
                    "env_vars": {
                        CONFIG_ENV: json.dumps(config.to_dict()),
                        RUN_ID_ENV: self.run_id,
                        "PYTHONUNBUFFERED": "1",
                    },
                },
                # Ray Train's driver only waits for its workers, each of which asks Ray for its own CPU or GPU.
                entrypoint_num_cpus=0 if config.train.num_workers > 1 else 1,
                entrypoint_num_gpus=gpus_wanted(config),
                metadata={"lab_run_id": self.run_id, "name": config.name or self.run_id},
            )
        except Exception as exc:  # noqa: BLE001
            raise LabError(f"The Ray cluster at {address} refused the job: {one_line(exc, limit=300)}") from None
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / JOB_FILE).write_text(json.dumps({"address": address, "job_id": job_id}))
        sink(LogEvent(message=f"Submitted as Ray job {job_id} to {address}; its log is in {self.log_path}."))
        try:
            return _Follower(client, job_id, sink, self.log_path, self.poll_seconds).follow(
                should_stop, self.run_id, output_dir
            )
        except RunEndedElsewhere:
            raise  # the job's end, already known (or a lost cluster, whose job a resume stops)
        except BaseException:
            # Ctrl-C, SIGTERM, a crash of this side: the job must not train on with nobody listening.
            _stop_quietly(client, job_id)
            raise


class _LogTail:
    """The job's log as it grows, read from Ray's log-tail stream in a thread of its own. The stream starts
    at the log's beginning, so a tail opened again after a dropped connection skips the `skip` characters
    already taken."""

    def __init__(self, client: Any, job_id: str, skip: int = 0) -> None:
        self.client, self.job_id, self.skip = client, job_id, skip
        self.chunks: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.ended = threading.Event()  # the stream closed: the job's log is complete, or the connection dropped
        self.failed = False
        threading.Thread(target=self._run, name=f"lab-ray-log-{job_id}", daemon=True).start()

    def _run(self) -> None:
        try:
            asyncio.run(self._tail())
        except Exception:  # noqa: BLE001 - a dropped connection: the follower opens another tail
            self.failed = True
            log.debug("The log tail of Ray job %s dropped", self.job_id, exc_info=True)
        finally:
            self.ended.set()

    async def _tail(self) -> None:
        skip = self.skip
        async for chunk in self.client.tail_job_logs(self.job_id):
            if skip:
                chunk, skip = chunk[skip:], max(0, skip - len(chunk))
            if chunk:
                self.chunks.put(chunk)

    def drain(self) -> str:
        taken = []
        while True:
            try:
                taken.append(self.chunks.get_nowait())
            except queue.Empty:
                return "".join(taken)


class _Follower:
    """Follows a job's log as it grows, passes the worker's events on, and keeps the rest as the run's log."""

    def __init__(self, client: Any, job_id: str, sink: EventSink, log_path: Path, poll_seconds: float) -> None:
        self.client, self.job_id, self.sink, self.poll_seconds = client, job_id, sink, poll_seconds
        self.log_path = log_path
        self.received = 0  # characters of the job's log taken so far
        self.partial = ""  # the start of a line whose end has not arrived yet
        self.result: Optional[dict[str, Any]] = None
        self.failure: Optional[dict[str, Any]] = None
        self.stop_sent = False

    def follow(self, should_stop: threading.Event, run_id: str, output_dir: Path) -> RunResult:
        with open(self.log_path, "a", encoding="utf-8") as self.log_file:
            tail = _LogTail(self.client, self.job_id)
            lost_since: Optional[float] = None
            while True:
                try:
                    if should_stop.is_set() and not self.stop_sent:
                        self.stop_sent = _stop_quietly(self.client, self.job_id)
                    status = str(self.client.get_job_status(self.job_id).value)
                    lost_since = None
                except Exception as exc:  # noqa: BLE001 - the dashboard restarts, the network blips
                    lost_since = lost_since or time.monotonic()
                    if time.monotonic() - lost_since > LOST_CONTACT_SECONDS:
                        raise RunEndedElsewhere(
                            "interrupted",
                            (
                                f"Lost the Ray cluster for {LOST_CONTACT_SECONDS} s ({one_line(exc, limit=200)}); "
                                f"its job {self.job_id} may still be training. Resume with python -m lab resume "
                                f"{run_id}: the resume stops that job first."
                            ),
                        ) from None
                    status = ""
                self._take(tail.drain())
                if status in FINAL_STATES:
                    break
                if tail.ended.is_set() and status:
                    tail = _LogTail(self.client, self.job_id, skip=self.received)
                if self.stop_sent:
                    time.sleep(self.poll_seconds)
                else:
                    should_stop.wait(self.poll_seconds)
            self._take_last_lines(tail)
        return self._outcome(should_stop.is_set(), run_id, output_dir)

    def _take_last_lines(self, tail: _LogTail) -> None:
        # The stream closes once the ended job's log is read to its end; a stream that dropped instead
        # gives way to one read of the whole log.
        tail.ended.wait(LAST_LINES_SECONDS)
        self._take(tail.drain())
        if tail.failed or not tail.ended.is_set():
            try:
                self._take(self.client.get_job_logs(self.job_id)[self.received :])
            except Exception:  # noqa: BLE001 - the cluster went away: the lines so far are what there is
                log.warning("Could not read the end of Ray job %s's log", self.job_id, exc_info=True)
        if self.partial:
            self._handle(self.partial)
            self.partial = ""
        self.log_file.flush()

    def _take(self, text: str) -> None:
        if not text:
            return
        self.received += len(text)
        *lines, self.partial = (self.partial + text).split("\n")
        for line in lines:
            self._handle(line)
        self.log_file.flush()
        cap_log(self.log_path)

    def _handle(self, line: str) -> None:
        parsed = parse_line(line)
        if parsed is not None:
            tag, payload = parsed
            if tag == RESULT_TAG:
                self.result = payload
                return
            if tag == FAILURE_TAG and {"status", "message"} <= payload.keys():
                self.failure = payload
                return
            if tag == EVENT_TAG:
                try:
                    self.sink(event_from_dict(payload))
                    return
                except (KeyError, TypeError, ValueError):
                    pass  # JSON that is no event the lab knows: only log
        self.log_file.write(line + "\n")

    def _outcome(self, cancel_asked: bool, run_id: str, output_dir: Path) -> RunResult:
        if self.result is not None:
            try:
                result = RunResult(**self.result)
            except TypeError:
                raise RunEndedElsewhere(
                    "failed",
                    f"Ray job {self.job_id} reported a result this lab cannot read: is the cluster's lab "
                    f"the same version as this one? Its log is in {self.log_path}.",
                ) from None
            if result.status == "completed" and not (output_dir / "report.json").is_file():
                raise LabError(
                    f"Ray job {self.job_id} finished, but its report is not in {output_dir} on this "
                    f"machine: the cluster must share the runs folder at the same path "
                    f"(README, 'Run on a cluster')."
                )
            return result
        if self.failure is not None:
            raise RunEndedElsewhere(self.failure["status"], self.failure["message"], self.failure.get("traceback", ""))
        if cancel_asked:
            raise RunEndedElsewhere("cancelled", f"Cancelled; Ray job {self.job_id} was stopped.")
        info = self.client.get_job_info(self.job_id)
        code = info.driver_exit_code
        said = (info.message or "no reason given").splitlines()[0].split(", last available logs")[0]
        if code is not None and code > 128 and code - 128 in signal.valid_signals():
            said += f": {signal.Signals(code - 128).name}"  # a shell reports a signal's death as 128 + its number
        if code is not None and 0 < code <= 128:  # the worker exited on its own without a word: not resumable
            last = last_log_line(self.log_path)
            raise RunEndedElsewhere(
                "failed",
                f"Ray job {self.job_id} exited with code {code} before the lab's worker "
                f"could report (is the lab installed on the cluster's nodes?)"
                f"{': ' + last if last else ''}. Its log is in {self.log_path}.",
            )
        raise RunEndedElsewhere(
            "interrupted",
            f"Ray job {self.job_id} ended before the run finished ({said}); "
            f"resume it with python -m lab resume {run_id}.",
        )


def _stop_previous_job(client: Any, output_dir: Path) -> None:
    """A job an earlier attempt submitted may still train (its host died, not the job): stop it first, so
    two jobs never write one folder."""
    try:
        previous = json.loads((output_dir / JOB_FILE).read_text())["job_id"]
    except (OSError, ValueError, KeyError):
        return
    try:
        if str(client.get_job_status(previous).value) in FINAL_STATES:
            return
    except Exception:  # noqa: BLE001 - the cluster no longer knows it (restarted): nothing to stop
        return
    log.warning("Ray job %s of an earlier attempt is still running; stopping it", previous)
    _stop_quietly(client, previous)
    deadline = time.monotonic() + PREVIOUS_JOB_STOP_SECONDS
    while time.monotonic() < deadline:
        try:
            if str(client.get_job_status(previous).value) in FINAL_STATES:
                return
        except Exception:  # noqa: BLE001 - the cluster went away meanwhile: the submit says so plainly
            return
        time.sleep(0.5)
    raise LabError(
        f"Ray job {previous} of an earlier attempt of this run did not stop within "
        f"{PREVIOUS_JOB_STOP_SECONDS} s, and two jobs must not write one run folder; stop it with "
        f"`ray job stop {previous}`, then resume."
    )


def _stop_quietly(client: Any, job_id: str) -> bool:
    try:
        client.stop_job(job_id)
        return True
    except Exception:  # noqa: BLE001 - ended already, or the cluster is gone
        log.warning("Could not stop Ray job %s", job_id, exc_info=True)
        return False
