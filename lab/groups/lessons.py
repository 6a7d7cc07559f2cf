"""Lessons: a question, runs that vary one setting on a fixed small budget, and a conclusion computed from
what those runs measured.

A lesson's runs are a group in the run store (`lesson NAME DATASET DATE TIME`), queued by the app's job
runner or trained one after another by `python -m lab lesson run NAME`, so they survive a reload, resume
and show on the Runs page like a comparison's. Each run's varied value is read back from its stored config.

Their conclusion is computed from what the runs measured, in lab.groups.conclusions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from lab.config import LORA_FAMILY, RunConfig
from lab.errors import ConfigError
from lab.events import EvalEvent, Event, ProgressEvent, StepEvent, TruncationEvent
from lab.training.metrics import primary_metric_name

if TYPE_CHECKING:
    from lab.groups.conclusions import RunOutcome, SeedNoise
    from lab.groups.findings import Finding
    from lab.runs.records import RunRecord
    from lab.runs.store import RunStore

GROUP_PREFIX = "lesson "  # a lesson's group name starts so (a comparison's with "compare ")


@dataclass(frozen=True)
class Lesson:
    name: str  # the CLI's name
    question: str  # English; the app's catalogue has it under lessons.NAME.question
    task: str  # the task whose built-in data and one-click budget it starts from
    setting: str  # the config key its runs vary
    values: tuple[Any, ...]  # the setting's values; for the learning rate, multiples of the method's default
    budget: tuple[str, ...] = ()  # `section.field=value` overrides of the task's lesson budget
    # The wall time of `python -m lab lesson run NAME` at the default budget on the offline data, measured on
    # this project's idle 2-core CPU (README, "Lessons"); a busy machine takes longer.
    planned_seconds: int = 0


# The budget every lesson of a task starts from: the Home page's one-click run, made smaller (fewer, shorter
# reviews; fewer NER epochs) so each run takes a minute or two on a laptop CPU, evaluated often.
TASK_BUDGET = {
    "classification": (
        "data.train_subset=1000",
        "train.max_length=128",
        "train.eval_steps=16",
        "train.logging_steps=4",
    ),
    "ner": ("train.epochs=2", "train.eval_steps=25", "train.logging_steps=5"),
}

LESSONS = {
    lesson.name: lesson
    for lesson in (
        Lesson(
            "learning-rate",
            "Which learning rate learns, which barely moves, and which is too large?",
            "classification",
            "train.learning_rate",
            (0.01, 0.1, 1.0, 30.0),  # times the method's default rate: too small, small, right, too large
            planned_seconds=390,
        ),
        Lesson(
            "data-size",
            "How much does more training data help, at the same number of steps?",
            "classification",
            "data.train_subset",
            (100, 300, 1000, 3000),
            budget=("train.max_steps=80", "train.eval_steps=20"),
            planned_seconds=410,
        ),
        Lesson(
            "overfitting",
            "What happens when a model trains for many epochs on a small set, and what does early stopping save?",
            "classification",
            "train.early_stopping_patience",
            (0, 2),
            budget=(
                "peft.method=full",
                "data.train_subset=200",
                "train.max_length=64",
                "train.epochs=8",
                "train.eval_steps=13",
            ),
            planned_seconds=140,
        ),
        Lesson(
            "what-to-train",
            "Train only the head, low-rank adapters (LoRA), or every weight: what does each buy, at what cost?",
            "classification",
            "peft.method",
            ("head", "lora", "full"),
            planned_seconds=270,
        ),
        Lesson(
            "lora-rank",
            "How large must LoRA's rank be before a larger one stops helping?",
            "classification",
            "peft.r",
            (1, 4, 16, 64),
            budget=("peft.method=lora",),
            planned_seconds=370,
        ),
        Lesson(
            "seeds",
            "How far apart do runs of the same config land on different seeds?",
            "classification",
            "train.seed",
            (1, 2, 3),
            planned_seconds=290,
        ),
        Lesson(
            "ner-length",
            "What does a short max_length cost in NER, where every word needs a tag?",
            "ner",
            "train.max_length",
            (16, 32, 64),
            planned_seconds=190,
        ),
    )
}


def get_lesson(name: str) -> Lesson:
    try:
        return LESSONS[name]
    except KeyError:
        raise ConfigError(f"Unknown lesson {name!r}; choose one of {', '.join(LESSONS)}.") from None


def lesson_base(lesson: Lesson, task: str = "") -> RunConfig:
    """The config a lesson's runs start from before the user's flags: the task's one-click run (its offline
    form), at the lessons' budget for the task and the lesson's own settings."""
    from lab.groups.one_click import one_click_runs

    task = task or lesson.task
    card = next(card.config for card in one_click_runs(offline=True) if card.config.task == task)
    # A lesson's runs ask for one thing each; the card's run name would mislead on the Runs page.
    return card.with_overrides([*TASK_BUDGET[task], *lesson.budget, "name="])


def lesson_values(lesson: Lesson, base: RunConfig) -> list[Any]:
    """The values the runs take: the learning rate's are multiples of the base method's default rate."""
    if lesson.setting != "train.learning_rate":
        return list(lesson.values)
    from lab.model.defaults import learning_rate_for

    rate = base.train.learning_rate  # auto (a range test) has no number yet: multiples of the method's default
    default = rate if isinstance(rate, float) else learning_rate_for(base.with_overrides(["train.learning_rate="]))
    return [float(f"{factor * default:.3g}") for factor in lesson.values]


def parse_values(text: str, lesson: Lesson) -> list[Any]:
    """`--values 1e-4,1e-3`: the user's own values of the lesson's setting, checked as config values."""
    values = [part.strip() for part in text.split(",") if part.strip()]
    if not values:
        raise ConfigError(f"Give at least one value of {lesson.setting}, comma separated.")
    return values


def value_assignments(setting: str, value: Any) -> list[str]:
    """What one value of the setting sets. The learning rate moves the head with it (one rate for every
    trained weight, so "too small" really barely moves); a method trains at its own default rates and
    pooling; LoRA's alpha follows its rank (alpha = 2r), so the update's scale stays and only capacity grows."""
    if setting == "train.learning_rate":
        return [f"train.learning_rate={value}", f"train.head_learning_rate={min(float(value), 0.5)}"]
    if setting == "peft.method":
        return [f"peft.method={value}", "train.learning_rate=", "train.head_learning_rate=", "model.pooling=auto"]
    if setting == "peft.r":
        return [f"peft.r={value}", f"peft.alpha={2 * int(value)}"]
    return [f"{setting}={value}"]


def lesson_configs(lesson: Lesson, base: RunConfig, values: Optional[Sequence[Any]] = None) -> list[RunConfig]:
    """One validated config per value of the lesson's setting, named after it."""
    if lesson.setting.startswith("peft.r") and base.peft.method not in LORA_FAMILY:
        raise ConfigError(
            f"The {lesson.name} lesson varies a low-rank method's rank: choose --peft {' or '.join(LORA_FAMILY)}."
        )
    configs = []
    for value in values if values is not None else lesson_values(lesson, base):
        config = base.with_overrides(value_assignments(lesson.setting, value))
        shown = config.flat()[lesson.setting]
        config.name = f"{config.dataset_name}: {lesson.name} {lesson.setting.split('.')[-1]}={shown} (lesson)"
        configs.append(config.validate())
    return configs


