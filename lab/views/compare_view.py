"""A comparison group as tables: one row per method, and the per-label F1 of each side by side. The runs
are lab.runs.records.RunRecord rows of one group (see lab.groups.compare)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import pandas as pd

from lab.groups.compare import by_method
from lab.training.metrics import is_average_row, primary_metric_name
from lab.views.run_view import RunView

ROW_COLUMNS = [
    "method",
    "status",
    "test",
    "best validation",
    "trainable",
    "trainable share",
    "train seconds",
    "peak memory MB",
    "run",
]


def comparison_rows(records: Sequence[Any], views: Optional[dict[str, RunView]] = None) -> pd.DataFrame:
    """One row per method: status, held-out test metric, best validation metric, trainable parameters
    and their share, training time and peak memory. Numbers stay numbers (None until the run ends)."""
    views = views or {}
    rows = []
    for run in by_method(records):
        metric, summary, view = primary_metric_name(run.task), run.summary, views.get(run.id)
        trainable, total = summary.get("trainable_params"), summary.get("total_params")
        best = None
        if view is not None and metric in view.evaluations and not view.evaluations.empty:
            best = float(view.evaluations[metric].max())
        rows.append(
            {
                "method": run.peft_method,
                "status": run.status,
                "test": run.metrics.get(metric),
                "best validation": best,
                "trainable": trainable,
                "trainable share": trainable / total if trainable and total else None,
                "train seconds": summary.get("wall_seconds"),
                "peak memory MB": summary.get("peak_memory_mb"),
                "run": run.id,
            }
        )
    return pd.DataFrame(rows, columns=ROW_COLUMNS)


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
