"""The run store's SQLite schema, and the upgrade of a store made by an older lab."""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 4
# Columns added after version 1, for stores made before them: (name, definition, value of old rows).
# ended_by: the identity of the process that wrote the final status (an owner's own, or a reader's
# that found the owner dead). owner: the account the run belongs to ('' before accounts, or the CLI acting
# as the teacher); shared: a teacher shared it with the class.
_ADDED_COLUMNS = (
    ("group_name", "TEXT NOT NULL DEFAULT ''", "''"),
    ("ended_by", "TEXT NOT NULL DEFAULT ''", "''"),
    ("owner", "TEXT NOT NULL DEFAULT ''", "''"),
    ("shared", "INTEGER NOT NULL DEFAULT 0", "0"),
)
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
    group_name TEXT NOT NULL DEFAULT '',
    ended_by TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '',
    shared INTEGER NOT NULL DEFAULT 0
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
    for name, definition, _ in _ADDED_COLUMNS:
        if name not in present:
            conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {definition}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def needs_upgrade(conn: sqlite3.Connection) -> bool:
    if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION or not has_runs_table(conn):
        return True
    present = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    return any(name not in present for name, _, _ in _ADDED_COLUMNS)


def has_runs_table(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'runs'").fetchone() is not None


def readable_runs(conn: sqlite3.Connection) -> str:
    """What a read says after FROM to see every current column: `runs` itself, or, for a store an older
    lab made and nobody has written since, a view of it with the missing columns at their defaults
    (reading must not upgrade it: the store may be read-only, full or locked)."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    missing = [f"{value} AS {name}" for name, _, value in _ADDED_COLUMNS if name not in present]
    return f"(SELECT *, {', '.join(missing)} FROM runs) AS runs" if missing else "runs"
