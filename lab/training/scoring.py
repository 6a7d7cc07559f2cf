"""Scoring one evaluation: the Trainer's `compute_metrics`, on the same words the user's data has.

NER predictions are mapped back to words with the one rule of `lab.data.preprocessing.word_tags`
(the first piece of a word carries its tag; a word cut off by `max_length` counts as `O`), and
scored against every gold word of the split, truncated ones included: truncation shows as lost
recall, never as a better score. BIOES data is scored in seqeval's strict BIOES mode; IOB2 data the
way conlleval reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lab.data.preprocessing import word_tags
from lab.training import metrics as lab_metrics


@dataclass
class WordReference:
    """What scoring one NER split needs beyond the token labels: each row's word ids and gold word tags,
    in the order evaluation visits the rows (`lab.training.trainer.evaluation_order`)."""

    word_ids: Sequence[Sequence[int]]
    gold_tags: Sequence[Sequence[str]]


class EvaluationScorer:
    """`compute_metrics` for the Trainer; keeps the detailed tables of the last evaluation for events.

    Set `split` before each evaluation ("validation" or "test"); NER needs a `WordReference` per split.
    """

    def __init__(
        self,
        task: str,
        label_names: list[str],
        tag_scheme: str = "",
        references: dict[str, WordReference] | None = None,
    ):
        self.task = task
        self.label_names = label_names
        self.scheme = "BIOES" if tag_scheme == "BIOES" else None
        self.references = references or {}
        self.split = "validation"
        self.last_metrics: dict[str, float] = {}
        self.last_per_label: list[dict[str, Any]] = []
        self.last_confusion: dict[str, Any] = {}

    def __call__(self, prediction) -> dict[str, float]:
        predicted, labels = np.asarray(prediction.predictions), np.asarray(prediction.label_ids)
        names = self.label_names
        if self.task == "ner":
            reference = self.references[self.split]
            true_tags = [list(tags) for tags in reference.gold_tags]
            pred_tags = [
                word_tags(ids, row, len(tags), names)
                for ids, row, tags in zip(reference.word_ids, predicted, true_tags)
            ]
            report = lab_metrics.entity_report(true_tags, pred_tags, scheme=self.scheme)
            metrics = lab_metrics.entity_metrics(true_tags, pred_tags, scheme=self.scheme)
            confusion = lab_metrics.token_confusion_matrix(true_tags, pred_tags, names)
        else:
            gold, guessed = labels.tolist(), predicted.tolist()
            report = lab_metrics.classification_report(gold, guessed, names)
            metrics = lab_metrics.classification_metrics(gold, guessed, names)
            confusion = lab_metrics.confusion_matrix(gold, guessed, names)
        self.last_metrics = {k: float(v) for k, v in metrics.items()}
        self.last_per_label = lab_metrics.report_to_records(report)
        self.last_confusion = confusion
        return self.last_metrics