def group_name(lesson: Lesson, config: RunConfig, name: str = "") -> str:
    """`lesson NAME LABEL`, by default `lesson NAME DATASET DATE TIME`."""
    label = name.strip() or f"{config.dataset_name} {time.strftime('%Y-%m-%d %H:%M:%S')}"
    return f"{GROUP_PREFIX}{lesson.name} {label}"


def lesson_of_group(group: str) -> Optional[Lesson]:
    """The lesson a group name belongs to; None for a comparison's or a sweep's group."""
    if not group.startswith(GROUP_PREFIX):
        return None
    return LESSONS.get(group[len(GROUP_PREFIX) :].split(" ", 1)[0])


def expected_seconds(configs: Sequence[RunConfig]) -> float:
    """The lab's pre-flight estimate of all the runs on this machine (lab.training.estimate), added up."""
    from lab.training.estimate import estimate

    return sum(estimate(config).total_seconds for config in configs)


# ---- a lesson's group in the run store ---------------------------------------------------------------
@dataclass
class LessonRun:
    record: RunRecord
    outcome: RunOutcome


def lesson_runs(store: RunStore, lesson: Lesson, group: str) -> list[LessonRun]:
    """The group's runs in the order of the setting's values (numbers ascending, names as the lesson lists
    them); of a value run twice, the newest. Each value is read from the run's stored config."""
    runs = []
    for record, config in _newest_per_value(store, lesson, group):
        events = [event for _, event in store.events_since(record.id)]
        runs.append(
            LessonRun(record, run_outcome(record, events, config.flat()[lesson.setting], config.data.split_seed))
        )
    return sorted(runs, key=lambda run: _value_order(lesson, run.outcome.value))


