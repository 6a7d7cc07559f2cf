"""One row of `python -m bench.reliability`: a scenario, what a user should see, what happened."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    scenario: str
    expected: str
    observed: str
    passed: bool
