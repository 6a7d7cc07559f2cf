"""What a run is to its readers: the `RunRecord` row, its statuses, and how run ids are made and checked."""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Optional

from lab.errors import LabError

ACTIVE_STATUSES = ("queued", "running")
# pruned: a sweep's trial its pruner stopped early (lab.groups.sweep).
FINAL_STATUSES = ("completed", "failed", "cancelled", "interrupted", "pruned")

# Ids are made by `new_run_id`; references typed by users must look like one before any path use.
_RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass
class RunRecord:
    """One row of the runs index, as readers see it."""

    id: str
    name: str
    task: str
    dataset: str
    model: str
    peft_method: str
    executor: str
    num_devices: int
    status: str
    message: str
    traceback: str
    created_at: float
    started_at: Optional[float]
    finished_at: Optional[float]
    metrics: dict[str, Any] = field(default_factory=dict)
    per_label: list[dict[str, Any]] = field(default_factory=list)
    # trainable_params, total_params, wall_seconds, peak_memory_mb, output_dir of the final result.
    summary: dict[str, Any] = field(default_factory=dict)
    owner_host: str = ""
    owner_pid: int = 0
    owner_identity: str = ""
    heartbeat_at: Optional[float] = None
    cancel_requested: bool = False
    resume_from: str = ""
    attempt: int = 1
    # Where the engine writes checkpoints, model and report: '' means the run's folder (CLI --output sets it).
    output_dir: str = ""
    group_name: str = ""  # the comparison or sweep the run belongs to; '' for a run of its own
    ended_by: str = ""  # identity of the process that wrote the final status
    owner: str = ""  # the account the run belongs to; '' before accounts existed, or the CLI as the teacher
    shared: bool = False  # a teacher shared it with the class: every account may see it

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


TEACHER, STUDENT = "teacher", "student"
ROLES = (TEACHER, STUDENT)


@dataclass(frozen=True)
class Viewer:
    """Who is looking at the store: a teacher sees and acts on every run, a student on their own runs and
    on those a teacher shared (which they may see and follow, not change)."""

    name: str
    role: str = STUDENT

    @property
    def is_teacher(self) -> bool:
        return self.role == TEACHER

    def may_see(self, run: RunRecord) -> bool:
        return self.is_teacher or run.owner == self.name or run.shared

    def may_change(self, run: RunRecord) -> bool:
        return self.is_teacher or run.owner == self.name

    def visible_sql(self) -> tuple[str, tuple[Any, ...]]:
        """A WHERE condition (and its values) that keeps the runs this viewer may see."""
        return ("1", ()) if self.is_teacher else ("(owner = ? OR shared = 1)", (self.name,))


def slugify(text: str, max_length: int = 40) -> str:
    """Lower-case ASCII letters, digits, '_' and '-' only: safe as one path component on any system."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", text.lower())
    slug = re.sub(r"-{2,}", "-", slug).strip("-_")
    return slug[:max_length].strip("-_")


def clean_name(name: str) -> str:
    """The display name: printable, one line, at most 100 characters."""
    return "".join(ch for ch in name if ch.isprintable()).strip()[:100]


# Invisible characters that reorder what a terminal shows (the "Trojan Source" overrides and isolates).
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def inert(text: object, multiline: bool = False) -> str:
    """Text a terminal prints literally: control characters (escape sequences, carriage returns, bells) and
    bidirectional overrides removed. One line unless `multiline` (then newlines and tabs stay)."""
    kept = []
    for ch in str(text):
        if multiline and ch in "\n\t":
            kept.append(ch)
        elif ch in "\n\r\t":
            kept.append(" ")
        elif unicodedata.category(ch) != "Cc" and ch not in _BIDI_CONTROLS:
            kept.append(ch)
    return "".join(kept)


def new_run_id(name: str, task: str) -> str:
    """Sortable by creation time, readable, unique: `20250314-101502-my-run-3fa2`."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{slugify(name) or slugify(task) or 'run'}-{secrets.token_hex(2)}"


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID_PATTERN.match(run_id) or ".." in run_id:
        raise LabError(f"{run_id!r} is not a run id; `python -m lab runs` lists the runs.")
    return run_id


def record_from_row(row: sqlite3.Row) -> RunRecord:
    data = dict(row)
    for key in ("metrics", "per_label", "summary"):
        data[key] = json.loads(data[key])
    data["cancel_requested"] = bool(data["cancel_requested"])
    data["shared"] = bool(data["shared"])
    return RunRecord(**data)
