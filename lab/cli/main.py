"""The parser and the dispatch of `python -m lab`: every command's flags, one error line for a user's mistake."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Optional

from lab.cli.acting import ACTING_COMMANDS, add_as_flag
from lab.cli.assignment import add_assignment_command
from lab.cli.flags import add_config_flags
from lab.cli.lesson import add_lesson_command
from lab.cli.runs import add_run_commands
from lab.cli.sweep import add_sweep_command
from lab.cli.terminal import add_parallel_flag
from lab.cli.train import command_compare, command_config, command_predict, command_train
from lab.cli.users import add_users_command
from lab.config import PEFT_METHODS, TASKS
from lab.errors import LabError


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake (`--peft magic`) is one line naming the bad value and the choices,
    and where the command's help is, instead of the whole usage block."""

    def error(self, message: str):
        self.exit(2, f"error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m lab", description="Fine-Tuning Lab: fine-tune transformers for text classification and NER."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="Train one run from a config file and/or flags.")
    add_config_flags(train)
    train.add_argument(
        "--output",
        help="Folder for checkpoints, the saved model and report.json "
        "(default: the run's folder in the runs directory).",
    )
    train.add_argument("--run-id", help="Train a run already in the store (used by the process executor).")

    config = commands.add_parser("config", help="Print a complete, commented config.")
    config.add_argument("--example", choices=TASKS, default="classification")
    config.add_argument(
        "--script",
        metavar="CONFIG.yaml",
        help="Instead: print a standalone Python script (transformers + peft + datasets, no lab "
        "import) that does what a run of this config does.",
    )

    predict = commands.add_parser("predict", help="Use a finished run's model on text.")
    predict.add_argument("model_dir", help="A finished run's --output folder (or its model/ folder).")
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="One text (for NER: whitespace-separated words).")
    source.add_argument("--file", help="A UTF-8 file with one text per line.")
    predict.add_argument("--json", action="store_true", help="Print a JSON list, one object per input line.")
    predict.add_argument(
        "--explain",
        action="store_true",
        help="Also say why: each whitespace-separated word's attribution to the predicted label "
        "(NER: to the tag of the first entity word), by integrated gradients; with --json "
        "each item gains an attributions list, one number per word.",
    )
    predict.add_argument(
        "--split-punctuation",
        action="store_true",
        help="NER: split punctuation from words first (\"Paris,\" is \"Paris\" and \",\"), as "
        "CoNLL-style training data has it; without it, one tag per whitespace-separated word.",
    )

    compare = commands.add_parser(
        "compare",
        help="Train one run per PEFT method on the same data and budget, each at its default rate, "
        "and print them side by side.",
        description="Without a YAML the runs start from the Home page's one-click budget for the task "
        "(offline: IMDB or WNUT-16); the flags change it as they change `train`'s. The runs are a "
        "group in the run store (compare NAME with --name), shown together on the Runs and Compare pages.",
    )
    add_config_flags(compare, one_method=False)
    compare.add_argument(
        "--methods", default="all", help=f"Comma-separated PEFT methods ({', '.join(PEFT_METHODS)}), or all (default)."
    )
    add_parallel_flag(compare)

    add_sweep_command(commands)
    add_lesson_command(commands)
    add_run_commands(commands)
    add_users_command(commands)
    add_assignment_command(commands)
    for name in ACTING_COMMANDS:
        for command in _leaf_parsers(commands.choices[name]):
            add_as_flag(command)
    return parser


def _leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parser itself, or the parsers of its actions (`lesson run`), where a command's flags go."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return [leaf for sub in action.choices.values() for leaf in _leaf_parsers(sub)]
    return [parser]


COMMANDS = {"train": command_train, "compare": command_compare, "config": command_config, "predict": command_predict}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = COMMANDS.get(args.command) or args.handler
    try:
        return handler(args)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `python -m lab runs | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # what is left to flush goes nowhere
        return 0
