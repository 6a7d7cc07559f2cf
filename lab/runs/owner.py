"""Who owns a run, and whether that owner is still alive.

An owner is named by where it runs (the machine's id, the kernel's boot id, its PID namespace) and by
its process (pid and start time), not by hostname and pid: two containers share a hostname, and a pid
is reused after a reboot or in another namespace. A reader that shares the owner's machine, boot and
PID namespace looks at the process itself; any other reader trusts the owner's heartbeat, whose age is
measured by the store's clock (`age_seconds` below), never by comparing two processes' clocks.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

# A heartbeat older than this marks a run interrupted when its owner cannot be checked directly
# (another namespace, another boot, no /proc). Owners beat every HEARTBEAT_SECONDS, far more often.
HEARTBEAT_SECONDS = 10.0
STALE_AFTER_SECONDS = 300.0

# Seconds since 1970 by SQLite's clock, evaluated inside the statement that writes or reads it, so a
# heartbeat and the moment it is judged come from the same clock rather than two processes' time.time().
STORE_NOW_SQL = "((julianday('now') - 2440587.5) * 86400.0)"

_MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")
_IDENTITY_PREFIX = "v2"


def _read_first_line(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


@lru_cache(maxsize=1)
def host_id() -> str:
    """This machine's id (systemd's machine-id), or its hostname where there is none."""
    for path in _MACHINE_ID_FILES:
        if value := _read_first_line(path):
            return value
    return socket.gethostname()


def boot_id() -> str:
    return _read_first_line("/proc/sys/kernel/random/boot_id")


def pid_namespace() -> str:
    """The inode of this process's PID namespace ('pid:[4026531836]' -> '4026531836'), '' where unknown."""
    try:
        return os.readlink("/proc/self/ns/pid").partition("[")[2].rstrip("]")
    except OSError:
        return ""


def start_ticks(pid: int) -> Optional[str]:
    """When a live process started (clock ticks since boot, from /proc/PID/stat): '' where that cannot be
    read, None if the process is gone. A zombie counts as gone: it will never write again."""
    if os.name == "nt":
        return ""  # os.kill(pid, 0) would terminate the process on Windows: rely on heartbeats there
    if not Path("/proc/self/stat").exists():  # no procfs (macOS): a bare liveness check
        return "" if _pid_alive(pid) else None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) ": state is field 3, start time 22
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def process_identity(pid: int) -> Optional[str]:
    """The identity of a process of this machine, boot and PID namespace; '' where its start time cannot
    be read, None if it is gone."""
    ticks = start_ticks(pid)
    if ticks is None:
        return None
    if not ticks:
        return ""
    return "/".join((_IDENTITY_PREFIX, host_id(), boot_id(), pid_namespace(), str(pid), ticks))


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Owner:
    host: str  # the hostname, for messages people read
    pid: int
    identity: str  # process_identity(pid) when the owner claimed the run; older labs wrote 'boot:ticks'

    @classmethod
    def current(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), process_identity(os.getpid()) or "")

    def _place(self) -> Optional[tuple[str, str, str]]:
        """(machine, boot, PID namespace) of an identity this lab wrote, None for an older one."""
        parts = self.identity.split("/")
        if len(parts) != 6 or parts[0] != _IDENTITY_PREFIX:
            return None
        return parts[1], parts[2], parts[3]

    def is_dead(self, heartbeat_age: Optional[float]) -> bool:
        """`heartbeat_age`: seconds since the owner's last heartbeat by the store's clock (None: never beat)."""
        stale = heartbeat_age is None or heartbeat_age > STALE_AFTER_SECONDS
        place = self._place()
        if place is None or os.name == "nt" or not all(place):
            return stale  # an identity that cannot be compared: trust the heartbeat only
        machine, boot, namespace = place
        if machine != host_id():
            return stale  # another machine's processes cannot be looked at
        if boot != boot_id():
            return True  # the machine rebooted since the owner claimed the run
        if namespace != pid_namespace():
            return stale  # its pid means another process here
        identity = process_identity(self.pid)
        if identity is None:
            return True
        return identity != self.identity if identity else stale
