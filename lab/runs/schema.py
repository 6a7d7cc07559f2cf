"""The run store's SQLite schema, and the upgrade of a store made by an older lab."""
from __future__ import annotations

import sqlite3

_SCHEMA_VERSION = 2
# Columns added after version 1, for stores made before them: (name, definition).
_ADDED_COLUMNS = (("group_name", "TEXT NOT NULL DEFAULT ''"),)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    task TEXT NOT NULL,
    dataset TEXT NOT NULL,
    model TEXT NOT NULL,
    peft_method TEXT NOT NULL,
    executor TEXT NOT NULL,
    num_devices INTEGER NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    traceback TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    metrics TEXT NOT NULL DEFAULT '{}',
    per_label TEXT NOT NULL DEFAULT '[]',
    summary TEXT NOT NULL DEFAULT '{}',
    owner_host TEXT NOT NULL DEFAULT '',
    owner_pid INTEGER NOT NULL DEFAULT 0,
    owner_identity TEXT NOT NULL DEFAULT '',
    heartbeat_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    resume_from TEXT NOT NULL DEFAULT '',
    attempt INTEGER NOT NULL DEFAULT 1,
    output_dir TEXT NOT NULL DEFAULT '',
    group_name TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs(status);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
"""


def create_or_upgrade(conn: sqlite3.Connection) -> None:
    """Create the tables, or add the columns an older store lacks; inside the caller's write transaction."""
    # One statement at a time: executescript() would commit the surrounding transaction.
    for statement in filter(str.strip, _SCHEMA.split(";")):
        conn.execute(statement)
    present = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    for name, definition in _ADDED_COLUMNS:
        if name not in present:
            conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {definition}")
    conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
