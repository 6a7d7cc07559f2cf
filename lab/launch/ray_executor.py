"""The Ray executor: a run trained by a job on a Ray cluster, followed live from the lab's host.

`RayJob` is a train function (see lab.launch.execute) like the engine's, so the job runner and the CLI
drive a cluster run as they drive a local one: `execute_run` claims it, records its events and settles
how it ended. It submits `python -m lab.launch.ray_worker` through Ray's job-submission API (the lab's
code as the job's working directory, the config in its environment, GPUs from `train.num_devices`),
tails the job's log for the events the worker prints, stops the job when the run is cancelled, and
turns the job's end into the run's: the worker's result or failure, or `interrupted` when the job died
without saying (killed, or its node lost) so that a resume can carry on from the last checkpoint.

Artifacts travel by a shared filesystem: the job writes the model, checkpoints and report into the
run's folder at the same absolute path, so the runs folder must be on storage every node mounts there
(one machine, NFS, a cloud file share). The run fails with that advice when the report is missing.
"""

from __future__ import annotations

import json
import logging
import os
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
from lab.launch.ray_worker import CONFIG_ENV, EVENT_TAG, FAILURE_TAG, RESULT_TAG, RUN_ID_ENV, parse_line
from lab.launch.worker import last_log_line, launcher

log = logging.getLogger(__name__)

ADDRESS_ENV = "RAY_ADDRESS"
JOB_FILE = "ray_job.json"  # in the run's folder: which Ray job trains it now (a resume stops a stale one)
LAB_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the lab package: the job's working dir
# Left out of the working directory Ray uploads: history, runs, caches and what the job does not import.
# (gitignore patterns: a leading / anchors one at the lab's folder, so lab/runs stays.)
UPLOAD_EXCLUDES = ["/runs", "/mlruns", "/tests", "/docs", "/.ci", "__pycache__", "*.db", "*.log"]
FINAL_STATES = {"SUCCEEDED", "FAILED", "STOPPED"}
LOST_CONTACT_SECONDS = 60  # how long the cluster may not answer before the run counts as interrupted
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
        raise LabError("The ray executor needs the ray package: pip install -r requirements.txt.") from None
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
    """The job's command: the Ray worker, through torchrun for several devices."""
    # Absolute paths: the job runs in Ray's copy of the lab's folder, not where the lab runs.
    module = ["-m", "lab.launch.ray_worker", str(output_dir)] + (
        [str(Path(checkpoint).resolve())] if checkpoint else []
    )
    # `python` as the node's environment finds it: this machine's interpreter path may not exist there.
    return shlex.join(launcher("python", config.train.num_devices) + module)


def gpus_wanted(config: RunConfig) -> int:
    # Ray holds a job with GPUs until a node has them free; a run only asks when it says it trains on CUDA.
    return config.train.num_devices if config.train.device == "cuda" else 0


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
                entrypoint_num_cpus=1,
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


class _Follower:
    """Reads a job's log as it grows, passes the worker's events on, and keeps the rest as the run's log."""

    def __init__(self, client: Any, job_id: str, sink: EventSink, log_path: Path, poll_seconds: float) -> None:
        self.client, self.job_id, self.sink, self.poll_seconds = client, job_id, sink, poll_seconds
        self.log_path = log_path
        self.read_upto = 0  # characters of the log already handled (whole lines only)
        self.result: Optional[dict[str, Any]] = None
        self.failure: Optional[dict[str, Any]] = None
        self.stop_sent = False

    def follow(self, should_stop: threading.Event, run_id: str, output_dir: Path) -> RunResult:
        with open(self.log_path, "a", encoding="utf-8") as self.log_file:
            lost_since: Optional[float] = None
            while True:
                try:
                    if should_stop.is_set() and not self.stop_sent:
                        self.stop_sent = _stop_quietly(self.client, self.job_id)
                    status = str(self.client.get_job_status(self.job_id).value)
                    self._read_new_lines(final=status in FINAL_STATES)
                    lost_since = None
                except Exception as exc:  # noqa: BLE001 - the dashboard restarts, the network blips
                    lost_since = lost_since or time.monotonic()
                    if time.monotonic() - lost_since > LOST_CONTACT_SECONDS:
                        raise RunEndedElsewhere(
                            "interrupted",
                            (
                                f"Lost the Ray cluster for {LOST_CONTACT_SECONDS} s ({one_line(exc, limit=200)}); "
                                f"its job "
                                f"{self.job_id} may still be training. Resume with python -m lab resume {run_id}: "
                                f"the resume stops that job first."
                            ),
                        ) from None
                    status = ""
                if status in FINAL_STATES:
                    break
                if self.stop_sent:
                    time.sleep(self.poll_seconds)
                else:
                    should_stop.wait(self.poll_seconds)
        return self._outcome(should_stop.is_set(), run_id, output_dir)

    def _read_new_lines(self, final: bool = False) -> None:
        text = self.client.get_job_logs(self.job_id)
        end = len(text) if final else text.rfind("\n", self.read_upto) + 1
        if end <= self.read_upto:
            return
        for line in text[self.read_upto : end].splitlines():
            self._handle(line)
        self.read_upto = end
        self.log_file.flush()

    def _handle(self, line: str) -> None:
        parsed = parse_line(line)
        if parsed is None:
            self.log_file.write(line + "\n")
            return
        tag, payload = parsed
        if tag == RESULT_TAG:
            self.result = payload
        elif tag == FAILURE_TAG:
            self.failure = payload
        elif tag == EVENT_TAG:
            self.sink(event_from_dict(payload))

    def _outcome(self, cancel_asked: bool, run_id: str, output_dir: Path) -> RunResult:
        if self.result is not None:
            result = RunResult(**self.result)
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
