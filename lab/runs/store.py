"""The durable record of every run: an SQLite index of runs, their ordered events, and a folder each.

The app, the CLI and worker processes all read and write runs only through a `RunStore`, so a page
reload, a second tab, a restarted server or another terminal sees the same run. Events are never
consumed: any number of readers follow a run with a cursor (`events_since(run_id, seq)`).

Layout of the runs directory (`./runs`, or `LAB_RUNS_DIR`):

    runs/lab.db                      the index (SQLite, WAL mode, so readers never block the writer)
    runs/<run id>/config.yaml        the exact config the run trained with
    runs/<run id>/checkpoints/       Trainer `checkpoint-<step>` folders, for resume
    runs/<run id>/model/             the saved model or adapter
    runs/<run id>/report.json        the final metrics
    runs/<run id>/worker.log         stdout / stderr of a process-executor worker

A run whose owning process died without finishing is marked `interrupted` when a store looks at it
(on open and when listing), judged from the owner's process id, process start time and heartbeat.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from lab.config import RunConfig
from lab.errors import LabError, Message
from lab.events import Event, StatusEvent, event_from_dict
from lab.runs.owner import Owner
from lab.runs.schema import create_or_upgrade
from lab.runs.records import (ACTIVE_STATUSES, FINAL_STATUSES, RunRecord, check_run_id, clean_name, new_run_id,
                              record_from_row)

RUNS_DIR_ENV = "LAB_RUNS_DIR"
DEFAULT_RUNS_DIR = "runs"
DB_NAME = "lab.db"



def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV) or DEFAULT_RUNS_DIR)


# ---- the store ----------------------------------------------------------------------------------
class RunStore:
    """Thread-safe handle on a runs directory. Each thread (and each forked process) gets its own
    SQLite connection; writers wait up to `busy_timeout` seconds for the write lock instead of failing.
    """

    def __init__(self, runs_dir: str | Path | None = None, busy_timeout: float = 30.0) -> None:
        self.runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LabError(f"Cannot create the runs directory {self.runs_dir}: {exc}") from None
        self.db_path = self.runs_dir / DB_NAME
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._init_schema()
        self.recover_orphans()

    # -- connections --
    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.db_path, timeout=self.busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise LabError(f"Cannot open the run store {self.db_path}: {exc}") from None
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        # NORMAL is durable against a crashed process in WAL mode; only a power cut can lose the last events.
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @property
    def _conn(self) -> sqlite3.Connection:
        # A connection must not cross threads or a fork; the pid check catches a forked child.
        local = self._local
        if getattr(local, "conn", None) is None or local.pid != os.getpid():
            local.conn, local.pid = self._connect(), os.getpid()
        return local.conn

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so the busy timeout applies instead of a
        # deadlock error when two readers both try to upgrade to writers.
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _init_schema(self) -> None:
        conn = self._conn
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise LabError(f"The run store {self.db_path} cannot use WAL mode (got {mode}); "
                           f"put {RUNS_DIR_ENV} on a local disk.")
        with self._write() as conn:
            create_or_upgrade(conn)

    # -- runs --
    def run_dir(self, run_id: str) -> Path:
        """The run's folder, guaranteed to be inside the runs directory."""
        path = (self.runs_dir / check_run_id(run_id)).resolve()
        if path.parent != self.runs_dir.resolve():
            raise LabError(f"Run id {run_id!r} points outside the runs directory {self.runs_dir}.")
        return path

    def create_run(self, config: RunConfig, executor: str = "thread",
                   output_dir: str | Path | None = None, group: str = "") -> RunRecord:
        """Make the run's folder with its config and a `queued` row owned by this process. The engine
        writes into the run's folder unless `output_dir` (the CLI's --output) names another. `group`
        names the comparison or sweep the run belongs to."""
        name = clean_name(config.name) or config.task
        for _ in range(10):
            run_id = new_run_id(name, config.task)
            folder = self.run_dir(run_id)
            try:
                folder.mkdir()
                break
            except FileExistsError:
                continue
        else:
            raise LabError(f"Could not find a free run id in {self.runs_dir}.")
        (folder / "checkpoints").mkdir()
        config.save(folder / "config.yaml")
        owner, now = Owner.current(), time.time()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO runs (id, name, task, dataset, model, peft_method, executor, num_devices, status,"
                " created_at, owner_host, owner_pid, owner_identity, heartbeat_at, output_dir, group_name)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
                (run_id, name, config.task, config.dataset_name,
                 config.model.name_or_path, config.peft.method, executor, config.train.num_devices,
                 now, owner.host, owner.pid, owner.identity, now,
                 str(Path(output_dir).resolve()) if output_dir else "", clean_name(group)))
            self._append(conn, run_id, [StatusEvent(status="queued", message=Message(f"Created run {run_id}.", "created", run=run_id))])
        return self.get_run(run_id)

    def output_dir(self, run: RunRecord) -> Path:
        """Where the run's checkpoints/, model/ and report.json are."""
        return Path(run.output_dir) if run.output_dir else self.run_dir(run.id)

    def load_config(self, run_id: str) -> RunConfig:
        path = self.run_dir(run_id) / "config.yaml"
        config = RunConfig.load(path)
        if "split_seed:" not in path.read_text(encoding="utf-8"):
            # Stored before data.split_seed existed, when the training seed also carved the splits:
            # a resume must see the same examples.
            config.data.split_seed = config.train.seed
        return config

    def get_run(self, run_id: str) -> RunRecord:
        row = self._conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise LabError(f"No run with id {run_id!r} in {self.runs_dir}; `python -m lab runs` lists them.")
        return record_from_row(row)

    def find_run(self, ref: str) -> RunRecord:
        """A run by exact id, else by name (when one run has it), else by a unique id prefix."""
        ref = ref.strip()
        if not ref:
            raise LabError("Give a run id or name; `python -m lab runs` lists them.")
        row = self._conn.execute("SELECT * FROM runs WHERE id = ?", (ref,)).fetchone()
        if row is not None:
            return record_from_row(row)
        by_name = self._conn.execute("SELECT * FROM runs WHERE name = ? ORDER BY created_at DESC",
                                     (ref,)).fetchall()
        by_prefix = self._conn.execute("SELECT * FROM runs WHERE substr(id, 1, ?) = ? ORDER BY created_at DESC",
                                       (len(ref), ref)).fetchall()
        for rows in (by_name, by_prefix):
            if len(rows) == 1:
                return record_from_row(rows[0])
            if len(rows) > 1:
                ids = ", ".join(r["id"] for r in rows[:5])
                raise LabError(f"{ref!r} matches {len(rows)} runs ({ids}); give the full run id.")
        raise LabError(f"No run {ref!r} in {self.runs_dir}; `python -m lab runs` lists them.")

    def list_runs(self, limit: Optional[int] = None, group: Optional[str] = None) -> list[RunRecord]:
        """Newest first (of one group, when given). Also marks runs whose worker died as interrupted, so the
        list tells the truth."""
        self.recover_orphans()
        where, values = ("WHERE group_name = ?", (group,)) if group is not None else ("", ())
        rows = self._conn.execute(f"SELECT * FROM runs {where} ORDER BY created_at DESC, id DESC LIMIT ?",
                                  (*values, -1 if limit is None else limit)).fetchall()
        return [record_from_row(row) for row in rows]

    def groups(self) -> list[str]:
        """The names of the run groups (comparisons, sweeps), newest first."""
        rows = self._conn.execute("SELECT group_name, MAX(created_at) AS newest FROM runs WHERE group_name != ''"
                                  " GROUP BY group_name ORDER BY newest DESC").fetchall()
        return [row["group_name"] for row in rows]

    def delete_run(self, run_id: str) -> None:
        self.get_run(run_id)  # an unknown id gets its own message
        with self._write() as conn:
            # Checked inside the write transaction: a run started in between cannot be deleted under its owner.
            status = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()["status"]
            if status in ACTIVE_STATUSES:
                raise LabError(f"Run {run_id} is {status}; cancel it first (python -m lab cancel {run_id}).")
            conn.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    # -- events --
    def _append(self, conn: sqlite3.Connection, run_id: str, events: list[Event]) -> int:
        last = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?", (run_id,)).fetchone()[0]
        conn.executemany("INSERT INTO events (run_id, seq, kind, json) VALUES (?, ?, ?, ?)",
                         [(run_id, last + i, e.kind, json.dumps(e.to_dict(), default=_jsonable))
                          for i, e in enumerate(events, start=1)])
        return last + len(events)

    def append_events(self, run_id: str, events: list[Event]) -> int:
        """Store events in order in one transaction; returns the sequence number of the last one."""
        if not events:
            return self.last_seq(run_id)
        with self._write() as conn:
            return self._append(conn, run_id, list(events))

    def append_event(self, run_id: str, event: Event) -> int:
        return self.append_events(run_id, [event])

    def events_since(self, run_id: str, seq: int = 0, limit: Optional[int] = None) -> list[tuple[int, Event]]:
        """Events with a sequence number above `seq`, oldest first. Nothing is consumed."""
        rows = self._conn.execute(
            "SELECT seq, json FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (run_id, seq, -1 if limit is None else limit)).fetchall()
        return [(row["seq"], event_from_dict(json.loads(row["json"]))) for row in rows]

    def follow(self, run_id: str, after: int = 0, poll_seconds: float = 0.5,
               timeout: Optional[float] = None) -> Iterator[tuple[int, Event]]:
        """Yield the run's events as they arrive, until it has ended and every event was read."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ended = not self.get_run(run_id).is_active  # read before the events, so none is missed
            batch = self.events_since(run_id, after)
            yield from batch
            after = batch[-1][0] if batch else after
            if (ended and not batch) or (deadline is not None and time.monotonic() > deadline):
                return
            if not batch:
                time.sleep(poll_seconds)
                self.recover_orphans()

    def last_seq(self, run_id: str) -> int:
        return self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?",
                                  (run_id,)).fetchone()[0]

    # -- status --
    def mark_running(self, run_id: str, message: str = "") -> bool:
        """Claim a queued run for this process. False when it is no longer queued (cancelled meanwhile)."""
        owner, now = Owner.current(), time.time()
        with self._write() as conn:
            updated = conn.execute(
                "UPDATE runs SET status = 'running', started_at = COALESCE(started_at, ?), owner_host = ?,"
                " owner_pid = ?, owner_identity = ?, heartbeat_at = ? WHERE id = ? AND status = 'queued'",
                (now, owner.host, owner.pid, owner.identity, now, run_id)).rowcount
            if updated:
                self._append(conn, run_id, [StatusEvent(status="running", message=message)])
        return bool(updated)

    def finish(self, run_id: str, status: str, message: str = "", traceback: str = "",
               metrics: Optional[dict[str, Any]] = None, per_label: Optional[list[dict[str, Any]]] = None,
               summary: Optional[dict[str, Any]] = None) -> bool:
        """Record a final status once: the first writer wins (False when the run had already ended)."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"{status!r} is not a final status")
        with self._write() as conn:
            updated = conn.execute(
                "UPDATE runs SET status = ?, message = ?, traceback = ?, finished_at = ?,"
                " metrics = COALESCE(?, metrics), per_label = COALESCE(?, per_label), summary = COALESCE(?, summary)"
                " WHERE id = ? AND status IN ('queued', 'running')",
                (status, message, traceback, time.time(), _dumps(metrics), _dumps(per_label), _dumps(summary),
                 run_id)).rowcount
            if updated:
                self._append(conn, run_id, [StatusEvent(status=status, message=message)])
        return bool(updated)

    def mark_pruned(self, run_id: str, message: str) -> bool:
        """A sweep's pruner stopped this run: its `cancelled` (or, stopped at its very end, `completed`)
        becomes `pruned`, with why. False when the run was not in one of those states."""
        with self._write() as conn:
            updated = conn.execute("UPDATE runs SET status = 'pruned', message = ? WHERE id = ?"
                                   " AND status IN ('cancelled', 'completed')", (message, run_id)).rowcount
            if updated:
                self._append(conn, run_id, [StatusEvent(status="pruned", message=message)])
        return bool(updated)

    def requeue(self, run_id: str, resume_from: str, message: str) -> None:
        """Put an ended run back in the queue for another attempt in the same record (resume)."""
        owner, now = Owner.current(), time.time()
        with self._write() as conn:
            updated = conn.execute(
                "UPDATE runs SET status = 'queued', message = '', traceback = '', finished_at = NULL,"
                " cancel_requested = 0, resume_from = ?, attempt = attempt + 1, owner_host = ?, owner_pid = ?,"
                " owner_identity = ?, heartbeat_at = ? WHERE id = ? AND status IN ('failed', 'cancelled', 'interrupted')",
                (resume_from, owner.host, owner.pid, owner.identity, now, run_id)).rowcount
            if not updated:
                raise LabError(f"Run {run_id} changed state meanwhile; look at it with python -m lab show {run_id}.")
            self._append(conn, run_id, [StatusEvent(status="queued", message=message)])

    def request_cancel(self, run_id: str) -> None:
        with self._write() as conn:
            conn.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?", (run_id,))

    def cancel_requested(self, run_id: str) -> bool:
        row = self._conn.execute("SELECT cancel_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row[0])

    def cancel_requests(self, run_ids: list[str]) -> list[str]:
        """Which of these runs someone (another process, the CLI) asked to cancel."""
        if not run_ids:
            return []
        marks = ",".join("?" * len(run_ids))
        rows = self._conn.execute(f"SELECT id FROM runs WHERE cancel_requested = 1 AND id IN ({marks})", run_ids)
        return [row[0] for row in rows]

    def heartbeat(self, run_ids: list[str]) -> None:
        """Say this process still owns these runs (for readers that cannot check its pid)."""
        if not run_ids:
            return
        owner = Owner.current()
        marks = ",".join("?" * len(run_ids))
        with self._write() as conn:
            conn.execute(f"UPDATE runs SET heartbeat_at = ? WHERE owner_host = ? AND owner_pid = ? AND id IN ({marks})",
                         (time.time(), owner.host, owner.pid, *run_ids))

    def recover_orphans(self) -> list[str]:
        """Mark active runs whose owning process is gone as interrupted; returns their ids."""
        now = time.time()
        rows = self._conn.execute("SELECT id, status, owner_host, owner_pid, owner_identity, heartbeat_at"
                                  " FROM runs WHERE status IN ('queued', 'running')").fetchall()
        recovered = []
        for row in rows:
            owner = Owner(row["owner_host"], row["owner_pid"], row["owner_identity"])
            if not owner.is_dead(row["heartbeat_at"], now):
                continue
            message = Message(f"The process that owned this run (pid {owner.pid} on {owner.host}) stopped without "
                              f"finishing it; resume it with python -m lab resume {row['id']}.",
                              "interrupted_owner", pid=owner.pid, host=owner.host, run=row["id"])
            with self._write() as conn:
                # The owner columns in the WHERE clause skip a run that another process claimed meanwhile.
                updated = conn.execute(
                    "UPDATE runs SET status = 'interrupted', message = ?, finished_at = ? WHERE id = ?"
                    " AND status = ? AND owner_host = ? AND owner_pid = ? AND owner_identity = ?",
                    (message, now, row["id"], row["status"], owner.host, owner.pid, owner.identity)).rowcount
                if updated:
                    self._append(conn, row["id"], [StatusEvent(status="interrupted", message=message)])
                    recovered.append(row["id"])
        return recovered

    def integrity_check(self) -> str:
        return self._conn.execute("PRAGMA integrity_check").fetchone()[0]


def _dumps(value: Any) -> Optional[str]:
    return None if value is None else json.dumps(value, default=_jsonable)


def _jsonable(value: Any) -> Any:
    # numpy / torch scalars in metrics; NaN stays NaN (json writes it as NaN, Python reads it back).
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
