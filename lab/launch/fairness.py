"""A fair queue for a class on one server: whose run starts next, and how much one person may ask for.

The job runner starts queued runs round-robin across people: the next run is the first waiting run of
the person served least recently (never served counts as longest ago), so one student's tenth run
waits behind everyone's first. A teacher's runs go first (LAB_TEACHER_FIRST=0 turns that off). Each
person may have at most LAB_QUEUED_PER_PERSON runs waiting, LAB_RUNNING_PER_PERSON running, and runs
taking LAB_DISK_PER_PERSON_GB on disk; unset or 0 is no limit. A teacher's runs count against none.
With one person (accounts off) the queue is first in, first out, as before.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol

from lab.errors import ConfigError, LabError
from lab.runs.store import RunStore

QUEUED_ENV = "LAB_QUEUED_PER_PERSON"
RUNNING_ENV = "LAB_RUNNING_PER_PERSON"
DISK_ENV = "LAB_DISK_PER_PERSON_GB"
TEACHER_FIRST_ENV = "LAB_TEACHER_FIRST"


class QueuedJob(Protocol):
    owner: str
    first: bool  # a teacher's: goes first, counts against no quota


@dataclass(frozen=True)
class Quotas:
    """What one person may ask of the machine; 0 is no limit."""

    queued: int = 0  # runs waiting in the queue
    running: int = 0  # runs training at once (with several devices)
    disk_gb: float = 0.0  # the folders of their runs
    teacher_first: bool = True

    @classmethod
    def from_env(cls) -> Quotas:
        return cls(
            queued=int(_number(QUEUED_ENV)),
            running=int(_number(RUNNING_ENV)),
            disk_gb=_number(DISK_ENV),
            teacher_first=os.environ.get(TEACHER_FIRST_ENV, "1").strip() != "0",
        )


def _number(name: str) -> float:
    text = os.environ.get(name, "").strip()
    try:
        value = float(text or 0)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"{name} must be a number of at least 0 (0: no limit), got {text!r}.")
    return value


def next_in_line(
    queue: Sequence[QueuedJob], running: Mapping[str, int], last_served: Mapping[str, int], quotas: Quotas
) -> Optional[int]:
    """The index in `queue` (arrival order) of the job to start next, or None when every waiting person is
    at their limit of running jobs. `running` counts each person's running jobs, `last_served` says when
    each was last served (a counter that grows with every start)."""
    heads: dict[str, int] = {}  # each person's first waiting job
    for index, job in enumerate(queue):
        limited = quotas.running and not job.first and running.get(job.owner, 0) >= quotas.running
        if job.owner not in heads and not limited:
            heads[job.owner] = index
    if not heads:
        return None

    def turn(index: int) -> tuple[bool, int, int]:
        job = queue[index]
        return (not (job.first and quotas.teacher_first), last_served.get(job.owner, -1), index)

    return min(heads.values(), key=turn)


def refuse_over_quota(store: RunStore, owner: str, waiting: int, quotas: Quotas) -> None:
    """One line, before a run is recorded, when `owner` may not queue another run."""
    if quotas.queued and waiting >= quotas.queued:
        raise LabError(
            f"You have {waiting} run{'' if waiting == 1 else 's'} waiting, the most one person may queue "
            f"({QUEUED_ENV} = {quotas.queued}): "
            "cancel one, or wait for one to start.",
            code="queue_person_full",
            waiting=waiting,
            setting=QUEUED_ENV,
            limit=quotas.queued,
        )
    if quotas.disk_gb:
        used = disk_used(store, owner) / 1e9
        if used >= quotas.disk_gb:
            raise LabError(
                f"Your runs take {used:.2f} GB on disk, the most one person may use ({DISK_ENV} = {quotas.disk_gb:g}): "
                "delete a run you no longer need.",
                code="disk_person_full",
                used=f"{used:.2f}",
                setting=DISK_ENV,
                limit=f"{quotas.disk_gb:g}",
            )


def disk_used(store: RunStore, owner: str) -> int:
    """Bytes in the folders (and --output folders) of the owner's runs."""
    total = 0
    for run in store.list_runs():
        if run.owner == owner:
            for folder in {store.run_dir(run.id), store.output_dir(run)}:
                total += _folder_bytes(folder)
    return total


def _folder_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass  # removed meanwhile
    return total
