"""The run store's faults, as rows of `python -m bench.reliability`: a read-only, locked, damaged or full
store, owners another reader cannot look at (bench/owner_faults.py), a run whose folder was deleted,
escape codes in names, and a long run's events.

Each scenario builds its own store in `work`, injects one fault, and judges what a user would see; the
tests (tests/test_faults.py) run the same functions. The real full disk (a 3 MB tmpfs), the read-only
mount and the other PID namespace need root (mount, unshare): without it the full disk is injected at
the store's write, the read-only folder is a chmod, and the namespace is named in the owner's identity.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import io
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.owner_faults import OWNER_SCENARIOS
from bench.rows import Row
from lab.errors import one_line

REPO = Path(__file__).resolve().parents[1]


class Skipped(Exception):
    """The machine cannot stage this fault (no root for a mount, no unshare)."""


def lab_cli(runs_dir: Path, *argv: str) -> tuple[int, str, str]:
    """`python -m lab ARGV` in this process, on `runs_dir`: (exit code, stdout, stderr)."""
    from lab.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    previous = os.environ.get("LAB_RUNS_DIR")
    os.environ["LAB_RUNS_DIR"] = str(runs_dir)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    finally:
        if previous is None:
            os.environ.pop("LAB_RUNS_DIR", None)
        else:
            os.environ["LAB_RUNS_DIR"] = previous
    return code, out.getvalue(), err.getvalue()


def _store_with_runs(runs_dir: Path, names: tuple[str, ...] = ("steps=3", "steps=2")) -> list[str]:
    from lab.config import RunConfig
    from lab.launch.execute import execute_run
    from lab.launch.scripted import scripted_train
    from lab.runs.store import RunStore

    store = RunStore(runs_dir)
    ids = [store.create_run(RunConfig(name=name)).id for name in names]
    for run_id in ids:
        execute_run(store, run_id, scripted_train, threading.Event())
    store.close()
    gc.collect()  # closes the connections of the threads that trained them (the last close checkpoints)
    return ids


def _one_line_error(err: str) -> bool:
    return len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@contextlib.contextmanager
def read_only_folder(folder: Path) -> Iterator[str]:
    """The folder read-only for this process: a read-only bind mount as root, else no write permission."""
    if _as_root():
        mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
        if mounted.returncode == 0:
            try:
                subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True, capture_output=True)
                yield "a read-only bind mount"
            finally:
                subprocess.run(["umount", "-l", str(folder)], capture_output=True)
            return
        raise Skipped("cannot mount here, and root ignores file permissions")
    folder.chmod(0o555)
    try:
        yield "a folder without write permission"
    finally:
        folder.chmod(0o755)


# ---- a store that degrades instead of crashing -------------------------------------------------------
def scenario_read_only_store(work: Path) -> Row:
    runs_dir = work / "read-only"
    first, second = _store_with_runs(runs_dir)
    before = (runs_dir / "lab.db").read_bytes()
    with read_only_folder(runs_dir) as how:
        listed = lab_cli(runs_dir, "runs")
        shown = lab_cli(runs_dir, "show", first)
        deleted = lab_cli(runs_dir, "delete", second)
    unchanged = (runs_dir / "lab.db").read_bytes() == before and (runs_dir / second).is_dir()
    passed = (
        listed[0] == 0
        and first in listed[1]
        and second in listed[1]
        and shown[0] == 0
        and "completed" in shown[1]
        and deleted[0] == 2
        and _one_line_error(deleted[2])
        and "read-only" in deleted[2]
        and unchanged
    )
    return Row(
        f"Run store on {how}",
        "runs and show work; delete says 'read-only' in one line; lab.db unchanged",
        f"runs exit {listed[0]}, show exit {shown[0]}, delete: {one_line(deleted[2], 80)}; unchanged {unchanged}",
        passed,
    )


def scenario_locked_store(work: Path) -> Row:
    runs_dir = work / "locked"
    (run_id,) = _store_with_runs(runs_dir, ("steps=2",))
    holder = sqlite3.connect(runs_dir / "lab.db", isolation_level=None, timeout=30)  # waits out a backup
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")  # another program holding the whole file
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE runs SET name = name")
    started = time.monotonic()
    try:
        code, _, err = lab_cli(runs_dir, "runs")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    seconds = time.monotonic() - started
    after = lab_cli(runs_dir, "runs")
    passed = code == 2 and _one_line_error(err) and "locked" in err and seconds < 10 and run_id in after[1]
    return Row(
        "Run store locked by another program (an exclusive SQLite lock)",
        "one line saying 'locked' within a few seconds; lists again once released",
        f"exit {code} after {seconds:.1f} s: {one_line(err, 70)}; after release listed {run_id in after[1]}",
        passed,
    )


def scenario_damaged_store(work: Path) -> Row:
    from lab.runs.store import RunStore

    runs_dir = work / "damaged"
    (run_id,) = _store_with_runs(runs_dir, ("steps=2",))
    backup = RunStore(runs_dir).backup_now()
    db = runs_dir / "lab.db"
    with db.open("r+b") as handle:  # a stray write over the file's header
        handle.write(b"\xde\xad\xbe\xef" * 32)
    for leftover in ("lab.db-wal", "lab.db-shm"):
        (runs_dir / leftover).unlink(missing_ok=True)
    code, _, err = lab_cli(runs_dir, "runs")
    named = "PRAGMA integrity_check" in err and backup is not None and str(backup) in err
    shutil.copyfile(runs_dir / "lab.db.backup", db)  # what the message says to do
    restored = lab_cli(runs_dir, "runs")
    passed = code == 2 and _one_line_error(err) and named and restored[0] == 0 and run_id in restored[1]
    return Row(
        "Damaged lab.db (header overwritten)",
        "one line naming PRAGMA integrity_check and the lab's backup; the backup restores every run",
        f"exit {code}: {one_line(err, 90)}; restored from backup lists the run {run_id in restored[1]}",
        passed,
    )


# ---- a full disk during a run ----------------------------------------------------------------------------
@contextlib.contextmanager
def small_disk(folder: Path, size: str = "3m") -> Iterator[bool]:
    """A tmpfs of `size` at `folder` as root (True), else a plain folder whose fullness is injected (False)."""
    folder.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
    if _as_root() and subprocess.run(mount, capture_output=True).returncode == 0:
        try:
            yield True
        finally:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
    else:
        yield False


def fill(folder: Path) -> Path:
    filler = folder / "filler.bin"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler


@contextlib.contextmanager
def injected_full_disk() -> Iterator[threading.Event]:
    """While the returned event is set, every write to any store fails as SQLite fails on a full disk."""
    from lab.runs.connection import StoreFile

    full = threading.Event()
    real_write = StoreFile._write

    @contextlib.contextmanager
    def write(self: Any) -> Iterator[sqlite3.Connection]:
        if full.is_set():
            raise sqlite3.OperationalError("database or disk is full")
        with real_write(self) as conn:
            yield conn

    StoreFile._write = write  # type: ignore[method-assign]
    try:
        yield full
    finally:
        StoreFile._write = real_write  # type: ignore[method-assign]


def scenario_full_disk_during_run(work: Path) -> Row:
    """The disk fills while a run trains; the user runs `lab runs`, `show`, then `delete` of an old run, as
    the lab advises. The run must end `failed` with 'disk full' once that frees space, never `interrupted`."""
    import lab.launch.execute as execute
    from lab.config import RunConfig
    from lab.launch.scripted import scripted_train
    from lab.runs.store import RunStore

    disk = work / "small-disk"
    with (
        small_disk(disk) as real,
        contextlib.nullcontext(threading.Event()) if real else injected_full_disk() as injected,
    ):
        runs_dir = disk / "runs"
        (old,) = _store_with_runs(runs_dir, ("steps=2",))
        if real:
            (runs_dir / old / "old-model.bin").write_bytes(b"\1" * 1_000_000)
        store = RunStore(runs_dir)
        run_id = store.create_run(RunConfig(name="steps=3")).id
        filled = threading.Event()

        def train(*args: Any, **kwargs: Any) -> Any:
            scripted_train(*args, **kwargs)  # trains, then the disk fills as it saves
            if real:
                fill(disk)
            else:
                injected.set()
            filled.set()
            raise OSError(errno.ENOSPC, "No space left on device", str(runs_dir / run_id / "model"))

        retry, execute.FINAL_WRITE_RETRY_SECONDS = execute.FINAL_WRITE_RETRY_SECONDS, 0.2
        outcome: dict[str, str] = {}
        worker = threading.Thread(
            target=lambda: outcome.update(status=execute.execute_run(store, run_id, train, threading.Event()))
        )
        try:
            worker.start()
            filled.wait(60)
            time.sleep(0.5)
            while_full = [lab_cli(runs_dir, "runs"), lab_cli(runs_dir, "show", run_id)]
            pending = RunStore(runs_dir).get_run(run_id).status
            if not real:
                injected.clear()  # what deleting frees on a real disk
            while_full.append(lab_cli(runs_dir, "delete", old))
            worker.join(30)
        finally:
            execute.FINAL_WRITE_RETRY_SECONDS = retry
        run = RunStore(runs_dir).get_run(run_id)
    readable = all(code == 0 for code, _, _ in while_full)
    passed = (
        readable
        and pending == "running"
        and outcome.get("status") == "failed"
        and run.status == "failed"
        and run.message.startswith("The disk is full")
    )
    where = "a 3 MB tmpfs filled up" if real else "SQLITE_FULL injected at the store's write"
    return Row(
        f"Disk full during a run ({where})",
        "runs / show / delete work while full; the run ends failed 'disk is full' once delete frees space",
        f"runs/show/delete exit {[code for code, _, _ in while_full]}; while full the run read {pending}; "
        f"then {run.status}: \"{one_line(run.message, 60)}\"",
        passed,
    )


# ---- history and terminal output ---------------------------------------------------------------------
def scenario_resume_after_folder_deleted(work: Path) -> Row:
    from lab.config import RunConfig
    from lab.events import StepEvent
    from lab.runs.store import RunStore

    runs_dir = work / "deleted-folder"
    store = RunStore(runs_dir)
    run_id = store.create_run(RunConfig(name="gone")).id
    store.mark_running(run_id)
    store.append_event(run_id, StepEvent(step=1, loss=0.9))
    store.finish(run_id, "failed", "Out of memory: lower the batch size.")
    shutil.rmtree(store.run_dir(run_id))
    code, _, err = lab_cli(runs_dir, "resume", run_id)
    run = store.get_run(run_id)
    kept = run.status == "failed" and run.message == "Out of memory: lower the batch size."
    return Row(
        "Resume after the run's folder was deleted",
        "refused in one line; the record keeps the original failure",
        f"exit {code}: {one_line(err, 60)}; record: {run.status}: {one_line(run.message, 40)}",
        code == 2 and _one_line_error(err) and "deleted" in err and kept,
    )


def scenario_terminal_escapes(work: Path) -> Row:
    from lab.config import RunConfig
    from lab.runs.store import RunStore

    runs_dir = work / "escapes"
    store = RunStore(runs_dir)
    config = RunConfig(name="x\x1b[2Jy")
    config.model.name_or_path = "evil\x1b]0;pwned\x07\x1b[31m\u202emodel"
    run_id = store.create_run(config).id
    store.finish(run_id, "failed", "bad\rfake line\x1b[1A")
    outputs = [lab_cli(runs_dir, "runs")[1], lab_cli(runs_dir, "show", run_id)[1]]
    controls = sorted({repr(ch) for text in outputs for ch in text if ch in "\x1b\x07\r\u202e"})
    return Row(
        "Escape codes in a model name and a message",
        "lab runs / show print no control character (no ESC, BEL, CR, bidi override)",
        f"control characters printed: {', '.join(controls) or 'none'}",
        not controls and "evil" in outputs[0],
    )


def scenario_events_compacted(work: Path, steps: int = 10_000) -> Row:
    from lab.config import RunConfig
    from lab.events import EvalEvent, ProgressEvent, StepEvent
    from lab.runs.store import RunStore
    from lab.views.run_view import run_view

    store = RunStore(work / "compaction")
    run_id = store.create_run(RunConfig(name="long")).id
    store.mark_running(run_id)
    events: list[Any] = []
    for step in range(1, steps + 1):
        events.append(ProgressEvent(step=step, max_steps=steps, elapsed_seconds=step * 0.1))
        if step % 50 == 0:
            events.append(StepEvent(step=step, max_steps=steps, loss=1 / step))
        if step % 5000 == 0:
            events.append(EvalEvent(step=step, metrics={"accuracy": step / steps}))
    store.append_events(run_id, events)
    before = len(store.events_since(run_id))
    view_before = run_view([event for _, event in store.events_since(run_id)])
    store.finish(run_id, "completed", "Finished.")
    after = store.events_since(run_id)
    view_after = run_view([event for _, event in after])
    kinds = {kind: sum(1 for _, e in after if e.kind == kind) for kind in ("progress", "step", "eval", "status")}
    same = view_after.progress == view_before.progress and len(view_after.steps) == len(view_before.steps)
    passed = kinds["progress"] <= 250 and kinds["step"] == steps // 50 and kinds["eval"] == steps // 5000 and same
    return Row(
        f"Events of an ended run ({steps:,} optimizer steps)",
        "progress events thinned to a few hundred; steps, evals, statuses and the last progress kept",
        f"{before:,} events -> {len(after):,} ({kinds}); the pages' last progress and loss curve unchanged {same}",
        passed,
    )


STORE_SCENARIOS: dict[str, Callable[[Path], Row]] = {
    "read-only store": scenario_read_only_store,
    "locked store": scenario_locked_store,
    "damaged store": scenario_damaged_store,
    "full disk during a run": scenario_full_disk_during_run,
    **OWNER_SCENARIOS,
    "resume after the folder was deleted": scenario_resume_after_folder_deleted,
    "escape codes": scenario_terminal_escapes,
    "events compacted": scenario_events_compacted,
}


def run_scenario(title: str, work: Path) -> Row:
    try:
        return STORE_SCENARIOS[title](work)
    except Skipped as why:
        return Row(title, "(scenario ran)", f"skipped: {why}", True)
