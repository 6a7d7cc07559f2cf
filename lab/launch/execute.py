"""One job from start to its final status: claim a queued run, train it, record how it ended.

Every way a job can end lands in the store: a result, a user's mistake (LabError), out of memory,
a full disk, Ctrl-C, SIGTERM, any other exception.
"""

from __future__ import annotations

import errno
import gc
import json
import logging
import signal
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Optional

from lab.errors import OUT_OF_MEMORY_ADVICE, LabError, Message, is_out_of_memory, one_line
from lab.events import EventSink
from lab.runs.sink import StoreSink, tee
from lab.runs.store import RunStore

log = logging.getLogger(__name__)

TrainFn = Callable[..., Any]
FINAL_WRITE_ATTEMPTS = 3
EXIT_CODES = {"completed": 0, "failed": 1, "cancelled": 130, "interrupted": 130}


def default_train_fn() -> TrainFn:
    from lab.training.engine import train  # lazily: importing the engine imports torch and transformers

    return train


class Terminated(BaseException):
    """Raised in a worker's main thread by SIGTERM so the run can still record why it ended."""


class RunEndedElsewhere(Exception):
    """How a run trained by another machine (a Ray job) ended, as its worker said or its job's end tells."""

    def __init__(self, status: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.remote_traceback = status, message, remote_traceback


def on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated()


def execute_run(
    store: RunStore,
    run_id: str,
    train_fn: TrainFn,
    should_stop: threading.Event,
    extra_sink: Optional[EventSink] = None,
    message: str = "",
) -> str:
    """Claim a queued run, train it, record the final status; returns that status. Never raises for
    a training error: the error is the run's outcome (KeyboardInterrupt and SIGTERM included). The
    final status is written even when the last events cannot be (a busy or full store)."""
    if not store.mark_running(run_id, message):
        return store.get_run(run_id).status  # cancelled while it waited in the queue
    sink = StoreSink(store, run_id)
    raised: Optional[BaseException] = None
    trace, result = "", None
    try:
        run = store.get_run(run_id)
        config = store.load_config(run_id)
        result = train_fn(
            config,
            store.output_dir(run),
            tee(sink, extra_sink) if extra_sink else sink,
            should_stop=should_stop,
            resume_from_checkpoint=run.resume_from or None,
        )
    except BaseException as exc:  # noqa: BLE001 - every way a job can end must land in the store
        raised, trace = exc, getattr(exc, "remote_traceback", "") or traceback.format_exc()
    finally:
        release_memory()
    try:
        sink.close()  # the last buffered events
    except Exception as exc:  # noqa: BLE001 - the store refused them: that is now the run's outcome
        if raised is None:
            raised, trace = exc, traceback.format_exc()
    status = _settle(store, run_id, raised, trace, result, should_stop)
    if raised is not None and not isinstance(raised, (Exception, KeyboardInterrupt, Terminated)):
        raise raised  # SystemExit and the like still end the process
    return status


def _settle(
    store: RunStore, run_id: str, raised: Optional[BaseException], trace: str, result: Any, should_stop: threading.Event
) -> str:
    """Write the run's final status. If the store refuses that write too, retry a few times with the
    store's own error as the message, so the run does not stay `running` while its owner lives."""
    try:
        if raised is None:
            return _record_result(store, run_id, result)
        cancel_asked = should_stop.is_set() or store.cancel_requested(run_id)
        status, text = describe_failure(raised, run_id, cancel_asked)
        store.finish(run_id, status, text, trace)
        return status
    except Exception as exc:  # noqa: BLE001
        text = f"The run store could not be written: {one_line(exc)}"
        for attempt in range(FINAL_WRITE_ATTEMPTS):
            try:
                store.finish(run_id, "failed", text, traceback.format_exc())
                break
            except Exception:  # noqa: BLE001
                log.warning("Could not record the end of run %s (attempt %d)", run_id, attempt + 1)
                time.sleep(1.0)
        return "failed"


def describe_failure(exc: BaseException, run_id: str, cancel_asked: bool) -> tuple[str, str]:
    """The status and the one-line message a person can act on for an exception that ended a run."""
    if isinstance(exc, RunEndedElsewhere):
        return exc.status, exc.message
    if isinstance(exc, KeyboardInterrupt):
        return "cancelled", Message("Stopped with Ctrl-C.", "ctrl_c")
    if isinstance(exc, Terminated):
        if cancel_asked:
            return "cancelled", Message("Cancelled; the worker stopped on SIGTERM.", "cancelled_sigterm")
        return "interrupted", Message(
            f"The worker was terminated (SIGTERM) before it finished; resume it with python -m lab resume {run_id}.",
            "interrupted_sigterm",
            run=run_id,
        )
    if isinstance(exc, LabError):
        return "failed", exc.message
    if isinstance(exc, sqlite3.Error):
        return "failed", f"The run store could not be written: {one_line(exc)}"
    if is_out_of_memory(exc):
        detail = str(exc).splitlines()[0][:200] if str(exc) else ""
        detail = f" ({detail})" if detail else ""
        return "failed", Message(f"Out of memory: {OUT_OF_MEMORY_ADVICE}.{detail}", "oom", detail=detail)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = f" ({exc.filename})" if exc.filename else ""
        return "failed", Message(
            f"The disk is full{where}: free some space (python -m lab delete removes old runs), "
            f"then resume it with python -m lab resume {run_id}.",
            "disk_full",
            where=where,
            run=run_id,
        )
    return "failed", one_line(f"{type(exc).__name__}: {exc}", limit=2000)


def _record_result(store: RunStore, run_id: str, result: Any) -> str:
    status = getattr(result, "status", "completed")
    status = status if status in ("completed", "cancelled") else "completed"
    summary = {
        key: getattr(result, key, None)
        for key in ("trainable_params", "total_params", "wall_seconds", "peak_memory_mb", "output_dir")
    }
    summary["output_dir"] = str(summary["output_dir"] or "")
    metrics = dict(getattr(result, "metrics", {}) or {})
    per_label = list(getattr(result, "per_label", []) or [])
    _write_report(
        store.output_dir(store.get_run(run_id)) / "report.json", run_id, status, metrics, per_label, summary, result
    )
    seconds = summary["wall_seconds"]
    if status == "cancelled":
        message = Message("Cancelled at the user's request.", "cancelled")
    elif isinstance(seconds, (int, float)):
        message = Message(f"Finished in {seconds:.0f} s.", "finished", seconds=f"{seconds:.0f}")
    else:
        message = Message("Finished.")
    store.finish(run_id, status, message, metrics=metrics, per_label=per_label, summary=summary)
    return status


def _write_report(
    path: Path, run_id: str, status: str, metrics: dict, per_label: list, summary: dict, result: Any
) -> None:
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
