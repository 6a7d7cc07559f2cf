"""Assignments: a teacher publishes a run config (a dataset, a model, a budget) and says which settings
students may change; a student's run is that config with their changes, checked against the list and
the budget. The runs of an assignment form one group in the run store, `assignment NAME`, which the
class board shows. An assignment is a YAML file in `<runs dir>/assignments/`. A closed assignment takes
no new runs; its board stays (publishing it again opens it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.config import RunConfig
from lab.errors import LabError
from lab.runs.records import clean_name, slugify

ASSIGNMENTS_FOLDER = "assignments"
GROUP_PREFIX = "assignment "
# What an assignment may let students change: the experiment's settings, each with a label on the page (not the
# data files, the model's code, the devices or the trackers).
STUDENT_SETTINGS = (
    *("peft.method", "peft.r", "peft.alpha", "peft.lora_dropout", "peft.target_modules", "peft.bottleneck"),
    *("peft.adapter_layout", "peft.adapter_nonlinearity", "peft.num_virtual_tokens", "peft.adalora_init_r"),
    *("train.learning_rate", "train.head_learning_rate", "train.lr_scheduler", "train.warmup_ratio"),
    *("train.optimizer", "train.weight_decay", "train.epochs", "train.max_steps", "train.train_batch_size"),
    *("train.gradient_accumulation_steps", "train.max_length", "train.early_stopping_patience", "train.seed"),
    *("model.dropout", "model.pooling", "data.train_subset"),
)


@dataclass
class Assignment:
    name: str
    config: RunConfig  # what every student starts from
    allowed: list[str] = field(default_factory=list)  # config keys a student may change (`train.learning_rate`)
    max_steps: int = 0  # the budget: no student's run trains longer (0: the config's own)
    teacher: str = ""
    closed: bool = False  # no new runs; the board and its results stay

    @property
    def group(self) -> str:
        return GROUP_PREFIX + self.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "config": self.config.to_dict(),
            "allowed": self.allowed,
            "max_steps": self.max_steps,
            "teacher": self.teacher,
            "closed": self.closed,
        }


def _path(runs_dir: Path, name: str) -> Path:
    slug = slugify(name)
    if not slug:
        raise LabError(f"{name!r} cannot name an assignment: use letters or digits.")
    return Path(runs_dir) / ASSIGNMENTS_FOLDER / f"{slug}.yaml"


def publish(runs_dir: Path, assignment: Assignment) -> Assignment:
    """Check and keep an assignment (a new one, or a new version of one of that name)."""
    assignment.name = clean_name(assignment.name)
    keys = set(assignment.config.flat())
    unknown = [key for key in assignment.allowed if key not in keys]
    if unknown:
        raise LabError(f"{', '.join(unknown)} is not a config key; `python -m lab config` lists them.")
    fixed = [key for key in assignment.allowed if key not in STUDENT_SETTINGS]
    if fixed:
        raise LabError(
            f"Students may not be allowed to change {', '.join(fixed)}; allow any of {', '.join(STUDENT_SETTINGS)}."
        )
    if assignment.max_steps < 0:
        raise LabError("The budget (max_steps) must be 0 or more.")
    assignment.config.validate()
    _write(runs_dir, assignment)
    return assignment


def close(runs_dir: Path, name: str) -> Assignment:
    """Take no new runs on the assignment; its board and results stay."""
    assignment = load(runs_dir, name)
    assignment.closed = True
    _write(runs_dir, assignment)
    return assignment


def _write(runs_dir: Path, assignment: Assignment) -> None:
    path = _path(runs_dir, assignment.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(assignment.to_dict(), sort_keys=False, allow_unicode=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)  # a board reading meanwhile sees the old file or the new one, never half


def assignments(runs_dir: Path) -> list[Assignment]:
    """The published assignments, newest first."""
    folder = Path(runs_dir) / ASSIGNMENTS_FOLDER
    paths = (
        sorted(folder.glob("*.yaml"), key=lambda path: path.stat().st_mtime, reverse=True) if folder.is_dir() else []
    )
    return [_read(path) for path in paths]


def load(runs_dir: Path, name: str) -> Assignment:
    path = _path(runs_dir, name)
    if not path.is_file():
        raise LabError(f"No assignment {name!r}; the class board lists them.")
    return _read(path)


def _read(path: Path) -> Assignment:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return Assignment(
        name=str(data["name"]),
        config=RunConfig.from_dict(data["config"]),
        allowed=[str(key) for key in data.get("allowed", [])],
        max_steps=int(data.get("max_steps", 0)),
        teacher=str(data.get("teacher", "")),
        closed=bool(data.get("closed", False)),
    )


def student_config(assignment: Assignment, changes: dict[str, str], student: str) -> RunConfig:
    """The assignment's config with a student's changes; a change the teacher did not allow, or a run
    longer than the budget, is refused in one line; so is any run once the assignment is closed."""
    if assignment.closed:
        raise LabError(
            f"The assignment {assignment.name!r} is closed: it takes no new runs.",
            code="assignment_closed",
            name=assignment.name,
        )
    refused = [key for key in changes if key not in assignment.allowed]
    if refused:
        raise LabError(
            f"This assignment does not let you change {', '.join(refused)}; you may change "
            f"{', '.join(assignment.allowed) or 'nothing'}.",
            code="assignment_fixed",
            keys=", ".join(refused),
        )
    config = assignment.config.with_overrides([f"{key}={value}" for key, value in changes.items()])
    config.name = clean_name(f"{assignment.name} · {student}")
    if assignment.max_steps and not 0 < config.train.max_steps <= assignment.max_steps:
        config.train.max_steps = assignment.max_steps
    return config.validate()
