"""Opening the run store's SQLite file, and what to tell a person when it cannot be used.

Reading never writes: a read-only folder opens with `mode=ro` (or `immutable=1` when SQLite would need
to create its shared-memory file there), and a store that does not exist yet reads as empty. Every
SQLite error a user can meet (locked, full, damaged, read-only) becomes one `StoreUnavailable` line.
The store is copied with SQLite's online backup API at most once per `BACKUP_EVERY_SECONDS`, on
writes, keeping the two newest copies (`lab.db.backup`, `lab.db.backup.1`).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional, TypeVar
from urllib.parse import quote

from lab.errors import LabError
from lab.runs.schema import create_or_upgrade, has_runs_table, needs_upgrade, readable_runs

log = logging.getLogger(__name__)

BACKUP_EVERY_SECONDS = 600.0
BACKUP_SUFFIXES = (".backup", ".backup.1")  # newest first
# A backup is skipped when it would leave less free space than this beside its own size.
BACKUP_SPARE_BYTES = 64 * 2**20

_Method = TypeVar("_Method", bound=Callable[..., Any])
_FULL = ("SQLITE_FULL",)
_LOCKED = ("SQLITE_BUSY", "SQLITE_LOCKED")
_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
_DISK_FULL_WORDS = ("database or disk is full", "no space left on device")
_DAMAGED_WORDS = ("malformed", "not a database", "corrupt")


class StoreUnavailable(LabError):
    """The run store cannot be read or written right now; `reason` is 'disk full', 'locked', 'damaged',
    'read-only' or 'error'."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(text)
        self.reason = reason


def is_disk_full(exc: BaseException) -> bool:
    """Whether an error (SQLite's, the OS's, or one a library wrapped) means the disk is full."""
    if isinstance(exc, StoreUnavailable):
        return exc.reason == "disk full"
    if isinstance(exc, OSError) and exc.errno == 28:  # ENOSPC
        return True
    if getattr(exc, "sqlite_errorname", "") in _FULL:
        return True
    text = str(exc).lower()
    return any(words in text for words in _DISK_FULL_WORDS) or "os error 28" in text


def folder_writable(folder: Path) -> bool:
    # access() says no for a read-only mount even to root, and for a folder without write permission.
    return os.access(folder, os.W_OK)


def connect(db_path: Path, timeout: float, read_only: bool) -> sqlite3.Connection:
    """A connection to the store; `read_only` opens it so that nothing on disk changes."""
    uri = "file:" + quote(str(db_path.resolve()))
    if not read_only:
        return _configured(sqlite3.connect(uri + "?mode=rwc", uri=True, timeout=timeout, isolation_level=None), timeout)
    conn = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=timeout, isolation_level=None)
    try:
        _configured(conn, timeout).execute("SELECT 1 FROM sqlite_schema LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        if getattr(exc, "sqlite_errorname", "") != "SQLITE_CANTOPEN":
            raise
    # A WAL store whose shared-memory file is gone cannot be opened read-only in a folder nobody may
    # write; nobody can be writing it either, so reading the file as it stands is exact.
    return _configured(sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True, isolation_level=None), timeout)


def _configured(conn: sqlite3.Connection, timeout: float) -> sqlite3.Connection:
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    # NORMAL is durable against a crashed process in WAL mode; only a power cut can lose the last events.
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def explain(exc: sqlite3.Error, db_path: Path, waited: float) -> StoreUnavailable:
    """One line a person can act on for an SQLite error of the store at `db_path`."""
    name, text = getattr(exc, "sqlite_errorname", "") or "", str(exc)
    if name in _LOCKED or "locked" in text:
        return StoreUnavailable(
            f"The run store {db_path} is locked by another process (waited {waited:g} s); try again once it "
            f"is done (fuser {db_path} names it).",
            "locked",
        )
    if name in _FULL or is_disk_full(exc):
        return StoreUnavailable(
            f"The disk holding the run store {db_path} is full: free some space "
            f"(python -m lab delete RUN removes an old run and its folder).",
            "disk full",
        )
    if name in _DAMAGED or any(words in text for words in _DAMAGED_WORDS):
        return StoreUnavailable(
            f"The run store {db_path} is damaged ({text}; sqlite3 {db_path} 'PRAGMA integrity_check' lists what). "
            f"{_restore_advice(db_path)}",
            "damaged",
        )
    if name.startswith("SQLITE_READONLY") or "readonly" in text or "read-only" in text:
        return StoreUnavailable(
            f"The run store {db_path} is read-only here: listing and showing runs work, changing them needs "
            f"write access to {db_path.parent}.",
            "read-only",
        )
    return StoreUnavailable(f"The run store {db_path} cannot be used: {text}.", "error")


