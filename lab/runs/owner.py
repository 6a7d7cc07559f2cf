"""Whether the process that owns a run is still alive: its host, pid, process start time and heartbeat."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

# A heartbeat older than this marks a run interrupted when its owner cannot be checked directly
# (another host, or no /proc). Owners beat every HEARTBEAT_SECONDS, far more often than this.
HEARTBEAT_SECONDS = 10.0
STALE_AFTER_SECONDS = 300.0


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_identity(pid: int) -> Optional[str]:
    """`boot:start-ticks` of a live process on Linux, '' where that cannot be read, None if it is gone.

    Comparing identities, not bare pids, tells a dead owner from an unrelated process that reused its
    pid (after a reboot or a pid wrap-around). A zombie counts as gone: it will never write again.
    """
    if os.name == "nt":
        return ""  # os.kill(pid, 0) would terminate the process on Windows: rely on heartbeats there
    if not Path("/proc/self/stat").exists():  # no procfs (macOS): a bare liveness check
        return "" if _pid_alive(pid) else None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": state is field 3, start time 22
    if fields[0] in ("Z", "X"):
        return None
    return f"{_boot_id()}:{fields[19]}"


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
    host: str
    pid: int
    identity: str

    @classmethod
    def current(cls) -> "Owner":
        return cls(socket.gethostname(), os.getpid(), process_identity(os.getpid()) or "")

    def is_dead(self, heartbeat_at: Optional[float], now: float) -> bool:
        stale = heartbeat_at is None or now - heartbeat_at > STALE_AFTER_SECONDS
        if self.host != socket.gethostname() or os.name == "nt":
            return stale  # cannot look at another machine's processes: trust the heartbeat only
        identity = process_identity(self.pid)
        if identity is None:
            return True
        if identity and self.identity:
            return identity != self.identity
        return stale
