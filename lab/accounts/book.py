"""The accounts of a class on one server: who may log in, with which role, and their sessions.

They live beside the run store, in `accounts.db` of the runs directory (SQLite, readable only by the
lab's user). Passwords are kept only as argon2 hashes; no password, hash or session token is ever
logged. A session is a random token the browser keeps; the book stores only its SHA-256, so a copy of
the file opens no session. Failed logins are counted per name and per client address in the file, so
every server process and tab shares the limits.

With no account in the book (or no book at all) accounts are off: the lab is one person's, as before.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from lab.errors import LabError
from lab.runs.records import ROLES, TEACHER, Viewer

BOOK_NAME = "accounts.db"
SESSION_SECONDS = 12 * 3600  # a school day: a reload the next morning asks again
MIN_PASSWORD_LENGTH = 8
# Failed logins for one name: after this many within the window, the name must wait out the window.
MAX_FAILED_LOGINS = 5
FAILED_LOGIN_WINDOW_SECONDS = 300.0
# Failed logins from one client address, whatever the names: one machine trying many names waits too.
# Generous, since a class behind one school router or SSH tunnel shares an address.
MAX_FAILED_LOGINS_PER_ADDRESS = 20
_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL,"
    " created_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sessions (token_sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, expires_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS failed_logins (name TEXT NOT NULL, at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS failed_login_addresses (address TEXT NOT NULL, at REAL NOT NULL)",
)


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    created_at: float

    @property
    def viewer(self) -> Viewer:
        return Viewer(self.name, self.role)


class LoginRefused(LabError):
    """A wrong name or password (one message for both), or too many tries."""


def check_name(name: str) -> str:
    name = name.strip().lower()
    if not _NAME_PATTERN.match(name):
        raise LabError(
            f"{name!r} is not a user name: use 1 to 32 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise LabError(f"The password is too short: use at least {MIN_PASSWORD_LENGTH} characters.")
    return password


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AccountBook:
    """The accounts of one runs directory. Reading a book that does not exist creates nothing."""

    def __init__(self, runs_dir: str | Path) -> None:
        self.path = Path(runs_dir) / BOOK_NAME
        self._hasher = PasswordHasher()
        self._decoy_hash = ""

    # -- the file --
    @contextmanager
    def _open(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        if write and not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))  # never readable by others
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            if write:
                conn.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA:
                    conn.execute(statement)
            yield conn
            if write:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise LabError(f"The accounts file {self.path} cannot be used: {exc}.") from None
        finally:
            conn.close()

    def _read(self, sql: str, values: tuple = ()) -> list[tuple]:
        if not self.path.exists():
            return []
        with self._open() as conn:
            if not conn.execute("SELECT 1 FROM sqlite_schema WHERE name = 'users'").fetchone():
                return []
            try:
                return conn.execute(sql, values).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):  # a book written before that table existed
                    return []
                raise

    # -- accounts --
    def enabled(self) -> bool:
        """Whether accounts are on: at least one account exists."""
        return bool(self._read("SELECT 1 FROM users LIMIT 1"))

    def accounts(self) -> list[Account]:
        return [Account(*row) for row in self._read("SELECT name, role, created_at FROM users ORDER BY name")]

    def get(self, name: str) -> Optional[Account]:
        rows = self._read("SELECT name, role, created_at FROM users WHERE name = ?", (name.strip().lower(),))
        return Account(*rows[0]) if rows else None

    def account(self, name: str) -> Account:
        """The account of this name, or one line saying there is none."""
        found = self.get(name)
        if found is None:
            raise LabError(f"No user {name!r}; `python -m lab users list` shows them, `users add` makes one.")
        return found

    def add(self, name: str, role: str, password: str) -> Account:
        name = check_name(name)
        if role not in ROLES:
            raise LabError(f"{role!r} is not a role: use {' or '.join(ROLES)}.")
        password_hash = self._hasher.hash(check_password(password))
        with self._open(write=True) as conn:
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise LabError(
                    f"User {name!r} exists already; `python -m lab users passwd {name}` changes the password."
                )
            conn.execute("INSERT INTO users VALUES (?, ?, ?, ?)", (name, role, password_hash, time.time()))
        return self.account(name)

    def remove(self, name: str) -> None:
        """Remove the account and its sessions (its runs stay, the teacher's to see)."""
        account = self.account(name)
        with self._open(write=True) as conn:
            conn.execute("DELETE FROM users WHERE name = ?", (account.name,))
            conn.execute("DELETE FROM sessions WHERE name = ?", (account.name,))

    def set_password(self, name: str, password: str) -> None:
        """A new password; every open session of the account ends."""
        account = self.account(name)
        password_hash = self._hasher.hash(check_password(password))
        with self._open(write=True) as conn:
            conn.execute("UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, account.name))
            conn.execute("DELETE FROM sessions WHERE name = ?", (account.name,))
            conn.execute("DELETE FROM failed_logins WHERE name = ?", (account.name,))

    # -- logging in --
    def log_in(self, name: str, password: str, address: str = "") -> str:
        """A new session token for a right name and password; raises LoginRefused otherwise, or when the name,
        or the client `address` ('' for none, as from the CLI), had too many failed tries lately (then
        without even checking the password)."""
        name, now = name.strip().lower(), time.time()
        self._refuse_while_waiting(name, address, now)
        rows = self._read("SELECT password_hash FROM users WHERE name = ?", (name,))
        if not rows and not self._decoy_hash:
            # Checked instead when a name is unknown, so an unknown name takes as long as a wrong password.
            self._decoy_hash = self._hasher.hash(secrets.token_hex(16))
        try:
            self._hasher.verify(rows[0][0] if rows else self._decoy_hash, password)
            right = bool(rows)
        except (VerificationError, InvalidHashError):
            right = False
        token = secrets.token_urlsafe(32)
        with self._open(write=True) as conn:
            if not right:
                conn.execute("INSERT INTO failed_logins VALUES (?, ?)", (name, now))
                if address:
                    conn.execute("INSERT INTO failed_login_addresses VALUES (?, ?)", (address, now))
            else:
                conn.execute("DELETE FROM failed_logins WHERE name = ?", (name,))
                conn.execute("DELETE FROM failed_login_addresses WHERE at < ?", (now - FAILED_LOGIN_WINDOW_SECONDS,))
                conn.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
                conn.execute("INSERT INTO sessions VALUES (?, ?, ?)", (_sha256(token), name, now + SESSION_SECONDS))
        if not right:
            raise LoginRefused("Wrong user name or password.", code="login_wrong")
        return token

    def _refuse_while_waiting(self, name: str, address: str, now: float) -> None:
        wait = self._wait("SELECT at FROM failed_logins WHERE name = ? AND at > ?", name, MAX_FAILED_LOGINS, now)
        if wait > 0:
            raise LoginRefused(
                f"Too many failed logins for {name!r}: try again in {wait:.0f} s.",
                code="login_wait",
                seconds=round(wait),
            )
        if not address:
            return
        wait = self._wait(
            "SELECT at FROM failed_login_addresses WHERE address = ? AND at > ?",
            address,
            MAX_FAILED_LOGINS_PER_ADDRESS,
            now,
        )
        if wait > 0:
            # A successful login does not clear this count: trying many names is what it slows.
            raise LoginRefused(
                f"Too many failed logins from your address: try again in {wait:.0f} s.",
                code="login_wait_address",
                seconds=round(wait),
            )

    def _wait(self, sql: str, key: str, most: int, now: float) -> float:
        """Seconds until `key` may try again: 0 unless it failed `most` times within the window."""
        times = sorted(row[0] for row in self._read(sql, (key, now - FAILED_LOGIN_WINDOW_SECONDS)))
        if len(times) < most:
            return 0.0
        return times[-most] + FAILED_LOGIN_WINDOW_SECONDS - now

    def session(self, token: str) -> Optional[Account]:
        """The account a session token belongs to, while the session lasts and the account exists."""
        if not token:
            return None
        rows = self._read(
            "SELECT users.name, users.role, users.created_at FROM sessions JOIN users ON users.name = sessions.name"
            " WHERE token_sha256 = ? AND expires_at > ?",
            (_sha256(token), time.time()),
        )
        return Account(*rows[0]) if rows else None

    def log_out(self, token: str) -> None:
        if token and self.path.exists():
            with self._open(write=True) as conn:
                conn.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_sha256(token),))


def cli_viewer(book: AccountBook, name: Optional[str]) -> Optional[Viewer]:
    """Who a CLI command acts as: the named account (`--as NAME`), else the machine's owner, the teacher
    (None: every run). Naming an account while accounts are off is a mistake worth one line."""
    if not name:
        return None
    return book.account(name).viewer


__all__ = ["TEACHER", "Account", "AccountBook", "LoginRefused", "cli_viewer"]
