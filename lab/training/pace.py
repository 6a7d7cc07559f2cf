"""How long a run has left, from the pace of its recent steps.

A cumulative average (time so far / steps so far) remembers a slow start for the whole run: on a shared
machine whose load changes it stayed 2.6 times too long at the first step and minutes too long at 65%.
`StepPace` follows an exponentially weighted average of recent step times instead, and counts the time
spent outside steps (evaluations, checkpoints) apart, spread over the steps done, so one evaluation does
not look like a slow step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

# Weight of the past in the average of step times: about the last 1 / (1 - 0.85) = 7 steps count, so a
# change of load shows within a dozen steps while one odd batch moves the ETA by a few percent only.
RECENT_WEIGHT = 0.85


@dataclass
class StepPace:
    """Feed it each optimizer step's end (`step_done`) and the end of any pause between steps
    (`pause_done`: an evaluation, a checkpoint); `eta` is the time left at the recent pace."""

    weight: float = RECENT_WEIGHT
    seconds_per_step: Optional[float] = None  # recent pace, debiased like TensorBoard's smoothing
    pause_seconds: float = 0.0  # evaluations and checkpoints so far
    steps_done: int = 0
    _average: float = field(default=0.0, repr=False)
    _updates: int = field(default=0, repr=False)
    _last_step: int = field(default=0, repr=False)
    _last_time: float = field(default=0.0, repr=False)

    def start(self, step: int, now: float) -> None:
        """Training begins (or resumes) at `step`."""
        self._last_step, self._last_time = step, now

    def step_done(self, step: int, now: float) -> None:
        steps = step - self._last_step
        if steps <= 0:
            return
        per_step = max(0.0, now - self._last_time) / steps
        self._updates += 1
        self._average = self.weight * self._average + (1 - self.weight) * per_step
        self.seconds_per_step = self._average / (1 - self.weight**self._updates)
        self.steps_done += steps
        self._last_step, self._last_time = step, now

    def pause_done(self, now: float) -> None:
        """Time since the last step went to something else (an evaluation, a save): kept out of the pace."""
        self.pause_seconds += max(0.0, now - self._last_time)
        self._last_time = now

    def eta(self, step: int, max_steps: int) -> Optional[float]:
        if self.seconds_per_step is None:
            return None
        pauses_per_step = self.pause_seconds / self.steps_done if self.steps_done else 0.0
        return max(0, max_steps - step) * (self.seconds_per_step + pauses_per_step)
