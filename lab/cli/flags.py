"""The CLI's flag table, and the inverse: the `python -m lab train` command that builds a config.

Flags exist for the settings people change most; every other field goes through `--set key=value`.
The app shows `cli_command(config)` beside its form, so a run started in the browser can be repeated
in a terminal.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any, Optional

import yaml

from lab.config import RunConfig, default_config

# CLI flag -> config key, for the flags the issue names (everything else goes through --set).
FLAG_TO_KEY = {
    "task": "task",
    "name": "name",
    "dataset": "data.dataset",
    "train_file": "data.train_file",
    "validation_file": "data.validation_file",
    "test_file": "data.test_file",
    "text_column": "data.text_column",
    "label_column": "data.label_column",
    "train_subset": "data.train_subset",
    "eval_subset": "data.eval_subset",
    "model": "model.name_or_path",
    "peft": "peft.method",
    "lr": "train.learning_rate",
    "head_lr": "train.head_learning_rate",
    "batch_size": "train.train_batch_size",
    "epochs": "train.epochs",
    "max_steps": "train.max_steps",
    "max_length": "train.max_length",
    "seed": "train.seed",
}


def config_from_args(args: argparse.Namespace, budget: Optional[RunConfig] = None) -> RunConfig:
    """The config a command's YAML and flags describe. Without a YAML it starts from `budget` (a command's
    own default, kept whatever data the flags pick), else from the task's default config."""
    base = RunConfig.load(args.config) if args.config else budget or default_config(args.task or "classification")
    assignments = [
        f"{FLAG_TO_KEY[flag]}={value}"
        for flag, value in vars(args).items()
        if flag in FLAG_TO_KEY and value is not None
    ]
    if args.train_file and args.dataset is None:
        # A file picked on the command line replaces the dataset of the default or of the YAML.
        assignments.insert(0, "data.dataset=")
    if (args.train_file or args.dataset is not None) and not args.config and budget is None:
        # ... and the default's demo-sized subsets.
        assignments.insert(0, "data.train_subset=0")
        assignments.insert(0, "data.eval_subset=0")
    return base.with_overrides(assignments + list(args.set)).validate()


def add_config_flags(parser: argparse.ArgumentParser, one_method: bool = True) -> None:
    """The flags that build a run config (`train`, `compare`): a YAML, --set, and the common fields
    (the method and its learning rates only where one method is trained)."""
    from lab.config import PEFT_METHODS, TASKS, field_help

    parser.add_argument("config", nargs="?", help="A YAML config (see `python -m lab config --example ner`).")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Override any config field, e.g. --set train.warmup_ratio=0.1 (repeatable).",
    )
    parser.add_argument("--task", choices=TASKS, help=field_help("", "task"))
    parser.add_argument("--name", help=field_help("", "name"))
    parser.add_argument("--dataset", help=field_help("data", "dataset"))
    for flag in (
        "train_file",
        "validation_file",
        "test_file",
        "text_column",
        "label_column",
        "train_subset",
        "eval_subset",
    ):
        parser.add_argument("--" + flag.replace("_", "-"), dest=flag, help=field_help("data", flag))
    parser.add_argument("--model", help=field_help("model", "name_or_path"))
    if one_method:
        parser.add_argument("--peft", choices=PEFT_METHODS, help=field_help("peft", "method"))
        parser.add_argument("--lr", help=field_help("train", "learning_rate"))
        parser.add_argument("--head-lr", help=field_help("train", "head_learning_rate"))
    parser.add_argument("--batch-size", dest="batch_size", help=field_help("train", "train_batch_size"))
    for flag in ("epochs", "max_steps", "max_length", "seed"):
        parser.add_argument("--" + flag.replace("_", "-"), dest=flag, help=field_help("train", flag))


def _scalar(value: Any) -> str:
    """A value as the CLI reads it back (`key=value` is parsed as a YAML scalar)."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(map(str, value))
    dumped = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    return dumped.removesuffix("...").strip()


def cli_command(config: RunConfig) -> str:
    """`python -m lab train ...` that builds exactly this config (flags where the CLI has one, else --set)."""
    flag_for = {key: "--" + flag.replace("_", "-") for flag, key in FLAG_TO_KEY.items()}
    base = default_config(config.task)
    # Picking the data on the command line resets the default's subsets (see config_from_args).
    reset = ["data.eval_subset=0", "data.train_subset=0"]
    if config.data.train_file:
        reset.append("data.dataset=")
    base = base.with_overrides(reset)
    parts = ["python -m lab train", "--task", config.task]
    if config.data.train_file:
        parts += ["--train-file", config.data.train_file]
    else:
        parts += ["--dataset", config.data.dataset]
    base_values = base.flat()
    shown = {"task", "data.train_file", "data.dataset"}
    settings = []
    for key, value in config.flat().items():
        if key in shown or base_values.get(key) == value:
            continue
        if key in flag_for:
            parts += [flag_for[key], _scalar(value)]
        else:
            settings += ["--set", f"{key}={_scalar(value)}"]
    tokens = [parts[0]] + [shlex.quote(p) for p in parts[1:] + settings]
    # One option per line keeps a long command readable.
    lines, line = [], tokens[0]
    for token in tokens[1:]:
        if token.startswith("--"):
            lines.append(line)
            line = token
        else:
            line += " " + token
    lines.append(line)
    return " \\\n  ".join(lines)
