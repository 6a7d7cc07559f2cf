"""A lesson's conclusion, computed from what its runs measured: a list of `Finding`s (lab.groups.findings:
a sentence code and the figures that fill it). Nothing is written before the runs end: which value won and by
how much, what diverged, where validation loss turned up, what early stopping saved, where returns stop, how
far seeds spread, what truncation cut, and whether the winner's lead is larger than the spread a seeds lesson
measured on the same data.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from lab.groups.findings import Finding

# Scores this close to the best count as tied: a test set of a few hundred examples cannot tell them apart.
TIE_MARGIN = 0.005
# A larger value that gains less than this over a smaller one has stopped paying back ("returns stop").
RETURNS_MARGIN = 0.01
# A training loss that ends above this share of where it started barely moved; above RISEN, it diverged
# (a few per cent either way is the noise of small batches).
BARELY_MOVED = 0.95
RISEN = 1.1


@dataclass
class RunOutcome:
    """One run of a lesson as the conclusion reads it."""

    value: Any  # the varied setting's value in this run
    status: str
    metrics: dict[str, float] = field(default_factory=dict)  # held-out test metrics; empty until the run ends
    losses: list[float] = field(default_factory=list)  # training loss at each logging step
    validation_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) per evaluation
    validation_scores: list[tuple[int, float]] = field(default_factory=list)  # (step, the task's metric)
    best_validation: Optional[float] = None  # the best validation value of the task's metric
    steps: int = 0  # optimizer steps done
    max_steps: int = 0  # steps the run was set to take
    trainable_params: Optional[int] = None
    total_params: Optional[int] = None
    seconds: Optional[float] = None
    words_cut: Optional[tuple[int, int]] = None  # NER: test words truncation cut, of all test words
    split_seed: Optional[int] = None  # the seed that carved the data splits


@dataclass(frozen=True)
class SeedNoise:
    """How far runs of one config landed on different seeds, measured by a seeds lesson on the same data and
    model: the yardstick a lead must beat before it reads as more than seed noise."""

    spread: float  # the best seed's score minus the worst's
    seeds: int
    group: str  # the seeds lesson's group


def conclude(
    setting: str, outcomes: Sequence[RunOutcome], metric: str, noise: Optional[SeedNoise] = None
) -> list[Finding]:
    """The conclusion of a lesson's runs (in the order of the lesson's values, each a value of `setting`,
    e.g. train.learning_rate), from their measurements only; `noise`, a seeds lesson's spread on the same
    data, says whether the winner's lead is more than seed noise."""
    finished = [run for run in outcomes if metric in run.metrics]
    if not finished:
        return [Finding("waiting")]
    findings = []
    if len(finished) < len(outcomes):
        active = any(run.status in ("queued", "running") for run in outcomes)
        if active:
            findings.append(Finding("partial", {"done": len(finished), "total": len(outcomes)}))
        else:
            lost = [run for run in outcomes if metric not in run.metrics]
            status = ", ".join(sorted({run.status for run in lost}))
            findings.append(Finding("failed", {"values": _names(setting, lost), "status": status}))
    findings += _winner(setting, finished, metric)
    if setting != "train.seed":
        findings += _against_noise(setting, finished, metric, noise)
    specific = {
        "train.learning_rate": _loss_movement,
        "train.early_stopping_patience": _overfitting,
        "data.train_subset": _returns,
        "peft.r": _returns,
        "peft.method": _costs,
        "train.seed": _spread,
        "train.max_length": _truncation,
    }.get(setting)
    if specific is not None:
        findings += specific(setting, finished if specific is not _loss_movement else list(outcomes), metric)
    return findings


def _named(setting: str, value: Any) -> str:
    return f"{setting.split('.')[-1]}={_shown(value)}"


def _names(setting: str, runs: Sequence[RunOutcome]) -> str:
    return ", ".join(_named(setting, run.value) for run in runs)


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _score(value: float) -> str:
    return f"{value:.3f}"


def _gap(higher: float, lower: float) -> float:
    """A difference as the sentences print it (3 decimals), so 0.810 - 0.805 counts as the 0.005 it reads,
    not as 0.0050000000000000044, and no sentence says "tied within 0.005" beside "0.005 above"."""
    return round(higher - lower, 3)


