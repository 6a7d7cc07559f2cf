"""Compare methods: one run per PEFT method on the same data, model, budget and seeds, as a group in the store.

Each method trains at its own default learning rate, head rate and pooling (lab.model.defaults):
the comparison answers "which method, at the lab's defaults?", not "which method, at one rate?". The
data split is the same for every run (data.split_seed), so their test metrics are scored on the same
examples. The app queues the runs through the job runner; `python -m lab compare` trains them one
after another in the terminal. Either way the group's name ties them together on the Runs page.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import pandas as pd

from lab.config import PEFT_METHODS, RunConfig, default_config
from lab.errors import ConfigError
from lab.training.metrics import primary_metric_name

# The per-method settings a comparison resets, so each method runs at its measured default.
PER_METHOD_DEFAULTS = ("train.learning_rate=", "train.head_learning_rate=", "model.pooling=auto")


def parse_methods(text: str | Sequence[str]) -> list[str]:
    """`all`, or method names (comma separated, or a list), in PEFT_METHODS order, each once."""
    names = [text] if isinstance(text, str) else list(text)
    chosen = {part.strip() for name in names for part in name.split(",") if part.strip()}
    if not chosen:
        raise ConfigError(f"Choose at least one method: all, or some of {', '.join(PEFT_METHODS)}.")
    if "all" in chosen:
        return list(PEFT_METHODS)
    unknown = sorted(chosen - set(PEFT_METHODS))
    if unknown:
        raise ConfigError(f"Unknown method {unknown[0]!r}; choose from {', '.join(PEFT_METHODS)} or all.")
    return [method for method in PEFT_METHODS if method in chosen]


def comparison_base(task: str) -> RunConfig:
    """The budget a comparison starts from: the Home page's one-click run for the task (its offline form:
    WNUT-16 for NER), so each method's run takes minutes on a laptop CPU."""
    from lab.groups.one_click import one_click_runs

    return next(
        (card.config for card in one_click_runs(offline=True) if card.config.task == task), default_config(task)
    )


GROUP_PREFIX = "compare "  # a comparison's group name starts so (a sweep's with "sweep ")


def group_name(config: RunConfig, name: str = "") -> str:
    """`compare NAME`, or by default `compare TASK DATASET DATE TIME`."""
    return GROUP_PREFIX + (name.strip() or f"{config.task} {config.dataset_name} {time.strftime('%Y-%m-%d %H:%M:%S')}")


def method_configs(base: RunConfig, methods: Sequence[str]) -> list[RunConfig]:
    """One validated config per method: the base with that method at its defaults."""
    configs = []
    for method in methods:
        config = base.with_overrides([f"peft.method={method}", *PER_METHOD_DEFAULTS])
        config.name = f"{config.dataset_name}: {method} (compare)"
        configs.append(config.validate())
    return configs


def by_method(records: Sequence[Any]) -> list[Any]:
    """A group's runs (lab.runs.records.RunRecord) in PEFT_METHODS order, full first; the newest run of a
    method that was run twice."""
    newest: dict[str, Any] = {}
    for run in sorted(records, key=lambda run: run.created_at):
        newest[run.peft_method] = run
    return [newest[method] for method in PEFT_METHODS if method in newest]


@dataclass
class Comparison:
    """What a comparison will run: its group's name and one validated config per method."""

    group: str
    configs: list[RunConfig]

    def start(self, submit: Callable[[RunConfig, str], Any]) -> list[Any]:
        """`submit(config, group)` each run in method order (the app queues it, the CLI trains it); returns
        what each call returned."""
        return [submit(config, self.group) for config in self.configs]


def plan_comparison(base: RunConfig, methods: str | Sequence[str], name: str = "") -> Comparison:
    """The one way a comparison is set up, from the CLI or the app: `methods` parsed, each at its
    defaults on `base`, under `compare NAME` (or a dated name)."""
    return Comparison(group_name(base, name), method_configs(base, parse_methods(methods)))


TABLE_COLUMNS = [
    "method",
    "status",
    "test",
    "best validation",
    "trainable",
    "trainable share",
    "train seconds",
    "peak memory MB",
    "run",
]


def comparison_table(records: Sequence[Any], best_validation: Optional[Mapping[str, float]] = None) -> pd.DataFrame:
    """One row per method, in `by_method` order: status, held-out test metric, best validation metric
    (by run id, when the caller folded the runs' evaluations), trainable parameters and their share,
    training time and peak memory. Numbers stay numbers (None until the run ends); each face formats them."""
    best_validation = best_validation or {}
    rows = []
    for run in by_method(records):
        summary = run.summary
        trainable, total = summary.get("trainable_params"), summary.get("total_params")
        rows.append(
            {
                "method": run.peft_method,
                "status": run.status,
                "test": run.metrics.get(primary_metric_name(run.task)),
                "best validation": best_validation.get(run.id),
                "trainable": trainable,
                "trainable share": trainable / total if trainable and total else None,
                "train seconds": summary.get("wall_seconds"),
                "peak memory MB": summary.get("peak_memory_mb"),
                "run": run.id,
            }
        )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)