def _restore_advice(db_path: Path) -> str:
    backups = [db_path.with_name(db_path.name + suffix) for suffix in BACKUP_SUFFIXES]
    kept = [path for path in backups if path.is_file()]
    if not kept:
        return "The lab has no backup of it yet."
    newest = kept[0]
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(newest.stat().st_mtime))
    return (
        f"The lab's backup {newest} is from {when}: stop the lab, move {db_path.name} aside and copy the "
        f"backup to {db_path}."
    )


# ---- backups --------------------------------------------------------------------------------------
_backup_lock = threading.Lock()
_backing_up: set[Path] = set()


def backup_due(db_path: Path) -> bool:
    newest = db_path.with_name(db_path.name + BACKUP_SUFFIXES[0])
    try:
        return time.time() - newest.stat().st_mtime >= BACKUP_EVERY_SECONDS
    except OSError:
        return True


def start_backup(db_path: Path) -> None:
    """Back the store up in a background thread, unless this process is already doing it."""
    with _backup_lock:
        if db_path in _backing_up:
            return
        _backing_up.add(db_path)

    def work() -> None:
        try:
            backup(db_path)
        except Exception as exc:  # noqa: BLE001 - a missed backup must never fail a write
            log.warning("Could not back up the run store %s: %s", db_path, exc)
        finally:
            with _backup_lock:
                _backing_up.discard(db_path)

    threading.Thread(target=work, name="lab-store-backup", daemon=True).start()


