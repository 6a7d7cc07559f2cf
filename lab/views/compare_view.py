"""A comparison group as tables: one row per method, the per-label F1 of each side by side, and a text table
for the terminal. The runs are lab.runs.store.RunRecord rows of one group (see lab.runs.compare)."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import pandas as pd

from lab.config import PEFT_METHODS
from lab.training.metrics import primary_metric_name
from lab.views.formatting import format_duration
from lab.views.run_view import RunView, is_average_row

ROW_COLUMNS = ["method", "status", "test", "best validation", "trainable", "trainable share", "train seconds",
               "peak memory MB", "run"]


def _method_order(records: Sequence[Any]) -> list[Any]:
    """PEFT_METHODS order (full first), then the newest run of each method when one was run twice."""
    by_method: dict[str, Any] = {}
    for run in sorted(records, key=lambda run: run.created_at):
        by_method[run.peft_method] = run
    return [by_method[method] for method in PEFT_METHODS if method in by_method]


def comparison_rows(records: Sequence[Any], views: Optional[dict[str, RunView]] = None) -> pd.DataFrame:
    """One row per method: status, held-out test metric, best validation metric, trainable parameters
    and their share, training time and peak memory. Numbers stay numbers (None until the run ends)."""
    views = views or {}
    rows = []
    for run in _method_order(records):
        metric, summary, view = primary_metric_name(run.task), run.summary, views.get(run.id)
        trainable, total = summary.get("trainable_params"), summary.get("total_params")
        best = None
        if view is not None and metric in view.evaluations and not view.evaluations.empty:
            best = float(view.evaluations[metric].max())
        rows.append({"method": run.peft_method, "status": run.status, "test": run.metrics.get(metric),
                     "best validation": best, "trainable": trainable,
                     "trainable share": trainable / total if trainable and total else None,
                     "train seconds": summary.get("wall_seconds"), "peak memory MB": summary.get("peak_memory_mb"),
                     "run": run.id})
    return pd.DataFrame(rows, columns=ROW_COLUMNS)


def per_label_f1(records: Sequence[Any]) -> pd.DataFrame:
    """Test F1 per label (rows) and method (columns), the macro average last; methods without a result
    yet are left out."""
    columns = {}
    for run in _method_order(records):
        if run.per_label:
            columns[run.peft_method] = {row["label"]: row["f1"] for row in run.per_label
                                        if not is_average_row(row["label"]) or row["label"] == "macro avg"}
    frame = pd.DataFrame(columns)
    if "macro avg" in frame.index:
        frame = pd.concat([frame.drop(index="macro avg"), frame.loc[["macro avg"]]])
    return frame


def finished_count(records: Sequence[Any]) -> int:
    return sum(not run.is_active for run in records)


def format_comparison(records: Sequence[Any]) -> str:
    """The comparison as a terminal table (`python -m lab compare` prints it at the end)."""
    if not records:
        return "No runs in this comparison."
    metric = primary_metric_name(records[0].task)
    lines = [f"  {'method':<9}{'status':<12}{'test ' + metric:>14}{'trainable':>13}{'share':>9}{'time':>14}"
             f"{'peak MB':>9}"]
    for row in comparison_rows(records).to_dict("records"):
        present = {name: value for name, value in row.items() if value is not None and not pd.isna(value)}
        score = f"{present['test']:.3f}" if "test" in present else "–"
        trainable = f"{int(present['trainable']):,}" if "trainable" in present else "–"
        share = f"{100 * present['trainable share']:.2f}%" if "trainable share" in present else "–"
        memory = f"{present['peak memory MB']:.0f}" if "peak memory MB" in present else "–"
        lines.append(f"  {row['method']:<9}{row['status']:<12}{score:>14}{trainable:>13}{share:>9}"
                     f"{format_duration(present.get('train seconds')):>14}{memory:>9}")
    return "\n".join(lines)
