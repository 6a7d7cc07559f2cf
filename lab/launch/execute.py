"""One job from start to its final status: claim a queued run, train it, record how it ended.

Every way a job can end lands in the store: a result, a user's mistake (LabError), out of memory,
a full disk, Ctrl-C, SIGTERM, any other exception.
"""

from __future__ import annotations

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
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, Optional

from lab.errors import OUT_OF_MEMORY_ADVICE, LabError, Message, is_out_of_memory, one_line
from lab.events import EventSink
from lab.runs.connection import is_disk_full
from lab.runs.sink import StoreSink, tee
from lab.runs.store import RunStore
from lab.training.estimate import format_duration

log = logging.getLogger(__name__)

TrainFn = Callable[..., Any]
FINAL_WRITE_ATTEMPTS = 3  # for a store error other than a full disk
# A full disk is waited out: the outcome stays in memory and is written as soon as space is freed.
FINAL_WRITE_RETRY_SECONDS = 2.0
FINAL_WRITE_PATIENCE_SECONDS = 24 * 3600.0
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


@dataclass
class Outcome:
    """How a run ended, held in memory until the store has taken it."""

    status: str
    message: str
    traceback: str = ""
    metrics: Optional[dict[str, Any]] = None
    per_label: Optional[list[dict[str, Any]]] = None
    summary: Optional[dict[str, Any]] = None


def _settle(
    store: RunStore, run_id: str, raised: Optional[BaseException], trace: str, result: Any, should_stop: threading.Event
) -> str:
    """Work out how the run ended, then record it (`record_outcome`); returns its status."""
    outcome = None
    if raised is None:
        try:
            outcome = _completed_outcome(store, run_id, result)
        except Exception as exc:  # noqa: BLE001 - report.json could not be written (a full disk)
            raised, trace = exc, traceback.format_exc()
    if outcome is None:
        assert raised is not None
        status, text = describe_failure(raised, run_id, should_stop.is_set() or _cancel_asked(store, run_id))
        outcome = Outcome(status, text, trace)
    record_outcome(store, run_id, outcome)
    return outcome.status


def _cancel_asked(store: RunStore, run_id: str) -> bool:
    try:
        return store.cancel_requested(run_id)
    except LabError:
        return False  # the store cannot be read: nobody's request can be seen either


def record_outcome(store: RunStore, run_id: str, outcome: Outcome) -> bool:
    """Write a run's final status. On a full disk, keep the outcome in memory and retry every few seconds
    until space is freed (so the run never reads `interrupted` with a false cause); any other store error
    is retried a few times, then recorded as the store's own error. False when nothing could be written."""
    deadline = time.monotonic() + FINAL_WRITE_PATIENCE_SECONDS
    failures, waiting_said = 0, False
    while True:
        try:
            store.finish(
                run_id,
                outcome.status,
                outcome.message,
                outcome.traceback,
                metrics=outcome.metrics,
                per_label=outcome.per_label,
                summary=outcome.summary,
            )
            if waiting_said:
                log.warning("Recorded the end of run %s (%s) now that there is space.", run_id, outcome.status)
            return True
        except Exception as exc:  # noqa: BLE001 - the store refused the final status
            failures += 1
            full = is_disk_full(exc)
            if time.monotonic() > deadline or (not full and failures >= FINAL_WRITE_ATTEMPTS):
                return _record_store_error(store, run_id, exc)
            if full and not waiting_said:
                log.warning(
                    "The disk is full: run %s %s, which is recorded as soon as space is freed "
                    "(python -m lab delete RUN removes an old run; Ctrl-C gives up).",
                    run_id,
                    outcome.status,
                )
                waiting_said = True
            time.sleep(FINAL_WRITE_RETRY_SECONDS)


def _record_store_error(store: RunStore, run_id: str, error: Exception) -> bool:
    # The outcome itself could not be stored (not even its metrics): say why, so the run does not stay
    # `running` while its owner lives.
    text = f"The run store could not be written: {one_line(error)}"
    for attempt in range(FINAL_WRITE_ATTEMPTS):
        try:
            store.finish(run_id, "failed", text, traceback.format_exc())
            return True
        except Exception:  # noqa: BLE001
            log.warning("Could not record the end of run %s (attempt %d)", run_id, attempt + 1)
            time.sleep(1.0)
    return False


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
    if is_disk_full(exc):  # the OS's ENOSPC, SQLite's SQLITE_FULL, or a library's wrapped "os error 28"
        filename = getattr(exc, "filename", None)
        where = f" ({filename})" if filename else ""
        return "failed", Message(
            f"The disk is full{where}: free some space (python -m lab delete removes old runs), "
            f"then resume it with python -m lab resume {run_id}.",
            "disk_full",
            where=where,
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
    return "failed", one_line(f"{type(exc).__name__}: {exc}", limit=2000)


def _completed_outcome(store: RunStore, run_id: str, result: Any) -> Outcome:
    """The outcome of a run whose training returned; writes report.json beside its model."""
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
        took = format_duration(seconds)
        message = Message(f"Finished in {took}.", "finished", duration=took)
    else:
        message = Message("Finished.")
    return Outcome(status, message, metrics=metrics, per_label=per_label, summary=summary)


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
