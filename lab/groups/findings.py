"""A conclusion's sentences: a `Finding` is a sentence code and the figures that fill it
(lab.groups.conclusions draws them from a lesson's runs); `FINDINGS` holds the English sentences (the CLI's
and the JSON's), and the app's catalogues hold the same sentences under `lessons.finding.CODE` in each language
(tests/test_lessons.py keeps the English alike).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Finding:
    """One sentence of a conclusion: its code and the figures that fill it. Keys ending in `_seconds` hold
    seconds, which the reader writes as a duration in its language; every other value is text already."""

    code: str
    values: dict[str, Any] = field(default_factory=dict)


# The English sentences; {value} and {values} name the varied setting's values as `key=value`.
FINDINGS = {
    "waiting": "No run has finished yet: the conclusion is written from the runs' results as they come in.",
    "partial": "{done} of {total} runs have finished; this is drawn from those.",
    "best": "{value} scored best: {metric} {score} on the held-out test set.",
    "tied": "{values} tied for best at {metric} {score} (within {margin} of each other).",
    "margin": (
        "That is {difference} above {runner_up} ({runner_up_score}) and {spread} above the worst, {worst} "
        "({worst_score})."
    ),
    "margin_one": "That is {difference} above {runner_up} ({runner_up_score}).",
    "diverged": "At {value} the training loss rose from {first} to {last}: too large a step, the run diverged.",
    "barely_moved": "At {value} the training loss barely moved ({first} to {last}): too small a step.",
    "learned": "At {value} the training loss fell from {first} to {last}.",
    "no_fall": (
        "At {value} the training loss went up ({first} to {last}) where a smaller rate learned: too large a step."
    ),
    "spiked": (
        "At {value} the training loss jumped to {peak} and ended at {last}, no lower than where the runs started"
        " ({start}), while a smaller rate learned: too large a step."
    ),
    "flat": "At {value} the training loss barely moved ({first} to {last}); no rate learned on this budget.",
    "turned_up": (
        "Without early stopping, validation loss was lowest at step {best_step} ({best_loss}) and rose to "
        "{last_loss} by step {last_step} while the training loss fell to {train_loss}: past step {best_step} "
        "the model memorised the training set."
    ),
    "metric_kept_rising": (
        "Yet validation {metric} still rose from {best_score} at step {best_step} to {last_score} at step {last_step}:"
        " the loss also grows with confident mistakes, while {metric} counts only right and wrong answers."
    ),
    "no_turn": (
        "Validation loss fell until the last evaluation (step {last_step}, {last_loss}): these epochs did not"
        " yet overfit."
    ),
    "early_stop": (
        "With early stopping (patience {patience}) the run stopped at step {steps} of {max_steps}, "
        "{saved_seconds} sooner, at {metric} {score} against {other_score} for the full run."
    ),
    "no_early_stop": (
        "Early stopping (patience {patience}) never stopped the run: the validation metric kept improving."
    ),
    "returns_stop": "Returns stop at {value}: no larger value gains more than {margin} over it.",
    "cost": "{value}: {metric} {score}, training {trainable} parameters ({share} of the model) in {run_seconds}.",
    "spread": (
        "The {count} seeds scored from {low} to {high} ({metric}; spread {spread}, standard deviation "
        "{deviation}): believe a difference between two settings only when it is larger than that."
    ),
    "repeat": (
        "Everything else was fixed: the same data split (data.split_seed {split_seed}), config and code. The "
        "seed sets the new weights, dropout and the order of batches, so one seed run again repeats its run."
    ),
    "uncut": "At {value}, truncation cut no test word.",
    "recall": "Entity recall went from {low_recall} at {low} to {high_recall} at {high}.",
    "cut": (
        "At {value}, truncation cut {cut} of {words} test words ({share}); a cut word counts as tagged O, so "
        "its entities are lost."
    ),
    "failed": "{values} did not finish ({status}); the conclusion leaves them out.",
    "within_noise": (
        "The lead of {value} over {runner_up} ({difference}) is no larger than the {spread} over which {seeds} seeds"
        " of one config spread on this data ({group}): seed noise alone could explain it."
    ),
    "beyond_noise": (
        "The lead of {value} over {runner_up} ({difference}) is larger than the {spread} over which {seeds} seeds"
        " of one config spread on this data ({group}): more than seed noise."
    ),
    "noise_unknown": (
        "How large a lead seed noise alone makes on this data is not measured yet: the seeds lesson on the same"
        " data and model measures it."
    ),
}


def seconds_in_english(seconds: float) -> str:
    return f"{seconds:.0f} s"


def finding_text(
    finding: Finding, templates: Mapping[str, str] = FINDINGS, duration: Callable[[float], str] = seconds_in_english
) -> str:
    """A finding as a sentence of `templates` (English by default; the app passes its language's), its
    seconds written by `duration`."""
    values = {key: duration(value) if key.endswith("_seconds") else value for key, value in finding.values.items()}
    return templates[finding.code].format(**values)
