"""A handout: one self-contained HTML file of a lesson, a comparison or a run, to keep, share or print.

Every handout is assembled the same way: `HandoutSection`s (headings, text, a table, plotly figures, a code
block) passed to `handout_html`, and it ends with `repeat_sections` (the config, the command that repeats
it, the standalone script). Everything it needs is inside the file: plotly.js inlined once (the charts stay
interactive offline), the tables as HTML. The caller passes text already in its language (`Words`: the
app's catalogues, read as files, so the CLI writes the same handout as a page); every piece of it is
escaped here. Each chart is drawn at a width that fits an A4 page, and a print style sheet keeps rows,
charts and headings whole and wraps long code lines.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import pandas as pd

from lab.catalogue import DEFAULT_LANGUAGE, catalogue
from lab.events import RunStartedEvent

# A chart's width in CSS pixels: an A4 page less 15 mm margins is about 680 px wide.
CHART_WIDTH = 680
CHART_HEIGHT = 340

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans CJK SC", "WenQuanYi Micro Hei", sans-serif;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #1f2328; line-height: 1.5; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
.subtitle { color: #57606a; margin-top: 0; }
h2 { font-size: 1.25em; border-bottom: 1px solid #d0d7de; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
table.compact { font-size: 0.78em; }
th, td { border: 1px solid #d0d7de; padding: 0.25em 0.6em; text-align: right; }
table.compact th, table.compact td { padding: 0.15em 0.35em; white-space: nowrap; }
/* A wide matrix's column names read upwards, so its columns are as narrow as its numbers. */
table.compact thead th:not(:first-child) { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; }
th { background: #f6f8fa; }
td:first-child, th:first-child { text-align: left; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 0.82em; }
.chart { margin: 0.6em 0; max-width: 100%; overflow-x: auto; }
@page { size: A4; margin: 15mm; }
@media print {
  body { margin: 0; padding: 0; max-width: none; font-size: 10.5pt; }
  h1, h2 { break-after: avoid; }
  .chart, tr, li, p { break-inside: avoid; }
  .chart { overflow: visible; }
  table { font-size: 0.85em; }
  thead { display: table-header-group; }
  pre { white-space: pre-wrap; word-break: break-word; overflow: visible; font-size: 0.72em; }
  .modebar-container { display: none !important; }
}
"""


@dataclass
class HandoutSection:
    heading: str
    paragraphs: Sequence[str] = ()
    bullets: Sequence[str] = ()
    table: Optional[pd.DataFrame] = None
    figures: Sequence[Any] = ()  # plotly figures
    code: str = ""  # shown as a preformatted block (a config, a command, a script)
    notes: Sequence[str] = field(default_factory=list)  # small print under the section
    compact: bool = False  # a wide table (a confusion matrix of many labels) in smaller type


@dataclass(frozen=True)
class Words:
    """The catalogue of one language: `words(key, **values)` is the text of `key` with its placeholders
    filled (English where that language lacks the key), as `ui.i18n.t` gives it on a page."""

    language: str
    texts: Mapping[str, str]
    english: Mapping[str, str]

    def __call__(self, key: str, **values: Any) -> str:
        text = self.texts.get(key) or self.english[key]
        return text.format(**values) if values else text

    def get(self, key: str, default: str) -> str:
        """The text of `key`, or `default` where no catalogue has it (a metric without a word of its own)."""
        return self.texts.get(key) or self.english.get(key) or default


@functools.cache
def catalogue_words(language: str) -> Words:
    """The words of `language` (`en`, `zh`) from the app's catalogue."""
    return Words(language, catalogue(language), catalogue(DEFAULT_LANGUAGE))


def repeat_sections(
    config: Any,
    config_heading: str,
    script_heading: str,
    config_note: str = "",
    command: str = "",
    command_heading: str = "",
    command_note: str = "",
    started: Optional[RunStartedEvent] = None,
    words: Optional[Words] = None,
) -> list[HandoutSection]:
    """How every handout ends: the config (a lab.config.RunConfig) as YAML, the command that repeats the
    runs when there is one, and the config as a standalone Python script at the rates its run trained at
    (`started`, the run's RunStartedEvent, when it has one). `words`: the handout's language, for the line
    that says why a script is missing."""
    from lab.publish.standalone import standalone_script  # imports transformers: only when a handout is made

    sections = [HandoutSection(config_heading, code=config.to_yaml(), notes=[config_note] if config_note else [])]
    if command:
        sections.append(HandoutSection(command_heading, code=command, notes=[command_note] if command_note else []))
    learning_rate, head_learning_rate = trained_rates(started)
    if config.train.finds_learning_rate and learning_rate is None:
        # learning_rate: auto and the run ended before its range test found a number: there is none to write.
        why = (words or catalogue_words(DEFAULT_LANGUAGE))("handout.no_script_auto")
        sections.append(HandoutSection(script_heading, paragraphs=[why]))
    else:
        script = standalone_script(config, learning_rate, head_learning_rate)
        sections.append(HandoutSection(script_heading, code=script))
    return sections


def trained_rates(started: Optional[RunStartedEvent]) -> tuple[Optional[float], Optional[float]]:
    """The learning rate and the head's rate a run trained at (None for the head: the run's rate), from its
    RunStartedEvent; (None, None) for a run that never started training."""
    if started is None or not started.learning_rate:
        return None, None
    return started.learning_rate, started.head_learning_rate


def handout_html(title: str, language: str, sections: Sequence[HandoutSection], subtitle: str = "") -> str:
    """The whole handout as one HTML document (`language`: the page's, for the document's lang)."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    if subtitle:
        body.append(f'<p class="subtitle">{html.escape(subtitle)}</p>')
    charts = 0
    for section in sections:
        body.append(f"<h2>{html.escape(section.heading)}</h2>")
        body += [f"<p>{html.escape(text)}</p>" for text in section.paragraphs]
        if section.bullets:
            body.append("<ul>" + "".join(f"<li>{html.escape(text)}</li>" for text in section.bullets) + "</ul>")
        if section.table is not None and not section.table.empty:
            classes = "compact" if section.compact else ""
            body.append(section.table.to_html(index=False, escape=True, na_rep="–", border=0, classes=classes))
        for figure in section.figures:
            charts += 1
            body.append(f'<div class="chart">{_chart(figure, charts)}</div>')
        if section.code:
            body.append(f"<pre><code>{html.escape(section.code)}</code></pre>")
        body += [f'<p class="subtitle">{html.escape(text)}</p>' for text in section.notes]
    script = ""
    if charts:
        from plotly.offline import get_plotlyjs

        script = f"<script>{get_plotlyjs()}</script>"  # inlined: the charts work without a network
    return (
        f'<!DOCTYPE html>\n<html lang="{html.escape(language)}">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n{script}\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _chart(figure: Any, number: int) -> str:
    """One figure as a div and its call to plotly.js, at a fixed size that fits an A4 page: a chart sized
    to the screen would be cut at the page's edge when printed."""
    import plotly.graph_objects as go

    sized = go.Figure(figure)
    height = sized.layout.height or CHART_HEIGHT
    sized.update_layout(width=CHART_WIDTH, height=height, autosize=False, template="plotly_white")
    return sized.to_html(
        full_html=False, include_plotlyjs=False, div_id=f"chart-{number}", config={"displaylogo": False}
    )
