"""Numbers and names as the pages show them: durations, parameter counts, smoothed curves, user text."""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence
from typing import Optional

from lab.model.parameters import format_share
from lab.training.estimate import DURATION_UNITS, format_duration

__all__ = [
    "DURATION_UNITS",
    "clipped",
    "format_count",
    "format_duration",
    "format_share",
    "plain_text",
    "smooth",
    "thinned",
]


def format_count(count: Optional[int]) -> str:
    if not count:
        return "–"
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return str(count)


# One distinct colour per series (a label, a method: the theme's default sequence is shades of one blue), the same
# on the pages' charts and the handouts', so a method keeps its colour everywhere (plotly's D3 sequence).
SERIES_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
LOSS_SMOOTHING = 0.6  # the loss curves' default smoothing, on the pages and in the handouts


def series_colours(names: Sequence[str]) -> dict[str, str]:
    """A colour per series, in the order given."""
    return {name: SERIES_COLOURS[index % len(SERIES_COLOURS)] for index, name in enumerate(names)}


def smooth(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's debiased exponential moving average; weight 0 returns the values unchanged."""
    smoothed, average, count = [], 0.0, 0
    for value in values:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            smoothed.append(float("nan"))
            continue
        count += 1
        average = weight * average + (1 - weight) * value
        smoothed.append(average / (1 - weight**count) if weight < 1 else value)
    return smoothed


def thinned(values: Sequence[float], limit: int = 2000) -> list[float]:
    """At most `limit` evenly spaced values, the last one always among them: a curve of 100,000 steps
    drawn as 2,000 points looks the same and stays cheap to send to the browser."""
    if len(values) <= limit:
        return list(values)
    stride = math.ceil(len(values) / limit)
    picked = list(values[::stride])
    return picked if (len(values) - 1) % stride == 0 else picked + [values[-1]]


_MARKDOWN_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def plain_text(text: object) -> str:
    """User text (a run's name, a file or model name) for a place that renders Markdown, shown as typed:
    every ASCII punctuation mark escaped (CommonMark lets each be), so `![x](http://...)` is no remote
    image, `**` no bold and `:red[...]` no colour; line breaks and control characters become spaces."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", _CONTROL.sub(" ", str(text)))


def clipped(text: object, limit: int) -> str:
    """`text` cut at a word boundary to about `limit` characters, with an ellipsis when cut: a long review
    in a table that wraps, readable without taking the page."""
    text = _CONTROL.sub(" ", str(text)).strip()
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip() + "…"
