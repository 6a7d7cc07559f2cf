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
    runs/<run id>/worker.log         a worker process's or Ray job's output (capped; older in worker.log.1)

    runs/lab.db.backup, .backup.1    the two newest copies of the index (lab.runs.connection)

A run whose owning process died without finishing is marked `interrupted` when a store looks at it
(on open and when listing), judged by `lab.runs.owner`. Reading never writes the index, so a
read-only, full or locked store still lists and shows its runs; an error a user can meet is one line
(`StoreUnavailable`). When a run ends its per-step progress events are thinned (`compaction`).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

from lab.config import RunConfig
from lab.errors import LabError, Message
from lab.events import Event, StatusEvent
from lab.runs.compaction import compact_events
from lab.runs.connection import StoreUnavailable, one_line_errors
from lab.runs.event_log import jsonable
from lab.runs.liveness import Liveness
from lab.runs.owner import STORE_NOW_SQL, Owner
from lab.runs.records import (
    FINAL_STATUSES,
    RunRecord,
    Viewer,
    check_run_id,
    clean_name,
    new_run_id,
    record_from_row,
)

log = logging.getLogger(__name__)

RUNS_DIR_ENV = "LAB_RUNS_DIR"
DEFAULT_RUNS_DIR = "runs"
DB_NAME = "lab.db"


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV) or DEFAULT_RUNS_DIR)