def _winner(setting: str, finished: Sequence[RunOutcome], metric: str) -> list[Finding]:
    ranked = sorted(finished, key=lambda run: -run.metrics[metric])
    best = ranked[0].metrics[metric]
    tied = [run for run in finished if _gap(best, run.metrics[metric]) <= TIE_MARGIN]  # in the lesson's order
    if len(tied) > 1:
        winner = Finding(
            "tied",
            {"values": _names(setting, tied), "metric": metric, "score": _score(best), "margin": _score(TIE_MARGIN)},
        )
    else:
        winner = Finding("best", {"value": _named(setting, ranked[0].value), "metric": metric, "score": _score(best)})
    findings = [winner]
    rest = ranked[len(tied) :]
    if rest:
        runner_up, worst = rest[0], ranked[-1]
        # Runners-up as close to each other as a tie are named together, in the lesson's order ("seed=1, seed=3").
        second = runner_up.metrics[metric]
        close = [
            run for run in finished if _gap(best, run.metrics[metric]) > TIE_MARGIN >= _gap(second, run.metrics[metric])
        ]
        values = {
            "difference": _score(best - second),
            "runner_up": _names(setting, close),
            "runner_up_score": _score(second),
        }
        if len(close) == len(rest):
            findings.append(Finding("margin_one", values))
        else:
            worst_values = {
                "spread": _score(best - worst.metrics[metric]),
                "worst": _named(setting, worst.value),
                "worst_score": _score(worst.metrics[metric]),
            }
            findings.append(Finding("margin", {**values, **worst_values}))
    return findings


def _against_noise(
    setting: str, finished: Sequence[RunOutcome], metric: str, noise: Optional[SeedNoise]
) -> list[Finding]:
    """Whether a single winner's lead over the runner-up beats the seeds' spread (said only of a lead)."""
    ranked = sorted(finished, key=lambda run: -run.metrics[metric])
    lead = _gap(ranked[0].metrics[metric], ranked[1].metrics[metric]) if len(ranked) >= 2 else 0.0
    if lead <= TIE_MARGIN:
        return []
    if noise is None:
        return [Finding("noise_unknown")]
    values = {
        "value": _named(setting, ranked[0].value),
        "runner_up": _named(setting, ranked[1].value),
        "difference": _score(lead),
        "spread": _score(noise.spread),
        "seeds": noise.seeds,
        "group": noise.group,
    }
    return [Finding("within_noise" if lead <= round(noise.spread, 3) else "beyond_noise", values)]


