"""A lesson's group of runs as the Lessons page and its handout draw it: one row per value of the varied
setting, the metric against that value, each run's curves, and the conclusion (lab.groups.conclusions), in
the words (lab.views.handout.Words) of the page or the handout, so both draw the same figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from lab.groups.findings import FINDINGS, Finding, finding_text
from lab.groups.lessons import Lesson, LessonRun
from lab.training.metrics import primary_metric_name
from lab.views import handout_charts
from lab.views.formatting import DURATION_UNITS, format_duration, series_colours
from lab.views.handout import Words
from lab.views.run_view import RunView, run_view

# Settings whose values are names, not a scale ("0" and "2" patience are choices), and those spread over decades.
CATEGORICAL = ("peft.method", "train.seed", "train.early_stopping_patience")
LOG_AXIS = ("train.learning_rate", "data.train_subset", "peft.r")

TABLE_COLUMNS = ["value", "status", "test", "best validation", "trainable", "trainable share", "train seconds", "run"]


def lesson_table(runs: Sequence[LessonRun]) -> pd.DataFrame:
    """One row per value: status, held-out test metric, best validation metric, what trained, time. Numbers
    stay numbers (None until the run ends)."""
    rows = []
    for run in runs:
        record, outcome = run.record, run.outcome
        trainable, total = outcome.trainable_params, outcome.total_params
        rows.append(
            {
                "value": outcome.value,
                "status": record.status,
                "test": record.metrics.get(primary_metric_name(record.task)),
                "best validation": outcome.best_validation,
                "trainable": trainable,
                "trainable share": trainable / total if trainable and total else None,
                "train seconds": outcome.seconds,
                "run": record.id,
            }
        )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def metric_by_value(runs: Sequence[LessonRun]) -> pd.DataFrame:
    """value and held-out test metric of the finished runs, for the metric-against-value chart."""
    rows = [
        {"value": run.outcome.value, "metric": run.record.metrics[metric]}
        for run in runs
        if (metric := primary_metric_name(run.record.task)) in run.record.metrics
    ]
    return pd.DataFrame(rows, columns=["value", "metric"])


def run_views(store: Any, runs: Sequence[LessonRun]) -> dict[str, RunView]:
    """Each run's events folded for its curves, keyed by its value as text."""
    return {str(run.outcome.value): run_view(event for _, event in store.events_since(run.record.id)) for run in runs}


def finding_in_words(finding: Finding, templates: Mapping[str, str], units: Sequence[str] = DURATION_UNITS) -> str:
    """A finding in a page's language: `templates` by code, durations in its `units`."""
    return finding_text(finding, templates, lambda seconds: format_duration(seconds, units))


def findings_in_words(findings: Sequence[Finding], words: Words) -> list[str]:
    """The conclusion's findings in `words`' language: the metric named in it, durations in its units."""
    templates = {code: words(f"lessons.finding.{code}") for code in FINDINGS}
    units = (words("unit.hours"), words("unit.minutes"), words("unit.seconds"))
    sentences = []
    for finding in findings:
        values = dict(finding.values)
        if "metric" in values:
            values["metric"] = handout_charts.metric_word(words, values["metric"])
        sentences.append(finding_in_words(Finding(finding.code, values), templates, units))
    return sentences


def metric_chart(lesson: Lesson, runs: Sequence[LessonRun], metric: str, words: Words) -> go.Figure:
    """The test metric against the varied value (a log axis for rates, sizes and ranks)."""
    points = metric_by_value(runs)
    word = handout_charts.metric_word(words, metric)
    figure = go.Figure()
    figure.add_scatter(
        x=points["value"].astype(str).tolist() if lesson.setting in CATEGORICAL else points["value"].tolist(),
        y=points["metric"].tolist(),
        mode="lines+markers",
        name=word,
    )
    if lesson.setting in LOG_AXIS:
        figure.update_xaxes(type="log")
    elif lesson.setting in CATEGORICAL:
        figure.update_xaxes(type="category")
    figure.update_layout(
        title=words("lessons.metric_by_value", metric=word, setting=lesson.setting),
        xaxis_title=lesson.setting,
        yaxis_title=word,
        height=360,
    )
    return figure


def loss_chart(
    training: go.Figure, views: Mapping[str, RunView], colours: Mapping[str, str], words: Words
) -> go.Figure:
    """`training` (each run's smoothed training loss, handout_charts.curves_by_run) with each run's validation
    loss dashed in the same colour: where the two part ways."""
    for trace in training.data:
        trace.name = words("lessons.training_loss", value=trace.name)
    for label, view in views.items():
        evaluations = view.evaluations
        if "loss" in evaluations and not evaluations.empty:
            training.add_scatter(
                x=evaluations["step"].tolist(),
                y=evaluations["loss"].tolist(),
                mode="lines+markers",
                name=words("lessons.validation_loss", value=label),
                line={"color": colours[label], "dash": "dash"},
            )
    return handout_charts.laid_out(
        training, words("lessons.losses"), words("chart.step"), words("chart.loss"), 2 * len(views)
    )


def lesson_figures(
    lesson: Lesson, runs: Sequence[LessonRun], views: Mapping[str, RunView], words: Words
) -> tuple[go.Figure, go.Figure, go.Figure]:
    """The metric against the value, the training and validation losses, the validation metric by step
    (`views`: run_views of `runs`), one colour per value on the last two."""
    metric = primary_metric_name(runs[0].record.task)
    colours = series_colours(list(views))
    scores, training = handout_charts.curves_by_run(dict(views), metric, words, colours)
    return metric_chart(lesson, runs, metric, words), loss_chart(training, views, colours, words), scores


def words_kept(tokenizer: Any, words: Sequence[str], tags: Sequence[str], lengths: Sequence[int]) -> pd.DataFrame:
    """One row per word of a sentence: the word, its tag, and for each max_length whether any piece of it
    is left after truncation (a word with none counts as tagged O)."""
    from lab.data.preprocessing import label_alignment_view

    table = pd.DataFrame({"word": list(words), "tag": list(tags)})
    for length in lengths:
        kept = {row["word_index"] for row in label_alignment_view(tokenizer, words, tags, length)}
        table[length] = [index in kept for index in range(len(words))]
    return table


def length_example(config: Any, lengths: Sequence[int], candidates: int = 300) -> pd.DataFrame:
    """`words_kept` for one test sentence of a NER config's data: the first whose entity words the shortest
    length cuts, else the longest of the first `candidates`."""
    from lab.data.splits import load_splits
    from lab.model.loading import load_tokenizer

    loaded = load_splits(config.data, config.task, config.data.split_seed, log=lambda note: None)
    tokenizer = load_tokenizer(config.model, pre_split_words=True)
    test, names = loaded.splits["test"], loaded.label_names
    count = min(candidates, len(test))
    sentences = [list(words) for words in test.select(range(count))["tokens"]]
    tags = [[names[tag] for tag in row] for row in test.select(range(count))["tags"]]
    if not sentences:
        return pd.DataFrame(columns=["word", "tag", *lengths])
    shortest = min(lengths)
    for words, sentence_tags in zip(sentences, tags):
        table = words_kept(tokenizer, words, sentence_tags, [shortest])
        if ((~table[shortest]) & (table["tag"] != "O")).any():
            return words_kept(tokenizer, words, sentence_tags, lengths)
    longest = max(range(len(sentences)), key=lambda index: len(sentences[index]))
    return words_kept(tokenizer, sentences[longest], tags[longest], lengths)
