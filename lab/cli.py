"""Command line: `python -m lab train | config | predict | runs | show | cancel | resume | delete`.

User mistakes (LabError) print one line on stderr and exit with status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from lab.config import PEFT_METHODS, TASKS, RunConfig, default_config, example_yaml, field_help
from lab.errors import LabError
from lab.events import EvalEvent, Event, LogEvent, ResultEvent, StatusEvent, StepEvent

# CLI flag -> config key, for the flags the issue names (everything else goes through --set).
FLAG_TO_KEY = {
    "task": "task", "name": "name", "dataset": "data.dataset", "train_file": "data.train_file",
    "validation_file": "data.validation_file", "test_file": "data.test_file", "text_column": "data.text_column",
    "label_column": "data.label_column", "train_subset": "data.train_subset", "eval_subset": "data.eval_subset",
    "model": "model.name_or_path", "peft": "peft.method", "lr": "train.learning_rate",
    "batch_size": "train.train_batch_size", "epochs": "train.epochs", "max_steps": "train.max_steps",
    "max_length": "train.max_length", "seed": "train.seed",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab", description="Fine-Tuning Lab: fine-tune transformers "
                                     "for text classification and NER.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="Train one run from a config file and/or flags.")
    train.add_argument("config", nargs="?", help="A YAML config (see `python -m lab config --example ner`).")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="Override any config field, e.g. --set train.warmup_ratio=0.1 (repeatable).")
    train.add_argument("--task", choices=TASKS, help=field_help("", "task"))
    train.add_argument("--name", help=field_help("", "name"))
    train.add_argument("--dataset", help=field_help("data", "dataset"))
    for flag in ("train_file", "validation_file", "test_file", "text_column", "label_column",
                 "train_subset", "eval_subset"):
        train.add_argument("--" + flag.replace("_", "-"), dest=flag, help=field_help("data", flag))
    train.add_argument("--model", help=field_help("model", "name_or_path"))
    train.add_argument("--peft", choices=PEFT_METHODS, help=field_help("peft", "method"))
    train.add_argument("--lr", help=field_help("train", "learning_rate"))
    train.add_argument("--batch-size", dest="batch_size", help=field_help("train", "train_batch_size"))
    for flag in ("epochs", "max_steps", "max_length", "seed"):
        train.add_argument("--" + flag.replace("_", "-"), dest=flag, help=field_help("train", flag))
    train.add_argument("--output", help="Folder for checkpoints, the saved model and report.json "
                                        "(default: the run's folder in the runs directory).")
    train.add_argument("--run-id", help="Train a run already in the store (used by the process executor).")

    config = commands.add_parser("config", help="Print a complete, commented config.")
    config.add_argument("--example", choices=TASKS, default="classification")

    predict = commands.add_parser("predict", help="Use a finished run's model on text.")
    predict.add_argument("model_dir", help="A finished run's --output folder (or its model/ folder).")
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="One text (for NER: whitespace-separated words).")
    source.add_argument("--file", help="A UTF-8 file with one text per line.")
    predict.add_argument("--json", action="store_true", help="Print a JSON list, one object per input line.")

    from lab.cli_runs import add_run_commands

    add_run_commands(commands)
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    base = RunConfig.load(args.config) if args.config else default_config(args.task or "classification")
    assignments = [f"{FLAG_TO_KEY[flag]}={value}" for flag, value in vars(args).items()
                   if flag in FLAG_TO_KEY and value is not None]
    if (args.train_file or args.dataset is not None) and not args.config:
        # Flags that pick the data replace the default dataset rather than add to it.
        if args.train_file and args.dataset is None:
            assignments.insert(0, "data.dataset=")
        assignments.insert(0, "data.train_subset=0")
        assignments.insert(0, "data.eval_subset=0")
    return base.with_overrides(assignments + list(args.set)).validate()


def command_train(args: argparse.Namespace) -> int:
    if args.run_id:
        from lab.jobs import run_stored_job
        from lab.store import RunStore

        return run_stored_job(args.run_id, RunStore.open())
    config = config_from_args(args)
    from lab.jobs import run_in_foreground
    from lab.store import RunStore

    store = RunStore.open()
    run_id, code = run_in_foreground(config, output_dir=args.output, sink=TerminalReporter(), store=store)
    run = store.get_run(run_id)
    if run.status == "failed":
        # The run record keeps the traceback (python -m lab show RUN --traceback); the terminal gets one line.
        print(f"error: {run.message}", file=sys.stderr)
    elif run.status != "completed":
        print(f"{run.status}: {run.message}", file=sys.stderr)
    return code


def command_config(args: argparse.Namespace) -> int:
    sys.stdout.write(example_yaml(args.example))
    return 0


def command_predict(args: argparse.Namespace) -> int:
    from lab.predict import Predictor

    if args.file:
        path = Path(args.file)
        try:
            texts = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except FileNotFoundError:
            raise LabError(f"--file {path} does not exist.") from None
        except UnicodeDecodeError:
            raise LabError(f"--file {path} is not UTF-8 text.") from None
    else:
        texts = [args.text]
    if not texts:
        raise LabError("Nothing to predict: the input is empty.")
    predictor = Predictor(args.model_dir)
    predictions = predictor.predict(texts)
    if args.json:
        print(json.dumps([p.to_dict(predictor.task) for p in predictions], ensure_ascii=False, indent=2))
        return 0
    for prediction in predictions:
        if predictor.task == "ner":
            print(" ".join(f"{w}/{t}" for w, t in zip(prediction.words, prediction.tags)))
        else:
            ranked = sorted(prediction.probabilities.items(), key=lambda kv: -kv[1])
            print(f"{prediction.label}\t" + "  ".join(f"{k}={v:.3f}" for k, v in ranked) + f"\t{prediction.text}")
    return 0


class TerminalReporter:
    """An event sink that draws a progress bar and prints evaluation tables on the terminal."""

    def __init__(self, stream=None, bar_stream=None):
        # Tables and log lines go to stdout; the bar to stderr, so a failed run's stderr is the one error line.
        self.stream = stream or sys.stdout
        self.bar_stream = bar_stream or sys.stderr
        self.bar = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepEvent):
            self._advance(event)
        elif isinstance(event, EvalEvent):
            self._close_bar_line()
            self._print_eval(event)
        elif isinstance(event, LogEvent):
            self._write(event.message)
        elif isinstance(event, StatusEvent):
            self._write(f"[{event.status}] {event.message}".rstrip())
        elif isinstance(event, ResultEvent):
            self._close()
            self._write(f"done in {event.wall_seconds:.0f} s; model saved in {event.output_dir}")

    def _advance(self, event: StepEvent) -> None:
        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(total=event.max_steps, unit="step", file=self.bar_stream, dynamic_ncols=True)
        self.bar.update(event.step - self.bar.n)
        self.bar.set_postfix(loss=f"{event.loss:.4f}", lr=f"{event.learning_rate:.2e}",
                             tok_s=f"{event.tokens_per_second:.0f}")

    def _print_eval(self, event: EvalEvent) -> None:
        import pandas as pd

        from lab.metrics import format_report

        table = format_report(pd.DataFrame(event.per_label).set_index("label")) if event.per_label else ""
        headline = ", ".join(f"{k} {v:.4f}" for k, v in event.metrics.items())
        loss = f"loss {event.loss:.4f}, " if event.loss is not None else ""
        self._write(f"\n{event.split} at step {event.step}: {loss}{headline}\n{table}")

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.clear()
        print(text, file=self.stream, flush=True)
        if self.bar is not None:
            self.bar.refresh()

    def _close_bar_line(self) -> None:
        if self.bar is not None:
            self.bar.refresh()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


COMMANDS = {"train": command_train, "config": command_config, "predict": command_predict}


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
