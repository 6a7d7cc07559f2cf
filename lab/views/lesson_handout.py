"""A lesson's handout: its question, the conclusion, the runs side by side, the metric against the varied
value, the losses and validation curves (interactive offline), for ner-length the words each max_length
cuts, the config, the command that repeats the lesson and the standalone script, in one HTML file
(lab.views.handout), in `en` or `zh`. The Lessons page offers it for download; `python -m lab handout
--group NAME` writes it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from lab.errors import LabError
from lab.groups.lessons import Lesson, LessonRun, lesson_conclusion, lesson_of_group, lesson_runs
from lab.training.metrics import primary_metric_name
from lab.views.handout import HandoutSection, Words, catalogue_words, handout_html, repeat_sections
from lab.views.lesson_view import findings_in_words, length_example, lesson_figures, lesson_table, run_views
from lab.views.run_handout import outcome_columns


def lesson_handout(store: Any, group: str, language: str) -> str:
    """The handout of the lesson `group` as `store`'s reader sees it (a student: their runs of it) in
    `language`."""
    lesson = lesson_of_group(group)
    if lesson is None:
        raise LabError(f"{group!r} names no lesson; `python -m lab lesson list` lists them.")
    runs = lesson_runs(store, lesson, group)
    if not runs:
        raise LabError(f"No lesson {group!r} among your runs; `python -m lab runs` shows each run's group.")
    words = catalogue_words(language)
    first = runs[0].record
    config = store.load_config(first.id)
    views = run_views(store, runs)
    sections = [
        HandoutSection(
            words("lessons.conclusion"), bullets=findings_in_words(lesson_conclusion(store, lesson, runs), words)
        ),
        HandoutSection(
            words("lessons.handout_runs"),
            table=runs_table(lesson, runs, words),
            figures=lesson_figures(lesson, runs, views, words),
        ),
    ]
    if lesson.setting == "train.max_length" and first.task == "ner":
        lengths = [int(run.outcome.value) for run in runs]
        sections.append(
            HandoutSection(
                words("lessons.alignment"),
                paragraphs=[words("lessons.alignment_caption")],
                table=kept_table(length_example(config, lengths), lengths, words),
            )
        )
    values = ",".join(str(run.outcome.value) for run in runs)
    sections += repeat_sections(
        config,
        words("lessons.handout_config"),
        words("lessons.handout_script"),
        config_note=words("lessons.handout_config_note"),
        command=f"python -m lab lesson run {lesson.name} lesson.yaml --values {values}",
        command_heading=words("lessons.handout_command"),
        command_note=words("lessons.handout_command_note"),
        started=views[str(runs[0].outcome.value)].started,
        words=words,
    )
    question = words(f"lessons.{lesson.name}.question")
    subtitle = " · ".join([question, config.dataset_name, config.model.name_or_path])
    return handout_html(words(f"lessons.{lesson.name}.title"), language, sections, subtitle=subtitle)


def runs_table(lesson: Lesson, runs: Sequence[LessonRun], words: Words) -> pd.DataFrame:
    """The Lessons page's table with its column names and its formats."""
    table = lesson_table(runs)
    metric = primary_metric_name(runs[0].record.task)
    return pd.DataFrame({lesson.setting: table["value"].astype(str), **outcome_columns(table, metric, words)})


def kept_table(kept: pd.DataFrame, lengths: Sequence[int], words: Words) -> pd.DataFrame:
    """lab.views.lesson_view.words_kept in words: a mark where a word keeps a piece at that length."""
    shown = pd.DataFrame({words("data.column.word"): kept["word"], words("data.column.label"): kept["tag"]})
    for length in lengths:
        shown[words("lessons.kept_at", length=length)] = kept[length].map(lambda is_kept: "✓" if is_kept else "✗")
    return shown
