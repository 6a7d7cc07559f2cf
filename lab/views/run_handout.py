"""A run's handout: its test metrics, per-label table and confusion matrix, its curves (interactive
offline), its config and standalone script, in one HTML file (lab.views.handout), in `en` or `zh`.
The Live run and Runs pages offer it for download; `python -m lab handout RUN` writes it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from lab.events import LABEL_ROW
from lab.model.parameters import format_share
from lab.runs.records import RunRecord
from lab.views import handout_charts
from lab.views.formatting import format_duration
from lab.views.handout import HandoutSection, Words, catalogue_words, handout_html, repeat_sections
from lab.views.run_view import RunView, run_view

MANY_LABELS = 6  # a confusion matrix of more labels prints narrower: smaller type, names upwards


def run_handout(store: Any, run_id: str, language: str) -> str:
    """The handout of one run of `store` (a lab.runs.store.RunStore as its reader sees it: another
    student's run is not there) in `language`."""
    words = catalogue_words(language)
    run = store.get_run(run_id)
    view = run_view(event for _, event in store.events_since(run.id))
    sections = [held_out_section(run, view, words)]
    per_label = view.test_eval.per_label if view.test_eval is not None else run.per_label
    if per_label:
        sections.append(HandoutSection(words("handout.per_label_test"), table=label_table(per_label, words)))
    sections += confusion_sections(view, words)
    figures = [handout_charts.run_loss(view, words)] if not view.steps.empty else []
    if not view.evaluations.empty:
        figures.append(handout_charts.run_metrics(view, words))
    if not view.per_label_history.empty:
        figures.append(handout_charts.label_f1(view.per_label_history, words))
    if figures:
        sections.append(HandoutSection(words("handout.curves"), figures=figures))
    config = store.load_config(run.id)
    script_heading = words("handout.script")
    sections += repeat_sections(config, words("handout.config"), script_heading, started=view.started, words=words)
    return handout_html(run.name, language, sections, subtitle=subtitle(run, words))


def subtitle(run: RunRecord, words: Words) -> str:
    created = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.created_at))
    method = words.get(f"method.{run.peft_method}.name", run.peft_method)
    return " · ".join(
        [words(f"task.{run.task}"), run.dataset, run.model, method, words(f"status.{run.status}"), created, run.id]
    )


def format_number(value: Any) -> str:
    """A metric as the pages show it: three decimals; a count with thousands separators."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    return f"{value:,}" if isinstance(value, int) else f"{value:.3f}"


def outcome_columns(rows: pd.DataFrame, metric: str, words: Words) -> dict[str, pd.Series]:
    """The columns a comparison's and a lesson's tables share (lab.views.compare_view.comparison_rows and
    lab.views.lesson_view.lesson_table name them alike), with the pages' headers and formats."""
    word = handout_charts.metric_word(words, metric)
    units = (words("unit.hours"), words("unit.minutes"), words("unit.seconds"))
    return {
        words("history.status"): rows["status"].map(lambda status: words(f"status.{status}")),
        words("history.test", metric=word): rows["test"].map(format_number),
        words("history.best_validation", metric=word): rows["best validation"].map(format_number),
        words("history.trainable_parameters"): rows["trainable"].map(
            lambda count: "–" if pd.isna(count) else f"{int(count):,}"
        ),
        words("history.trainable_share"): rows["trainable share"].map(format_share),
        words("history.wall_time"): rows["train seconds"].map(lambda seconds: format_duration(seconds, units)),
    }


def held_out_section(run: RunRecord, view: RunView, words: Words) -> HandoutSection:
    """The held-out metrics, what was trained and how long it took; for a run that ended without them, why."""
    metrics = view.test_eval.metrics if view.test_eval is not None else run.metrics
    summary = run.summary
    lines = [words("live.test_caption")] if metrics else [words("live.ended", status=words(f"status.{run.status}"))]
    trainable, total = summary.get("trainable_params"), summary.get("total_params")
    if trainable and total:
        parameters = words(
            "live.trainable_of", trainable=f"{trainable:,}", total=f"{total:,}", share=format_share(trainable, total)
        )
        units = (words("unit.hours"), words("unit.minutes"), words("unit.seconds"))
        memory = summary.get("peak_memory_mb")
        lines.append(
            f"{parameters} · {format_duration(summary.get('wall_seconds'), units)}"
            + (words("live.peak_memory", mb=f"{memory:,.0f}") if memory else "")
        )
    table = pd.DataFrame(
        {
            words("chart.metric"): [handout_charts.metric_word(words, name) for name in metrics],
            words("handout.value"): [format_number(value) for value in metrics.values()],
        }
    )
    return HandoutSection(words("live.test_set"), paragraphs=lines, table=table)


def label_table(per_label: Sequence[dict[str, Any]], words: Words) -> pd.DataFrame:
    """One row per label, then the averages, with the pages' column names."""
    return pd.DataFrame(
        {
            words(f"table.{column}"): [
                str(row.get(column)) if column == "label" else format_number(row.get(column)) for row in per_label
            ]
            for column in LABEL_ROW
        }
    )


def confusion_sections(view: RunView, words: Words) -> list[HandoutSection]:
    """The test set's confusion matrix (else the last validation's) as a table of counts: rows are the true
    labels, columns the predicted; a matrix kept as its largest confusions lists those."""
    evaluation = view.test_eval if view.test_eval is not None and view.test_eval.confusion else view.latest_eval
    if evaluation is None or not evaluation.confusion:
        return []
    confusion = evaluation.confusion
    where = (
        words("live.test_set")
        if evaluation is view.test_eval
        else words("live.validation_at", step=evaluation.step, epoch=f"{evaluation.epoch:.2f}")
    )
    labels = [str(label) for label in confusion.get("labels", [])]
    if "top" in confusion:
        table = pd.DataFrame(
            {
                words("chart.true"): [str(cell["true"]) for cell in confusion["top"]],
                words("chart.predicted"): [str(cell["predicted"]) for cell in confusion["top"]],
                words("chart.confusion_count"): [f"{cell['count']:,}" for cell in confusion["top"]],
            }
        )
    else:
        corner = f"{words('chart.true')} ↓ · {words('chart.predicted')} →"
        rows = [[label, *(f"{count:,}" for count in counts)] for label, counts in zip(labels, confusion["matrix"])]
        table = pd.DataFrame(rows, columns=[corner, *labels])
    return [
        HandoutSection(words("chart.confusion"), paragraphs=[where], table=table, compact=len(labels) > MANY_LABELS)
    ]
