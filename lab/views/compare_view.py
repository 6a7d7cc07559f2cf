"""A comparison group as tables: one row per method, and the per-label F1 of each side by side. The runs
are lab.runs.records.RunRecord rows of one group (see lab.groups.compare)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import pandas as pd

from lab.groups.compare import by_method, comparison_table
from lab.training.metrics import is_average_row, primary_metric_name
from lab.views.run_view import RunView


def comparison_rows(records: Sequence[Any], views: Optional[dict[str, RunView]] = None) -> pd.DataFrame:
    """lab.groups.compare.comparison_table, with each run's best validation metric read from its folded
    events (`views`, by run id)."""
    best = {}
    for run in records:
        view, metric = (views or {}).get(run.id), primary_metric_name(run.task)
        if view is not None and metric in view.evaluations and not view.evaluations.empty:
            best[run.id] = float(view.evaluations[metric].max())
    return comparison_table(records, best)


def per_label_f1(records: Sequence[Any]) -> pd.DataFrame:
    """Test F1 per label (rows) and method (columns), the macro average last; methods without a result
    yet are left out."""
    columns = {}
    for run in by_method(records):
        if run.per_label:
            columns[run.peft_method] = {
                row["label"]: row["f1"]
                for row in run.per_label
                if not is_average_row(row["label"]) or row["label"] == "macro avg"
            }
    frame = pd.DataFrame(columns)
    if "macro avg" in frame.index:
        frame = pd.concat([frame.drop(index="macro avg"), frame.loc[["macro avg"]]])
    return frame


def finished_count(records: Sequence[Any]) -> int:
    return sum(not run.is_active for run in records)