def backup(db_path: Path) -> Optional[Path]:
    """Copy the store with SQLite's online backup API; keep the copy only if it passes `quick_check`.
    Returns the new backup, or None when there was no room for it."""
    size = db_path.stat().st_size
    if shutil.disk_usage(db_path.parent).free < 2 * size + BACKUP_SPARE_BYTES:
        return None  # a backup must not be what fills the disk
    newest, older = (db_path.with_name(db_path.name + suffix) for suffix in BACKUP_SUFFIXES)
    partial = db_path.with_name(f"{db_path.name}.backup-{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        source = sqlite3.connect(f"file:{quote(str(db_path.resolve()))}?mode=ro", uri=True, timeout=30)
        target = sqlite3.connect(partial)
        try:
            source.backup(target)
            verdict = target.execute("PRAGMA quick_check").fetchone()[0]
            target.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        finally:
            target.close()
            source.close()
        if verdict != "ok":
            log.warning("Not keeping a backup of %s: quick_check says %s", db_path, verdict)
            return None
        if newest.exists():
            os.replace(newest, older)
        os.replace(partial, newest)
        return newest
    finally:
        partial.unlink(missing_ok=True)


# ---- one handle on the store's file -----------------------------------------------------------------
def one_line_errors(method: _Method) -> _Method:
    """SQLite's errors out of a store method become one `StoreUnavailable` line a person can act on."""

    @functools.wraps(method)
    def guarded(self: StoreFile, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise explain(exc, self.db_path, self.busy_timeout) from exc

    return guarded  # type: ignore[return-value]


class StoreFile:
    """The store's SQLite file for one handle: a connection per thread (and per forked process) for reads
    that never write, the write transaction, the schema made current before the first write, backups."""

    def __init__(self, runs_dir: Path, db_name: str, busy_timeout: float) -> None:
        self.runs_dir = runs_dir
        if not self.runs_dir.is_dir():
            try:
                self.runs_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LabError(f"Cannot create the runs directory {self.runs_dir}: {exc}") from None
        self.db_path = self.runs_dir / db_name
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._schema_checked = False  # this handle made sure the schema is current before its first write

    @property
    def read_only(self) -> bool:
        """Whether this process may not write the runs directory (a read-only mount or folder)."""
        return not folder_writable(self.runs_dir)

    @property
    def _conn(self) -> sqlite3.Connection:
        """This thread's connection for reading: never creates, upgrades or otherwise writes the store."""
        local = self._local
        reusable = getattr(local, "conn", None) is not None and local.pid == os.getpid()
        if reusable and (local.kind != "empty" or not self.db_path.exists()):
            return local.conn
        self.close()  # none yet, or reads saw no store and one exists now
        if not self.db_path.exists():
            return self._use(_empty_store(), "empty")
        kind = "read-only" if self.read_only else "file"
        try:
            conn = connect(self.db_path, self.busy_timeout, read_only=kind == "read-only")
            conn.execute("SELECT 1 FROM sqlite_schema LIMIT 1").fetchall()
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            # No room for SQLite's shared-memory file: read the store as it stands on disk.
            conn, kind = connect(self.db_path, self.busy_timeout, read_only=True), "read-only"
        if not has_runs_table(conn):
            conn.close()
            return self._use(_empty_store(), "empty")
        return self._use(conn, kind)

    def _use(self, conn: sqlite3.Connection, kind: str) -> sqlite3.Connection:
        self._local.conn, self._local.pid, self._local.kind = conn, os.getpid(), kind
        self._local.runs = readable_runs(conn)
        return conn

    @property
    def _runs(self) -> str:
        """The runs table as reads name it (a view with defaults on a store an older lab made)."""
        local = self._local
        if getattr(local, "conn", None) is None or local.pid != os.getpid():
            _ = self._conn  # opens this thread's connection, which reads what the table is
        # Otherwise the open one is kept: `self._conn.execute(f"... {self._runs}")` has already fetched it,
        # and reopening here (the store's file appeared meanwhile) would close it under that read.
        return local.runs

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self.check_writable()
        local = self._local
        if getattr(local, "conn", None) is None or local.pid != os.getpid() or local.kind != "file":
            self.close()
            self._use(connect(self.db_path, self.busy_timeout, read_only=False), "file")
        conn = local.conn
        if not self._schema_checked:
            self._make_schema_current(conn)
        # IMMEDIATE takes the write lock up front, so the busy timeout applies instead of a
        # deadlock error when two readers both try to upgrade to writers.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # SQLite rolled back by itself (a full disk)
            raise
        if backup_due(self.db_path):
            start_backup(self.db_path)

    def _make_schema_current(self, conn: sqlite3.Connection) -> None:
        if needs_upgrade(conn):
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise LabError(
                    f"The run store {self.db_path} cannot use WAL mode (got {mode}); "
                    "put the runs directory on a local disk."
                )
            conn.execute("BEGIN IMMEDIATE")
            try:
                create_or_upgrade(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._local.runs = readable_runs(conn)
        self._schema_checked = True

    def check_writable(self) -> None:
        if self.read_only:
            raise explain(sqlite3.OperationalError("readonly"), self.db_path, self.busy_timeout)

    @one_line_errors
    def backup_now(self) -> Optional[Path]:
        """Back the store up now (the lab also does it on writes, at most once per
        `BACKUP_EVERY_SECONDS`); returns the backup's path, None when there was no room."""
        return backup(self.db_path)


def _empty_store() -> sqlite3.Connection:
    """What reads see before the store's file exists: the schema, no runs."""
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    create_or_upgrade(conn)
    return conn
