"""A run's ordered events in the store: appended in one transaction per batch, numbered without gaps
while the run lives, read by any number of readers with a cursor (nothing is consumed)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Optional

from lab.events import Event, event_from_dict
from lab.runs.connection import StoreFile, one_line_errors


class EventLog(StoreFile):
    def _append(self, conn: sqlite3.Connection, run_id: str, events: list[Event]) -> int:
        last = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?", (run_id,)).fetchone()[0]
        conn.executemany(
            "INSERT INTO events (run_id, seq, kind, json) VALUES (?, ?, ?, ?)",
            [
                (run_id, last + i, e.kind, json.dumps(e.to_dict(), default=jsonable))
                for i, e in enumerate(events, start=1)
            ],
        )
        return last + len(events)

    @one_line_errors
    def append_events(self, run_id: str, events: list[Event]) -> int:
        """Store events in order in one transaction; returns the sequence number of the last one."""
        if not events:
            return self.last_seq(run_id)
        with self._write() as conn:
            return self._append(conn, run_id, list(events))

    def append_event(self, run_id: str, event: Event) -> int:
        return self.append_events(run_id, [event])

    @one_line_errors
    def events_since(self, run_id: str, seq: int = 0, limit: Optional[int] = None) -> list[tuple[int, Event]]:
        """Events with a sequence number above `seq`, oldest first. Nothing is consumed."""
        rows = self._conn.execute(
            "SELECT seq, json FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (run_id, seq, -1 if limit is None else limit),
        ).fetchall()
        return [(row["seq"], event_from_dict(json.loads(row["json"]))) for row in rows]

    @one_line_errors
    def last_seq(self, run_id: str) -> int:
        return self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?", (run_id,)).fetchone()[0]


def jsonable(value: Any) -> Any:
    # numpy / torch scalars in metrics; NaN stays NaN (json writes it as NaN, Python reads it back).
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
