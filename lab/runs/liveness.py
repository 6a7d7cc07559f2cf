"""Which runs still have a live owner: owners beat a heartbeat, readers mark the runs of dead owners
`interrupted` (how an owner is judged alive: `lab.runs.owner`)."""

from __future__ import annotations

import logging
import sqlite3
import time

from lab.errors import Message
from lab.events import StatusEvent
from lab.runs.compaction import compact_events
from lab.runs.connection import StoreUnavailable, one_line_errors
from lab.runs.event_log import EventLog
from lab.runs.owner import STORE_NOW_SQL, Owner

log = logging.getLogger(__name__)


class Liveness(EventLog):
    @one_line_errors
    def heartbeat(self, run_ids: list[str]) -> None:
        """Say this process still owns these runs (for readers that cannot check its process), in the
        store's clock."""
        if not run_ids:
            return
        owner = Owner.current()
        marks = ",".join("?" * len(run_ids))
        with self._write() as conn:
            conn.execute(
                f"UPDATE runs SET heartbeat_at = {STORE_NOW_SQL} WHERE owner_host = ? AND owner_pid = ?"
                f" AND owner_identity = ? AND id IN ({marks})",
                (owner.host, owner.pid, owner.identity, *run_ids),
            )

    @one_line_errors
    def recover_orphans(self) -> list[str]:
        """Mark active runs whose owning process is gone as interrupted; returns their ids. Best effort:
        a read-only, full or locked store leaves them as they are, for a later look."""
        now = time.time()
        rows = self._conn.execute(
            "SELECT id, status, owner_host, owner_pid, owner_identity, heartbeat_at,"
            f" {STORE_NOW_SQL} - heartbeat_at AS heartbeat_age"
            " FROM runs WHERE status IN ('queued', 'running')"
        ).fetchall()
        dead = [
            row
            for row in rows
            if Owner(row["owner_host"], row["owner_pid"], row["owner_identity"]).is_dead(row["heartbeat_age"])
        ]
        if not dead or self.read_only:
            return []
        try:
            return self._mark_interrupted(dead, now)
        except (sqlite3.Error, StoreUnavailable) as exc:
            log.info("Could not mark runs with a dead owner interrupted: %s", exc)
            return []

    def _mark_interrupted(self, rows: list[sqlite3.Row], now: float) -> list[str]:
        me = Owner.current().identity
        recovered = []
        for row in rows:
            owner = Owner(row["owner_host"], row["owner_pid"], row["owner_identity"])
            message = Message(
                f"The process that owned this run (pid {owner.pid} on {owner.host}) stopped without "
                f"finishing it; resume it with python -m lab resume {row['id']}.",
                "interrupted_owner",
                pid=owner.pid,
                host=owner.host,
                run=row["id"],
            )
            with self._write() as conn:
                # The owner and heartbeat in the WHERE clause skip a run another process claimed, or whose
                # owner beat, meanwhile.
                updated = conn.execute(
                    "UPDATE runs SET status = 'interrupted', message = ?, finished_at = ?, ended_by = ? WHERE id = ?"
                    " AND status = ? AND owner_host = ? AND owner_pid = ? AND owner_identity = ? AND heartbeat_at IS ?",
                    (
                        message,
                        now,
                        me,
                        row["id"],
                        row["status"],
                        owner.host,
                        owner.pid,
                        owner.identity,
                        row["heartbeat_at"],
                    ),
                ).rowcount
                if updated:
                    self._append(conn, row["id"], [StatusEvent(status="interrupted", message=message)])
                    compact_events(conn, row["id"])
                    recovered.append(row["id"])
        return recovered