# ---- the store ----------------------------------------------------------------------------------
class RunStore(Liveness):
    """Thread-safe handle on a runs directory. Each thread (and each forked process) gets its own
    SQLite connection; writers wait up to `busy_timeout` seconds for the write lock (the CLI's reads and
    deletes wait less), then say the store is locked.

    A handle `seen_by(viewer)` reads, lists and changes only the runs that viewer may (lab.runs.records.Viewer);
    to it another person's run does not exist. A plain handle sees every run.
    """

    viewer: Optional[Viewer] = None

    def __init__(self, runs_dir: str | Path | None = None, busy_timeout: float = 30.0) -> None:
        super().__init__(Path(runs_dir) if runs_dir is not None else default_runs_dir(), DB_NAME, busy_timeout)
        self.recover_orphans()

    def seen_by(self, viewer: Optional[Viewer]) -> RunStore:
        """This store as `viewer` sees it (None: every run); it shares this handle's connections. Runs it
        creates belong to the viewer."""
        scoped = copy.copy(self)
        scoped.viewer = viewer
        return scoped

    # -- runs --
    def run_dir(self, run_id: str) -> Path:
        """The run's folder, guaranteed to be inside the runs directory."""
        path = (self.runs_dir / check_run_id(run_id)).resolve()
        if path.parent != self.runs_dir.resolve():
            raise LabError(f"Run id {run_id!r} points outside the runs directory {self.runs_dir}.")
        return path

    @one_line_errors
    def create_run(
        self,
        config: RunConfig,
        executor: str = "thread",
        output_dir: str | Path | None = None,
        group: str = "",
        owner: Optional[str] = None,
    ) -> RunRecord:
        """Make the run's folder with its config and a `queued` row owned by this process. The engine
        writes into the run's folder unless `output_dir` (the CLI's --output) names another. `group`
        names the comparison or sweep the run belongs to; `owner` the account it belongs to (by default
        this handle's viewer, else nobody's: the teacher's)."""
        if owner is None:
            owner = self.viewer.name if self.viewer else ""
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
        process, now = Owner.current(), time.time()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO runs (id, name, task, dataset, model, peft_method, executor, num_devices, status,"
                " created_at, owner_host, owner_pid, owner_identity, heartbeat_at, output_dir, group_name, owner)"
                f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, {STORE_NOW_SQL}, ?, ?, ?)",
                (
                    run_id,
                    name,
                    config.task,
                    config.dataset_name,
                    config.model.name_or_path,
                    config.peft.method,
                    executor,
                    config.train.num_devices,
                    now,
                    process.host,
                    process.pid,
                    process.identity,
                    str(Path(output_dir).resolve()) if output_dir else "",
                    clean_name(group),
                    owner,
                ),
            )
            self._append(
                conn,
                run_id,
                [StatusEvent(status="queued", message=Message(f"Created run {run_id}.", "created", run=run_id))],
            )
        return self.get_run(run_id)

    def output_dir(self, run: RunRecord) -> Path:
        """Where the run's checkpoints/, model/ and report.json are."""
        return Path(run.output_dir) if run.output_dir else self.run_dir(run.id)

    def load_config(self, run_id: str) -> RunConfig:
        if self.viewer is not None:
            self.get_run(run_id)  # another person's run is not there for this viewer
        path = self.run_dir(run_id) / "config.yaml"
        config = RunConfig.load(path)
        if "split_seed:" not in path.read_text(encoding="utf-8"):
            # Stored before data.split_seed existed, when the training seed also carved the splits:
            # a resume must see the same examples.
            config.data.split_seed = config.train.seed
        return config

    @one_line_errors
    def get_run(self, run_id: str) -> RunRecord:
        row = self._conn.execute(f"SELECT * FROM {self._runs} WHERE id = ?", (run_id,)).fetchone()
        if row is None or not self._may_see(record_from_row(row)):
            raise LabError(f"No run with id {run_id!r} in {self.runs_dir}; `python -m lab runs` lists them.")
        return record_from_row(row)

    def _may_see(self, run: RunRecord) -> bool:
        return self.viewer is None or self.viewer.may_see(run)

    def _visible(self) -> tuple[str, tuple[Any, ...]]:
        """The SQL condition (and its values) for the runs this store's viewer may see."""
        return self.viewer.visible_sql() if self.viewer else ("1", ())

    def check_may_change(self, run: RunRecord) -> None:
        """Refuse, in one line, a change by a viewer who may only look at this run (one a teacher shared)."""
        if self.viewer is not None and not self.viewer.may_change(run):
            raise LabError(
                f"Run {run.id} belongs to {run.owner or 'the teacher'}; only they or a teacher may change it."
            )

    @one_line_errors
    def share_run(self, run_id: str, shared: bool = True) -> None:
        """Show a run to the whole class (or stop showing it); a teacher's decision."""
        self.check_may_change(self.get_run(run_id))
        if self.viewer is not None and not self.viewer.is_teacher:
            raise LabError("Only a teacher may share a run with the class.")
        with self._write() as conn:
            conn.execute("UPDATE runs SET shared = ? WHERE id = ?", (int(shared), run_id))

    @one_line_errors
    def find_run(self, ref: str) -> RunRecord:
        """A run by exact id, else by name (when one run has it), else by a unique id prefix."""
        ref = ref.strip()
        if not ref:
            raise LabError("Give a run id or name; `python -m lab runs` lists them.")
        runs = self._runs
        seen, seen_values = self._visible()
        row = self._conn.execute(f"SELECT * FROM {runs} WHERE id = ? AND {seen}", (ref, *seen_values)).fetchone()
        if row is not None:
            return record_from_row(row)
        by_name = self._conn.execute(
            f"SELECT * FROM {runs} WHERE name = ? AND {seen} ORDER BY created_at DESC", (ref, *seen_values)
        ).fetchall()
        by_prefix = self._conn.execute(
            f"SELECT * FROM {runs} WHERE substr(id, 1, ?) = ? AND {seen} ORDER BY created_at DESC",
            (len(ref), ref, *seen_values),
        ).fetchall()
        for rows in (by_name, by_prefix):
            if len(rows) == 1:
                return record_from_row(rows[0])
            if len(rows) > 1:
                ids = ", ".join(r["id"] for r in rows[:5])
                raise LabError(f"{ref!r} matches {len(rows)} runs ({ids}); give the full run id.")
        raise LabError(f"No run {ref!r} in {self.runs_dir}; `python -m lab runs` lists them.")

    @one_line_errors
    def list_runs(self, limit: Optional[int] = None, group: Optional[str] = None) -> list[RunRecord]:
        """Newest first (of one group, when given). Also marks runs whose worker died as interrupted, so the
        list tells the truth."""
        self.recover_orphans()
        where, values = self._visible()
        if group is not None:
            where, values = f"{where} AND group_name = ?", (*values, group)
        rows = self._conn.execute(
            f"SELECT * FROM {self._runs} WHERE {where} ORDER BY created_at DESC, id DESC LIMIT ?",
            (*values, -1 if limit is None else limit),
        ).fetchall()
        return [record_from_row(row) for row in rows]

    @one_line_errors
    def groups(self) -> list[str]:
        """The names of the run groups (comparisons, sweeps) with a run this handle sees, newest first."""
        seen, seen_values = self._visible()
        rows = self._conn.execute(
            f"SELECT group_name, MAX(created_at) AS newest FROM {self._runs}"
            f" WHERE group_name != '' AND {seen}"
            " GROUP BY group_name ORDER BY newest DESC",
            seen_values,
        ).fetchall()
        return [row["group_name"] for row in rows]

    @one_line_errors
    def delete_run(self, run_id: str) -> None:
        """Delete an ended run: its folder first (on a full disk that frees the room the index needs to
        forget it), then its record and events."""
        run = self.get_run(run_id)  # an unknown id gets its own message
        self.check_may_change(run)
        if run.is_active:
            raise LabError(f"Run {run_id} is {run.status}; cancel it first (python -m lab cancel {run_id}).")
        self.check_writable()  # before anything is removed
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)
        with self._write() as conn:
            conn.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    # -- events (appending and reading them: lab.runs.event_log) --
    def follow(
        self, run_id: str, after: int = 0, poll_seconds: float = 0.5, timeout: Optional[float] = None
    ) -> Iterator[tuple[int, Event]]:
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

    # -- status --
    @one_line_errors
    def mark_running(self, run_id: str, message: str = "") -> bool:
        """Claim a queued run for this process. False when it is no longer queued (cancelled meanwhile)."""
        owner, now = Owner.current(), time.time()
        with self._write() as conn:
            updated = conn.execute(
                "UPDATE runs SET status = 'running', started_at = COALESCE(started_at, ?), owner_host = ?,"
                f" owner_pid = ?, owner_identity = ?, heartbeat_at = {STORE_NOW_SQL}"
                " WHERE id = ? AND status = 'queued'",
                (now, owner.host, owner.pid, owner.identity, run_id),
            ).rowcount
            if updated:
                self._append(conn, run_id, [StatusEvent(status="running", message=message)])
        return bool(updated)

    @one_line_errors
    def finish(
        self,
        run_id: str,
        status: str,
        message: str = "",
        traceback: str = "",
        metrics: Optional[dict[str, Any]] = None,
        per_label: Optional[list[dict[str, Any]]] = None,
        summary: Optional[dict[str, Any]] = None,
    ) -> bool:
        """Record a final status once: the first writer wins (False when the run had already ended). One
        exception: the owner of a run that another process marked `interrupted` is evidently alive, and
        records how the run really ended."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"{status!r} is not a final status")
        me = Owner.current().identity
        with self._write() as conn:
            updated = conn.execute(
                "UPDATE runs SET status = ?, message = ?, traceback = ?, finished_at = ?, ended_by = ?,"
                " metrics = COALESCE(?, metrics), per_label = COALESCE(?, per_label), summary = COALESCE(?, summary)"
                " WHERE id = ? AND (status IN ('queued', 'running')"
                " OR (status = 'interrupted' AND owner_identity = ? AND ? != '' AND ended_by != ?))",
                (
                    status,
                    message,
                    traceback,
                    time.time(),
                    me,
                    _dumps(metrics),
                    _dumps(per_label),
                    _dumps(summary),
                    run_id,
                    me,
                    me,
                    me,
                ),
            ).rowcount
            if updated:
                self._append(conn, run_id, [StatusEvent(status=status, message=message)])
        if updated:
            self._compact(run_id)
        return bool(updated)

    def _compact(self, run_id: str) -> None:
        try:
            with self._write() as conn:
                compact_events(conn, run_id)
        except (sqlite3.Error, StoreUnavailable) as exc:  # thinning can wait for the next time
            log.info("Could not thin the events of run %s: %s", run_id, exc)

    @one_line_errors
    def mark_pruned(self, run_id: str, message: str) -> bool:
        """A sweep's pruner stopped this run: its `cancelled` (or, stopped at its very end, `completed`)
        becomes `pruned`, with why. False when the run was not in one of those states."""
        with self._write() as conn:
            updated = conn.execute(
                "UPDATE runs SET status = 'pruned', message = ? WHERE id = ? AND status IN ('cancelled', 'completed')",
                (message, run_id),
            ).rowcount
            if updated:
                self._append(conn, run_id, [StatusEvent(status="pruned", message=message)])
        return bool(updated)

    @one_line_errors
    def requeue(self, run_id: str, resume_from: str, message: str) -> None:
        """Put an ended run back in the queue for another attempt in the same record (resume)."""
        if self.viewer is not None:
            self.check_may_change(self.get_run(run_id))
        owner = Owner.current()
        with self._write() as conn:
            updated = conn.execute(
                "UPDATE runs SET status = 'queued', message = '', traceback = '', finished_at = NULL, ended_by = '',"
                " cancel_requested = 0, resume_from = ?, attempt = attempt + 1, owner_host = ?, owner_pid = ?,"
                f" owner_identity = ?, heartbeat_at = {STORE_NOW_SQL}"
                " WHERE id = ? AND status IN ('failed', 'cancelled', 'interrupted')",
                (resume_from, owner.host, owner.pid, owner.identity, run_id),
            ).rowcount
            if not updated:
                raise LabError(f"Run {run_id} changed state meanwhile; look at it with python -m lab show {run_id}.")
            self._append(conn, run_id, [StatusEvent(status="queued", message=message)])

    @one_line_errors
    def request_cancel(self, run_id: str) -> None:
        if self.viewer is not None:
            self.check_may_change(self.get_run(run_id))
        with self._write() as conn:
            conn.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?", (run_id,))

    @one_line_errors
    def cancel_requested(self, run_id: str) -> bool:
        row = self._conn.execute("SELECT cancel_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row[0])

    @one_line_errors
    def cancel_requests(self, run_ids: list[str]) -> list[str]:
        """Which of these runs someone (another process, the CLI) asked to cancel."""
        if not run_ids:
            return []
        marks = ",".join("?" * len(run_ids))
        rows = self._conn.execute(f"SELECT id FROM runs WHERE cancel_requested = 1 AND id IN ({marks})", run_ids)
        return [row[0] for row in rows]

    @one_line_errors
    def integrity_check(self) -> str:
        return self._conn.execute("PRAGMA integrity_check").fetchone()[0]


def _dumps(value: Any) -> Optional[str]:
    return None if value is None else json.dumps(value, default=jsonable)
