"""Run history and comparison: runs as rows of a table, or side by side; a model folder as a zip."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from lab.errors import LabError
from lab.model.parameters import format_share
from lab.training.metrics import primary_metric_name
from lab.views.formatting import DURATION_UNITS, format_count, format_duration
from lab.views.run_view import RunView, RunViewFolder


def runs_frame(
    records: Sequence[Any],
    duration_units: Sequence[str] = DURATION_UNITS,
    metric_words: Callable[[str], str] = str,
) -> pd.DataFrame:
    """The run history table (records are lab.runs.store.RunRecord); `metric_words` names a metric in the
    page's language (`macro_f1` as "macro F1")."""
    rows = []
    for run in records:
        metric = primary_metric_name(run.task)
        end = run.finished_at or (time.time() if run.is_active and run.started_at else None)
        rows.append(
            {
                "run": run.id,
                "name": run.name,
                "status": run.status,
                "task": run.task,
                "dataset": run.dataset,
                "method": run.peft_method,
                "model": run.model,
                "created": pd.Timestamp.fromtimestamp(run.created_at).floor("s"),
                "time": format_duration(end - run.started_at, duration_units) if end and run.started_at else "–",
                "test metric": f"{metric_words(metric)} {run.metrics[metric]:.3f}" if metric in run.metrics else "",
                "trainable": format_count(run.summary.get("trainable_params")),
                "group": run.group_name,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "name",
            "status",
            "task",
            "dataset",
            "method",
            "test metric",
            "trainable",
            "time",
            "created",
            "group",
            "model",
            "run",
        ],
    )


def comparison_frame(
    records: Sequence[Any], views: dict[str, RunView], duration_units: Sequence[str] = DURATION_UNITS
) -> pd.DataFrame:
    """Runs side by side (one column each): setup, final metrics, parameters, time, memory."""
    columns = {}
    for run in records:
        summary, view = run.summary, views.get(run.id)
        trainable, total = summary.get("trainable_params"), summary.get("total_params")
        best = ""
        if view is not None and primary_metric_name(run.task) in view.evaluations:
            best = f"{view.evaluations[primary_metric_name(run.task)].max():.4f}"
        column = {
            "status": run.status,
            "task": run.task,
            "dataset": run.dataset,
            "model": run.model,
            "method": run.peft_method,
            "trainable parameters": f"{trainable:,}" if trainable else "–",
            "total parameters": f"{total:,}" if total else "–",
            "trainable share": format_share(trainable, total),
            "wall time": format_duration(summary.get("wall_seconds"), duration_units),
            "peak memory": f"{summary['peak_memory_mb']:.0f} MB" if summary.get("peak_memory_mb") else "–",
            f"best validation {primary_metric_name(run.task)}": best or "–",
        }
        for name, value in run.metrics.items():
            column[f"test {name}"] = f"{value:.4f}"
        columns[f"{run.name} ({run.id[-4:]})"] = column
    return pd.DataFrame(columns)


def folded_views(folders: dict[str, RunViewFolder], store: Any, run_ids: Sequence[str]) -> dict[str, RunView]:
    """Each run's view, fed only the events after its folder's cursor (`folders`: one per run, kept by the
    page for its session and shared by the Live, Runs and Compare pages), so a refresh reads and folds
    what was written since the last one, not every event of every run again."""
    views = {}
    for run_id in run_ids:
        folder = folders.setdefault(run_id, RunViewFolder())
        views[run_id] = folder.add(store.events_since(run_id, folder.seq)).view()
    return views


def zip_folder(folder: str | Path) -> bytes:
    """A zip of `folder` (a model or adapter) for download."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LabError(f"{folder} does not exist: the run saved no model (it did not complete).")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder.parent))
    return buffer.getvalue()
