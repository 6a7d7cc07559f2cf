"""The class board of an assignment: every student's runs on it, ranked by the held-out metric, with the
settings each one changed, for a leaderboard and one plot of the class's results."""

from __future__ import annotations

from typing import Any

import pandas as pd

from lab.accounts.assignments import Assignment
from lab.methods.registry import METHODS
from lab.runs.store import RunStore
from lab.training.metrics import primary_metric_name


def board_frame(store: RunStore, assignment: Assignment) -> pd.DataFrame:
    """One row per run of the assignment (read by an unscoped store: the board is the class's), best
    first: student, status, method, each setting students may change, and the test metric."""
    metric = primary_metric_name(assignment.config.task)
    rows: list[dict[str, Any]] = []
    for run in store.seen_by(None).list_runs(group=assignment.group):
        try:
            settings = store.seen_by(None).load_config(run.id).flat()
        except Exception:  # noqa: BLE001 - a run whose config went missing still shows its score
            settings = {}
        row: dict[str, Any] = {
            "student": run.owner or assignment.teacher,
            "status": run.status,
            "method": run.peft_method,
        }
        row.update({key: _setting(settings, key, run.peft_method) for key in assignment.allowed})
        row[metric] = run.metrics.get(metric)
        row["run"] = run.id
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["student", "status", "method", *assignment.allowed, metric, "run"])
    ranked = frame.sort_values(metric, ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    ranked.index += 1  # the place on the leaderboard
    return ranked


def _setting(settings: dict[str, Any], key: str, method: str) -> Any:
    """A run's value of `key`; blank where its method never reads it (a full fine-tuning run has no rank)."""
    section, _, name = key.partition(".")
    spec = METHODS.get(method)
    if section == "peft" and name != "method" and spec is not None and name not in spec.settings:
        return None
    return settings.get(key)
