"""What runs inside a Ray job: train one run and report it as lines on standard output.

The run store stays on the lab's host, its one writer, so the job never opens it: the run's events, and
at the end its result or its failure, go out as tagged JSON lines in the job's log, which the host
follows (lab.launch.ray_launcher). Everything else the job prints is its log. The job runs

    python -m lab.launch.ray_worker OUTPUT_DIR [CHECKPOINT]

(through torchrun for several devices) with the run's config in `LAB_RUN_CONFIG` and its id in
`LAB_RUN_ID`, both carried by the job's runtime environment. Ray's `stop_job` sends SIGTERM: the run
stops at its next optimizer step, as a cancel does locally.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import traceback
from dataclasses import asdict
from typing import Any, Optional

from lab.events import Event, ProgressEvent

CONFIG_ENV = "LAB_RUN_CONFIG"
RUN_ID_ENV = "LAB_RUN_ID"
# Tags that start a line the host reads; no library prints a line starting like these.
EVENT_TAG = "@lab-event "
RESULT_TAG = "@lab-result "
FAILURE_TAG = "@lab-failure "


def emit(tag: str, payload: dict[str, Any]) -> None:
    # One write per line, flushed at once: the host follows the log while the run trains.
    sys.stdout.write(tag + json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


class LineSink:
    """The run's events as tagged lines; the per-step progress at most once a second, so that a long run's
    log (kept by Ray and by the host) does not grow with every optimizer step."""

    def __init__(self, progress_every_seconds: float = 1.0) -> None:
        self.progress_every_seconds = progress_every_seconds
        self._last_progress = 0.0

    def __call__(self, event: Event) -> None:
        if isinstance(event, ProgressEvent):
            if event.time - self._last_progress < self.progress_every_seconds:
                return
            self._last_progress = event.time
        emit(EVENT_TAG, event.to_dict())


def parse_line(line: str) -> Optional[tuple[str, dict[str, Any]]]:
    """(tag, payload) for a line the worker emitted, None for any other log line."""
    for tag in (EVENT_TAG, RESULT_TAG, FAILURE_TAG):
        if line.startswith(tag):
            try:
                payload = json.loads(line[len(tag) :])
            except json.JSONDecodeError:
                return None  # a line cut short (the job killed mid-write) is only log
            return (tag, payload) if isinstance(payload, dict) else None
    return None


def main(argv: list[str]) -> int:
    from lab.config import RunConfig
    from lab.events import discard
    from lab.launch.execute import EXIT_CODES, default_train_fn, describe_failure

    output_dir, checkpoint = argv[0], (argv[1] if len(argv) > 1 else None)
    run_id = os.environ.get(RUN_ID_ENV, "?")
    should_stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: should_stop.set())
    first_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun, one rank speaks for the run
    sink = LineSink() if first_rank else discard
    try:
        config = RunConfig.from_dict(json.loads(os.environ[CONFIG_ENV]))
        print(f"Training run {run_id} in process {os.getpid()} on {os.uname().nodename}.", flush=True)
        result = default_train_fn()(
            config, output_dir, sink, should_stop=should_stop, resume_from_checkpoint=checkpoint
        )
    except BaseException as exc:  # noqa: BLE001 - every way the run ends goes back to the host
        status, message = describe_failure(exc, run_id, should_stop.is_set())
        if first_rank:
            emit(FAILURE_TAG, {"status": status, "message": message, "traceback": traceback.format_exc()})
        return EXIT_CODES.get(status, 1)
    if first_rank:
        emit(RESULT_TAG, asdict(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