def _newest_per_value(store: RunStore, lesson: Lesson, group: str) -> list[tuple[RunRecord, RunConfig]]:
    """The group's runs with their stored configs: of a value of the lesson's setting run twice, the newest."""
    newest: dict[str, tuple[RunRecord, RunConfig]] = {}
    for record in sorted(store.list_runs(group=group), key=lambda run: run.created_at):
        config = store.load_config(record.id)
        newest[str(config.flat()[lesson.setting])] = (record, config)
    return list(newest.values())


def _value_order(lesson: Lesson, value: Any) -> tuple[int, float]:
    if isinstance(value, (int, float)):
        return 0, float(value)
    return 1, float(lesson.values.index(value) if value in lesson.values else len(lesson.values))


def run_outcome(record: RunRecord, events: Sequence[Event], value: Any, split_seed: int) -> RunOutcome:
    """What the conclusion reads of one run: its test metrics, its losses, what it trained and how long."""
    from lab.groups.conclusions import RunOutcome

    metric = primary_metric_name(record.task)
    outcome = RunOutcome(
        value=value,
        status=record.status,
        metrics=dict(record.metrics),
        trainable_params=record.summary.get("trainable_params"),
        total_params=record.summary.get("total_params"),
        seconds=record.summary.get("wall_seconds"),
        split_seed=split_seed,
    )
    for event in events:
        if isinstance(event, (StepEvent, ProgressEvent)):
            outcome.steps, outcome.max_steps = max(outcome.steps, event.step), event.max_steps
        if isinstance(event, StepEvent) and event.loss == event.loss:  # NaN: nothing logged at this step
            outcome.losses.append(event.loss)
        elif isinstance(event, EvalEvent) and event.split == "validation":
            if event.loss is not None:
                outcome.validation_losses.append((event.step, event.loss))
            if metric in event.metrics:
                outcome.validation_scores.append((event.step, event.metrics[metric]))
                outcome.best_validation = max(outcome.best_validation or 0.0, event.metrics[metric])
        elif isinstance(event, TruncationEvent) and event.split == "test":  # only when truncation cut a word
            outcome.words_cut = (event.words_cut, event.words_total)
    return outcome


def lesson_conclusion(store: RunStore, lesson: Lesson, runs: Sequence[LessonRun]) -> list[Finding]:
    """The conclusion of `runs`, set against the spread of the newest seeds lesson in `store` on the same
    data and model, when there is one."""
    from lab.groups.conclusions import conclude

    if not runs:
        return []
    metric = primary_metric_name(runs[0].record.task)
    noise = measured_seed_noise(store, store.load_config(runs[0].record.id)) if lesson.setting != "train.seed" else None
    return conclude(lesson.setting, [run.outcome for run in runs], metric, noise)


def measured_seed_noise(store: RunStore, config: RunConfig) -> Optional[SeedNoise]:
    """How far the newest seeds lesson in `store` on `config`'s task, data and model spread (its finished
    runs' test metric, one run per seed); None when no such lesson has two finished runs."""
    from lab.groups.conclusions import SeedNoise

    metric, wanted, seeds = primary_metric_name(config.task), _data_and_model(config), LESSONS["seeds"]
    for group in store.groups():  # newest first
        if lesson_of_group(group) is not seeds:
            continue
        runs = _newest_per_value(store, seeds, group)  # a seed run twice counts once
        scores = [
            record.metrics[metric]
            for record, seeded in runs
            if metric in record.metrics and _data_and_model(seeded) == wanted
        ]
        if len(scores) >= 2:
            return SeedNoise(max(scores) - min(scores), len(scores), group)
    return None


def _data_and_model(config: RunConfig) -> tuple[str, ...]:
    return config.task, config.data.dataset, config.data.train_file, config.model.name_or_path


def lesson_report(store: RunStore, lesson: Lesson, runs: Sequence[LessonRun]) -> dict[str, Any]:
    """What `python -m lab lesson run --json` writes: each run's value and held-out metrics, and the
    conclusion in English."""
    from lab.groups.findings import finding_text

    return {
        "lesson": lesson.name,
        "question": lesson.question,
        "runs": [{"id": run.record.id, "value": run.outcome.value, "metrics": run.record.metrics} for run in runs],
        "conclusion": " ".join(finding_text(finding) for finding in lesson_conclusion(store, lesson, runs)),
    }
