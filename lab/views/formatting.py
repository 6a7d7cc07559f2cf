"""Numbers as the pages show them: durations, parameter counts, smoothed curves."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

DURATION_UNITS = ("h", "min", "s")


def format_duration(seconds: Optional[float], units: Sequence[str] = DURATION_UNITS) -> str:
    """'1 h 02 min', '2 min 05 s', '7 s': the two largest units; `units` names hours, minutes and seconds
    (the app passes its language's)."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "–"
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    hour, minute, second = units
    if hours:
        return f"{hours} {hour} {minutes:02d} {minute}"
    if minutes:
        return f"{minutes} {minute} {secs:02d} {second}"
    return f"{secs} {second}"


def format_share(part: Optional[float], whole: Optional[float] = 1) -> str:
    """part / whole as '100%', '0.328%', '0.00339%': three significant digits, so head-only's few
    thousandths of a percent do not read as 0%."""
    percent = 100 * part / whole if part and whole else math.nan
    if math.isnan(percent):  # pandas writes a missing share as NaN
        return "–"
    return f"{percent:.{max(0, 2 - math.floor(math.log10(percent)))}f}%"


def format_count(count: Optional[int]) -> str:
    if not count:
        return "–"
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return str(count)


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
