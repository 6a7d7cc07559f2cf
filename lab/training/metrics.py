"""Evaluation metrics, used both for live evaluation during training and for the final report.

Classification numbers come from scikit-learn, NER numbers from seqeval; this module only turns
them into one shape: a DataFrame indexed by label with columns `precision, recall, f1, support`,
which `report_to_records` stores in events and `format_report` prints.

NER is scored per entity, not per word. By default (`scheme=None`) entities are read the way the
CoNLL shared task's `conlleval.pl` reads them: an `I-X` after `O` or after another type starts a
new entity, and a predicted entity counts only when its type and both ends match exactly. Pass
`scheme="IOB2"`, `"IOB1"` or `"BIOES"` for seqeval's strict mode, where only chunks well formed in
that scheme are entities: with BIOES data, a predicted `B-PER I-PER` that never reaches `E-PER` is
no entity in strict mode, while conlleval mode would count it. Use strict mode when your tags are
BIOES and you want malformed predictions to score as wrong.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
import pandas as pd
import seqeval.metrics
import seqeval.scheme
import sklearn.metrics

from lab.config import TASKS
from lab.errors import ConfigError
from lab.events import LABEL_ROW

__all__ = [
    "classification_report",
    "classification_metrics",
    "entity_report",
    "entity_metrics",
    "confusion_matrix",
    "token_confusion_matrix",
    "MAX_MATRIX_LABELS",
    "TOP_CONFUSIONS",
    "report_to_records",
    "format_report",
    "primary_metric_name",
    "is_average_row",
    "ENTITY_SCHEMES",
]

COLUMNS = list(LABEL_ROW[1:])  # a report's columns: the row's keys after its label

# More labels than this, and a confusion matrix is kept as its TOP_CONFUSIONS largest cells and per-label totals.
MAX_MATRIX_LABELS = 50
TOP_CONFUSIONS = 50

# Strict-mode schemes; None (or "auto") is conlleval mode. "BIOES" is seqeval's IOBES.
ENTITY_SCHEMES: dict[str, type[seqeval.scheme.Token]] = {
    "IOB1": seqeval.scheme.IOB1,
    "IOB2": seqeval.scheme.IOB2,
    "BIOES": seqeval.scheme.IOBES,
    "IOBES": seqeval.scheme.IOBES,
}

Label = int | str


# ---- sequence classification -----------------------------------------------------------------
def _label_ids(values: Sequence[Label], labels: Sequence[str], what: str) -> list[int]:
    """Label names or ids -> ids, so callers may pass either (the trainer has ids, files have names)."""
    index = {name: i for i, name in enumerate(labels)}
    ids = []
    for position, value in enumerate(values):
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            if not 0 <= int(value) < len(labels):
                raise ValueError(f"{what}[{position}] is label id {value}, but there are {len(labels)} labels.")
            ids.append(int(value))
        elif isinstance(value, str) and value in index:
            ids.append(index[value])
        else:
            raise ValueError(f"{what}[{position}] is {value!r}, which is not one of the labels {list(labels)}.")
    return ids


def _checked_ids(
    y_true: Sequence[Label], y_pred: Sequence[Label], labels: Sequence[str]
) -> tuple[list[int], list[int]]:
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} examples but y_pred has {len(y_pred)}.")
    if len(y_true) == 0:
        raise ValueError("There are no examples to evaluate.")
    return _label_ids(y_true, labels, "y_true"), _label_ids(y_pred, labels, "y_pred")


def classification_report(y_true: Sequence[Label], y_pred: Sequence[Label], labels: Sequence[str]) -> pd.DataFrame:
    """One row per label (in `labels` order, zero-support labels included), then macro and weighted averages."""
    true_ids, pred_ids = _checked_ids(y_true, y_pred, labels)
    label_ids = list(range(len(labels)))
    precision, recall, f1, support = sklearn.metrics.precision_recall_fscore_support(
        true_ids, pred_ids, labels=label_ids, zero_division=0
    )
    report = pd.DataFrame(
        {"precision": precision, "recall": recall, "f1": f1, "support": support},
        index=pd.Index([str(name) for name in labels], name="label"),
    )
    total = int(support.sum())
    for average in ("macro", "weighted"):
        avg_p, avg_r, avg_f1, _ = sklearn.metrics.precision_recall_fscore_support(
            true_ids, pred_ids, labels=label_ids, average=average, zero_division=0
        )
        report.loc[f"{average} avg"] = [avg_p, avg_r, avg_f1, total]
    return _typed(report)


def classification_metrics(y_true: Sequence[Label], y_pred: Sequence[Label], labels: Sequence[str]) -> dict[str, float]:
    """accuracy, macro_f1, weighted_f1, macro_precision, macro_recall."""
    true_ids, pred_ids = _checked_ids(y_true, y_pred, labels)
    report = classification_report(true_ids, pred_ids, labels)
    return {
        "accuracy": float(sklearn.metrics.accuracy_score(true_ids, pred_ids)),
        "macro_f1": float(report.at["macro avg", "f1"]),
        "weighted_f1": float(report.at["weighted avg", "f1"]),
        "macro_precision": float(report.at["macro avg", "precision"]),
        "macro_recall": float(report.at["macro avg", "recall"]),
    }


def confusion_matrix(y_true: Sequence[Label], y_pred: Sequence[Label], labels: Sequence[str]) -> dict[str, Any]:
    """{"labels": names, "matrix": counts}; rows are true labels, columns predicted labels.

    Above MAX_MATRIX_LABELS labels the matrix grows with labels squared (2,000 labels: 12 MB per
    evaluation), so it is kept as its top confusions instead: {"labels", "top": the TOP_CONFUSIONS
    largest off-diagonal cells as {true, predicted, count}, "support" (true count per label),
    "predicted" (predicted count per label), "correct" (the diagonal), "errors" (all off-diagonal)}.
    """
    true_ids, pred_ids = _checked_ids(y_true, y_pred, labels)
    names = [str(name) for name in labels]
    if len(labels) > MAX_MATRIX_LABELS:
        return _top_confusions(np.asarray(true_ids), np.asarray(pred_ids), names)
    matrix = sklearn.metrics.confusion_matrix(true_ids, pred_ids, labels=list(range(len(labels))))
    return {"labels": names, "matrix": matrix.astype(int).tolist()}


def _top_confusions(true_ids: np.ndarray, pred_ids: np.ndarray, names: list[str]) -> dict[str, Any]:
    count = len(names)
    wrong = true_ids != pred_ids
    # Each off-diagonal cell that occurs, counted without building the count x count matrix.
    cells, cell_counts = np.unique(true_ids[wrong] * count + pred_ids[wrong], return_counts=True)
    largest = np.lexsort((cells, -cell_counts))[:TOP_CONFUSIONS]  # ties in label order
    return {
        "labels": names,
        "top": [
            {"true": names[cells[i] // count], "predicted": names[cells[i] % count], "count": int(cell_counts[i])}
            for i in largest
        ],
        "support": np.bincount(true_ids, minlength=count).tolist(),
        "predicted": np.bincount(pred_ids, minlength=count).tolist(),
        "correct": np.bincount(true_ids[~wrong], minlength=count).tolist(),
        "errors": int(wrong.sum()),
    }


# ---- named entities --------------------------------------------------------------------------
def _check_tags(true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> None:
    if len(true_tags) != len(pred_tags):
        raise ValueError(f"true_tags has {len(true_tags)} sentences but pred_tags has {len(pred_tags)}.")
    for i, (true_row, pred_row) in enumerate(zip(true_tags, pred_tags)):
        if len(true_row) != len(pred_row):
            raise ValueError(f"Sentence {i} has {len(true_row)} true tags but {len(pred_row)} predicted tags.")


def _seqeval_mode(scheme: Optional[str]) -> dict[str, Any]:
    if scheme is None or scheme == "auto":
        return {}
    if scheme not in ENTITY_SCHEMES:
        raise ConfigError(f"Unknown tag scheme {scheme!r}; use None (conlleval) or one of {', '.join(ENTITY_SCHEMES)}.")
    return {"mode": "strict", "scheme": ENTITY_SCHEMES[scheme]}


def entity_report(
    true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]], scheme: Optional[str] = None
) -> pd.DataFrame:
    """One row per entity type (sorted; types only predicted get support 0), then micro and macro averages.

    `support` is the number of true entities. See the module docstring for `scheme`.
    """
    _check_tags(true_tags, pred_tags)
    true_lists = [list(row) for row in true_tags]
    pred_lists = [list(row) for row in pred_tags]
    rows: dict[str, list[float]] = {}
    if any(tag != "O" for row in true_lists + pred_lists for tag in row):
        with warnings.catch_warnings():
            # Strict mode may find no well-formed entity; its NaN macro average is replaced below.
            warnings.simplefilter("ignore", RuntimeWarning)
            scores = seqeval.metrics.classification_report(
                true_lists, pred_lists, output_dict=True, zero_division=0, **_seqeval_mode(scheme)
            )
        rows = {
            name: [s["precision"], s["recall"], s["f1-score"], s["support"]]
            for name, s in scores.items()
            if name != "weighted avg"
        }
    # No entity anywhere (or none well-formed in strict mode): seqeval's macro average is the
    # mean of nothing (NaN); report zeros, as zero_division=0 does for every other empty ratio.
    for name in ("micro avg", "macro avg"):
        if name not in rows or any(np.isnan(value) for value in rows[name][:3]):
            rows[name] = [0.0, 0.0, 0.0, rows.get(name, [0, 0, 0, 0])[3]]
    report = pd.DataFrame.from_dict(rows, orient="index", columns=COLUMNS)
    report.index.name = "label"
    return _typed(report)


def entity_metrics(
    true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]], scheme: Optional[str] = None
) -> dict[str, float]:
    """precision, recall, f1 (entity micro averages), macro_f1, and token_accuracy.

    token_accuracy is the share of words whose tag is right. It looks good even for a model that
    finds no entity at all, because most words are `O`: read f1 instead.
    """
    report = entity_report(true_tags, pred_tags, scheme=scheme)
    flat_true = [tag for row in true_tags for tag in row]
    flat_pred = [tag for row in pred_tags for tag in row]
    token_accuracy = float(np.mean([t == p for t, p in zip(flat_true, flat_pred)])) if flat_true else 0.0
    return {
        "precision": float(report.at["micro avg", "precision"]),
        "recall": float(report.at["micro avg", "recall"]),
        "f1": float(report.at["micro avg", "f1"]),
        "macro_f1": float(report.at["macro avg", "f1"]),
        "token_accuracy": token_accuracy,
    }


def token_confusion_matrix(
    true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]], labels: Sequence[str]
) -> dict[str, Any]:
    """Word-level confusion of tags (for teaching: it shows B-/I- mix-ups that entity F1 hides)."""
    _check_tags(true_tags, pred_tags)
    flat_true = [tag for row in true_tags for tag in row]
    flat_pred = [tag for row in pred_tags for tag in row]
    return confusion_matrix(flat_true, flat_pred, labels)


# ---- shapes for storage and display -----------------------------------------------------------
def _typed(report: pd.DataFrame) -> pd.DataFrame:
    report = report[COLUMNS].astype({"precision": float, "recall": float, "f1": float})
    report["support"] = report["support"].astype(int)
    return report


def report_to_records(report: pd.DataFrame) -> list[dict[str, Any]]:
    """[{label, precision, recall, f1, support}]: the stored format. Floats keep full precision and are
    rounded once, where they are shown: rounded here too, a macro F1 of 0.30749 would read 0.307 in the
    metrics and 0.308 (from 0.3075) in the per-label table."""
    return [
        {
            "label": str(label),
            "precision": float(row["precision"]),
            "recall": float(row["recall"]),
            "f1": float(row["f1"]),
            "support": int(row["support"]),
        }
        for label, row in report.iterrows()
    ]


def format_report(report: pd.DataFrame, digits: int = 4) -> str:
    """A fixed-width text table like scikit-learn's, with a blank line before the average rows."""
    names = [str(label) for label in report.index]
    width = max([len("weighted avg"), *map(len, names)])
    column = max(digits + 2, len("precision"))
    lines = [" " * width + "".join(f"{name:>{column + 1}}" for name in COLUMNS), ""]
    blank_added = False
    for name, (_, row) in zip(names, report.iterrows()):
        if name.endswith(" avg") and not blank_added:
            lines.append("")
            blank_added = True
        values = "".join(f"{float(row[c]):>{column + 1}.{digits}f}" for c in COLUMNS[:3])
        lines.append(f"{name:>{width}}{values}{int(row['support']):>{column + 1}d}")
    return "\n".join(lines) + "\n"


def is_average_row(label: str) -> bool:
    """A per-label report's summary rows (micro / macro / weighted avg, accuracy), not a label."""
    return label.endswith(" avg") or label == "accuracy"


def primary_metric_name(task: str) -> str:
    """The metric early stopping and "best model" maximise: accuracy, or entity micro F1 for NER."""
    if task == "classification":
        return "accuracy"
    if task == "ner":
        return "f1"
    raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}.")
