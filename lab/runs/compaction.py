"""Thinning the events of an ended run, so the store does not grow with every optimizer step forever.

A run emits a `progress` event per optimizer step (for the live progress bar and ETA). Once it has
ended, only the last one is drawn; a few hundred evenly spaced ones are kept for anyone who plots
progress over time. Every other kind (steps with their loss, evaluations, results, statuses, logs,
ranks, projections) is what the pages draw, and is kept whole.
"""

from __future__ import annotations

import math
import sqlite3

KEEP_PROGRESS_EVENTS = 200


def compact_events(conn: sqlite3.Connection, run_id: str) -> int:
    """Delete all but every Nth step's and the last progress event of a run; returns how many went.
    Runs inside the caller's write transaction."""
    count, last_seq, last_step = conn.execute(
        "SELECT COUNT(*), MAX(seq), MAX(json_extract(json, '$.step')) FROM events"
        " WHERE run_id = ? AND kind = 'progress'",
        (run_id,),
    ).fetchone()
    if count <= KEEP_PROGRESS_EVENTS:
        return 0
    every = max(2, math.ceil((last_step or count) / KEEP_PROGRESS_EVENTS))
    return conn.execute(
        "DELETE FROM events WHERE run_id = ? AND kind = 'progress' AND seq != ?"
        " AND COALESCE(json_extract(json, '$.step'), 1) % ? != 0",
        (run_id, last_seq, every),
    ).rowcount
