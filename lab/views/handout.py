"""A handout: one self-contained HTML file of a lesson (or any page's results) to keep, share or print.

Everything it needs is inside the file: plotly.js inlined once (the charts stay interactive offline), the
tables as HTML, the conclusion, the config and the script that repeats it. The caller passes text already
in its page's language; every piece of it is escaped here. A print style sheet keeps each chart and table
on one page and wraps long code lines.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import pandas as pd

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans CJK SC", "WenQuanYi Micro Hei", sans-serif;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #1f2328; line-height: 1.5; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
.subtitle { color: #57606a; margin-top: 0; }
h2 { font-size: 1.25em; border-bottom: 1px solid #d0d7de; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #d0d7de; padding: 0.25em 0.6em; text-align: right; }
th { background: #f6f8fa; }
td:first-child, th:first-child { text-align: left; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 0.82em; }
.chart { margin: 0.6em 0; }
@media print {
  body { margin: 0; max-width: none; }
  h2 { break-after: avoid; }
  .chart, table, li { break-inside: avoid; }
  pre { white-space: pre-wrap; word-break: break-word; overflow: visible; }
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
            body.append(section.table.to_html(index=False, escape=True, na_rep="–", border=0))
        for figure in section.figures:
            charts += 1
            chart = figure.to_html(
                full_html=False,
                include_plotlyjs=False,
                div_id=f"chart-{charts}",
                config={"displaylogo": False, "responsive": True},
            )
            body.append(f'<div class="chart">{chart}</div>')
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
