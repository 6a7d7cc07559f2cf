"""A comparison's handout: the methods side by side (the Compare page's table, each label's F1 by
method), its charts (interactive offline), the first run's config, the command that repeats the
comparison and the first run as a standalone script, in one HTML file (lab.views.handout), in `en` or
`zh`. The Compare page offers it for download; `python -m lab handout --group NAME` writes it."""

from __future__ import annotations

from typing import Any

import pandas as pd

from lab.errors import LabError
from lab.groups.compare import GROUP_PREFIX, by_method
from lab.training.metrics import primary_metric_name
from lab.views import handout_charts
from lab.views.compare_view import comparison_rows, per_label_f1
from lab.views.formatting import series_colours
from lab.views.handout import HandoutSection, Words, catalogue_words, handout_html, repeat_sections
from lab.views.run_handout import format_number, outcome_columns
from lab.views.run_view import run_view


def comparison_handout(store: Any, group: str, language: str) -> str:
    """The handout of the comparison `group` as `store`'s reader sees it (a student: their runs of it, and
    the shared ones) in `language`."""
    if not group.startswith(GROUP_PREFIX):
        raise LabError(f"{group!r} is not a comparison (its name starts with {GROUP_PREFIX.strip()!r}).")
    records = store.list_runs(group=group)
    if not records:
        raise LabError(f"No comparison {group!r} among your runs; `python -m lab runs` shows each run's group.")
    words = catalogue_words(language)
    task, metric = records[0].task, primary_metric_name(records[0].task)
    views = {run.id: run_view(event for _, event in store.events_since(run.id)) for run in records}
    rows = comparison_rows(records, views)
    method = {run.peft_method: words.get(f"method.{run.peft_method}.name", run.peft_method) for run in records}
    rows = rows.assign(method=rows["method"].map(method))
    colours = series_colours(rows["method"].tolist())
    named = {method[run.peft_method]: views[run.id] for run in by_method(records)}
    scores, losses = handout_charts.curves_by_run(named, metric, words, colours)
    sections = [
        HandoutSection(
            words("handout.methods"),
            table=methods_table(rows, metric, words),
            figures=[handout_charts.tradeoff(rows, metric, words, colours), scores, losses],
        )
    ]
    labels = per_label_f1(records)
    if not labels.empty:
        shown = labels.rename(columns=method).map(format_number)
        shown.insert(0, words("table.label"), [str(label) for label in labels.index])
        sections.append(HandoutSection(words("chart.per_label_by_method"), table=shown, compact=len(shown.columns) > 8))
    first = by_method(records)[0]
    command = f"python -m lab compare comparison.yaml --methods {','.join(method_names(records))}"
    sections += repeat_sections(
        store.load_config(first.id),
        words("handout.first_config"),
        words("handout.first_script"),
        config_note=words("handout.first_config_note"),
        command=command,
        command_heading=words("handout.command"),
        command_note=words("handout.command_note"),
        started=views[first.id].started,
        words=words,
    )
    title = words("handout.comparison_title", name=group[len(GROUP_PREFIX) :])
    subtitle = " · ".join([words(f"task.{task}"), records[0].dataset, records[0].model])
    return handout_html(title, language, sections, subtitle=subtitle)


def method_names(records: Any) -> list[str]:
    return list(dict.fromkeys(run.peft_method for run in by_method(records)))


def methods_table(rows: pd.DataFrame, metric: str, words: Words) -> pd.DataFrame:
    """The Compare page's table with its column names and its formats."""
    return pd.DataFrame(
        {
            words("history.method"): rows["method"],
            **outcome_columns(rows, metric, words),
            words("history.peak_memory"): rows["peak memory MB"].map(
                lambda mb: "–" if pd.isna(mb) else f"{mb:,.0f} MB"
            ),
        }
    )