def _loss_movement(setting: str, runs: Sequence[RunOutcome], metric: str) -> list[Finding]:
    """Per rate: did the training loss fall, barely move, or rise (or turn NaN)? "Too small" and "too large"
    are said only against a rate of the same lesson that did learn: on a budget too short for any rate to
    learn, a flat loss says nothing about the rate."""
    moves = []
    for run in runs:
        if len(run.losses) >= 2:
            window = max(1, len(run.losses) // 4)  # the first and last quarter of logged losses, against noise
            moves.append((run, statistics.fmean(run.losses[:window]), statistics.fmean(run.losses[-window:])))
    learned = [_as_number(run.value) for run, first, last in moves if last <= BARELY_MOVED * first]
    start = min((first for _, first, _ in moves), default=math.nan)  # where the runs began: about chance
    findings = []
    for run, first, last in moves:
        values = {"value": _named(setting, run.value), "first": f"{first:.3f}", "last": f"{last:.3f}"}
        rate = _as_number(run.value)
        peak = max(run.losses)
        if math.isnan(last) or last > RISEN * first:
            code = "diverged"
        elif peak > RISEN * start and last > BARELY_MOVED * start and any(other < rate for other in learned):
            code = "spiked"  # fell from its own jump, but no lower than where every run began
            values.update(peak=f"{peak:.3f}", start=f"{start:.3f}")
        elif last <= BARELY_MOVED * first:
            code = "learned"
        elif last > first and any(other < rate for other in learned):
            code = "no_fall"  # a smaller rate learned where this one went up
        elif any(other > rate for other in learned):
            code = "barely_moved"
        else:
            code = "flat"
        findings.append(Finding(code, values))
    return findings


def _overfitting(setting: str, runs: Sequence[RunOutcome], metric: str) -> list[Finding]:
    """Where the longest run's validation loss turned up, and what the early-stopped run saved."""
    findings = []
    full = max(runs, key=lambda run: run.steps)
    if len(full.validation_losses) >= 2:
        best_step, best_loss = min(full.validation_losses, key=lambda point: point[1])
        last_step, last_loss = full.validation_losses[-1]
        if last_step > best_step:
            findings.append(
                Finding(
                    "turned_up",
                    {
                        "best_step": best_step,
                        "best_loss": f"{best_loss:.3f}",
                        "last_step": last_step,
                        "last_loss": f"{last_loss:.3f}",
                        "train_loss": f"{full.losses[-1]:.3f}" if full.losses else "–",
                    },
                )
            )
            scores = dict(full.validation_scores)
            if best_step in scores and last_step in scores and _gap(scores[last_step], scores[best_step]) > TIE_MARGIN:
                findings.append(
                    Finding(
                        "metric_kept_rising",
                        {
                            "metric": metric,
                            "best_step": best_step,
                            "best_score": _score(scores[best_step]),
                            "last_step": last_step,
                            "last_score": _score(scores[last_step]),
                        },
                    )
                )
        else:
            findings.append(Finding("no_turn", {"last_step": last_step, "last_loss": f"{last_loss:.3f}"}))
    for run in runs:
        if run is full or not _as_number(run.value):
            continue
        if run.steps < full.steps:
            saved = (full.seconds or 0) - (run.seconds or 0)
            findings.append(
                Finding(
                    "early_stop",
                    {
                        "patience": _shown(run.value),
                        "steps": run.steps,
                        "max_steps": run.max_steps or full.steps,
                        "saved_seconds": max(0.0, saved),
                        "metric": metric,
                        "score": _score(run.metrics[metric]),
                        "other_score": _score(full.metrics[metric]),
                    },
                )
            )
        else:
            findings.append(Finding("no_early_stop", {"patience": _shown(run.value)}))
    return findings


def _returns(setting: str, runs: Sequence[RunOutcome], metric: str) -> list[Finding]:
    """The smallest value that no larger one beats by more than RETURNS_MARGIN (data size, LoRA's rank)."""
    ordered = sorted(runs, key=lambda run: _as_number(run.value))
    findings = []
    if setting == "peft.r":
        findings += _costs(setting, ordered, metric)
    for index, run in enumerate(ordered[:-1]):
        larger = ordered[index + 1 :]
        if all(_gap(other.metrics[metric], run.metrics[metric]) <= RETURNS_MARGIN for other in larger):
            findings.append(
                Finding("returns_stop", {"value": _named(setting, run.value), "margin": _score(RETURNS_MARGIN)})
            )
            break
    return findings


def _costs(setting: str, runs: Sequence[RunOutcome], metric: str) -> list[Finding]:
    """Each run's metric beside what it trained and how long it took, cheapest first."""
    from lab.model.parameters import format_share

    ordered = sorted(runs, key=lambda run: run.trainable_params or 0)
    return [
        Finding(
            "cost",
            {
                "value": _named(setting, run.value),
                "metric": metric,
                "score": _score(run.metrics[metric]),
                "trainable": f"{run.trainable_params:,}",
                "share": format_share(run.trainable_params / run.total_params),
                "run_seconds": run.seconds or 0.0,
            },
        )
        for run in ordered
        if run.trainable_params and run.total_params
    ]


def _spread(setting: str, runs: Sequence[RunOutcome], metric: str) -> list[Finding]:
    scores = [run.metrics[metric] for run in runs]
    findings = []
    if len(scores) >= 2:
        findings.append(
            Finding(
                "spread",
                {
                    "count": len(scores),
                    "metric": metric,
                    "low": _score(min(scores)),
                    "high": _score(max(scores)),
                    "spread": _score(max(scores) - min(scores)),
                    "deviation": _score(statistics.pstdev(scores)),
                },
            )
        )
    split_seeds = {run.split_seed for run in runs if run.split_seed is not None}
    if len(split_seeds) == 1:
        findings.append(Finding("repeat", {"split_seed": split_seeds.pop()}))
    return findings


def _truncation(setting: str, runs: Sequence[RunOutcome], metric: str) -> list[Finding]:
    """The words each length cut, and the entity recall from the shortest length to the longest."""
    ordered = sorted(runs, key=lambda run: _as_number(run.value))
    findings = [
        Finding(
            "cut",
            {
                "value": _named(setting, run.value),
                "cut": f"{run.words_cut[0]:,}",
                "words": f"{run.words_cut[1]:,}",
                "share": f"{run.words_cut[0] / run.words_cut[1]:.1%}",
            },
        )
        if run.words_cut and run.words_cut[1]
        else Finding("uncut", {"value": _named(setting, run.value)})
        for run in ordered
    ]
    with_recall = [run for run in ordered if "recall" in run.metrics]
    if len(with_recall) >= 2:
        low, high = with_recall[0], with_recall[-1]
        findings.append(
            Finding(
                "recall",
                {
                    "low": _named(setting, low.value),
                    "low_recall": _score(low.metrics["recall"]),
                    "high": _named(setting, high.value),
                    "high_recall": _score(high.metrics["recall"]),
                },
            )
        )
    return findings


def _as_number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
