"""`python -m bench.lr_sweep`: the learning-rate sweep behind each method's default rates (the
`learning_rates` of its record in `lab.methods.registry`, read through `lab.model.defaults`).

Trains one small run per (method, rate) with the lab's engine on an offline dataset and prints the
held-out metric of each, so the README's "Default learning rates" table can be reproduced (or
redone for another model). By default every method is tried at its current default and at a third
and three times that; `--rates lora=2e-3,6e-3` replaces a method's list.

    python -m bench.lr_sweep --task classification --dataset imdb --train-subset 1000 --epochs 1
    python -m bench.lr_sweep --task ner --dataset wnut16 --methods lora --rates lora=6e-3,2e-2 --epochs 1
    python -m bench.lr_sweep --small-set ner-240 --methods lora --rates lora=3e-3,1e-2 \\
        --set train.head_learning_rate=3e-2

`--small-set NAME` trains on a generated set (bench.small_sets) at bench.quality's small-set budget (3 epochs
of batch 16) instead of `--dataset` and the budget flags; `--set` changes any field of every run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

# Each rate is also tried at these multiples of the method's default.
DEFAULT_MULTIPLES = (1 / 3, 1.0, 3.0)


def build_parser() -> argparse.ArgumentParser:
    from lab.config import PEFT_METHODS  # importing lab decides offline mode before transformers loads

    parser = argparse.ArgumentParser(prog="python -m bench.lr_sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("classification", "ner"), help="Required unless --small-set names it.")
    parser.add_argument("--dataset", help="Default: imdb for classification, wnut16 for ner.")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--methods", default=",".join(PEFT_METHODS), help="Comma-separated PEFT methods.")
    parser.add_argument(
        "--rates",
        action="append",
        default=[],
        metavar="METHOD=LR,LR",
        help="Rates for one method instead of its default x 1/3, 1, 3 (repeatable).",
    )
    parser.add_argument("--train-subset", type=int, default=0, help="Training examples (0: all).")
    parser.add_argument("--eval-subset", type=int, default=300, help="Validation and test examples.")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, help="Append one JSON line per run to this file.")
    parser.add_argument("--small-set", help="A generated set (ner-240, topics-240, ...; bench.small_sets).")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="Any config field for every run (repeatable)."
    )
    return parser


def sweep_grid(task: str, methods: Sequence[str], overrides: Sequence[str]) -> list[tuple[str, float]]:
    """(method, rate) pairs: each method's default x DEFAULT_MULTIPLES unless `METHOD=LR,...` replaces it."""
    from lab.config import PEFT_METHODS
    from lab.model.defaults import DEFAULT_LEARNING_RATES

    given: dict[str, list[float]] = {}
    for override in overrides:
        method, _, rates = override.partition("=")
        if method not in PEFT_METHODS or not rates:
            raise SystemExit(
                f"--rates takes METHOD=LR[,LR...] with a method from {', '.join(PEFT_METHODS)}; got {override!r}."
            )
        try:
            given[method] = [float(rate) for rate in rates.split(",")]
        except ValueError:
            raise SystemExit(f"--rates {override!r}: rates must be numbers such as 2e-3.") from None
    grid = []
    for method in methods:
        if method not in PEFT_METHODS:
            raise SystemExit(f"Unknown method {method!r}; choose from {', '.join(PEFT_METHODS)}.")
        default = DEFAULT_LEARNING_RATES[task][method]
        rates = given.get(method) or [float(f"{default * m:.2g}") for m in DEFAULT_MULTIPLES]
        grid += [(method, rate) for rate in rates]
    return grid


def sweep_config(args: argparse.Namespace, method: str, rate: float):
    from bench.quality import small_set_config
    from lab.config import DataConfig, ModelConfig, PeftSettings, RunConfig, TrainConfig

    if args.small_set:
        settings = [f"peft.method={method}", f"train.learning_rate={rate}", f"train.seed={args.seed}", *args.set]
        return small_set_config(args.small_set, args.model, settings).with_overrides([f"name=sweep-{method}-{rate:g}"])
    config = RunConfig(
        task=args.task,
        name=f"sweep-{method}-{rate:g}",
        data=DataConfig(
            dataset=args.dataset or ("imdb" if args.task == "classification" else "wnut16"),
            train_subset=args.train_subset,
            eval_subset=args.eval_subset,
        ),
        model=ModelConfig(name_or_path=args.model),
        peft=PeftSettings(method=method),
        train=TrainConfig(
            learning_rate=rate,
            epochs=args.epochs,
            train_batch_size=args.batch_size,
            max_length=args.max_length,
            seed=args.seed,
            save_total_limit=1,
        ),
    )
    return config.with_overrides(args.set).validate()


def run_one(args: argparse.Namespace, method: str, rate: float) -> dict[str, Any]:
    from lab.events import EvalEvent
    from lab.training.engine import train
    from lab.training.metrics import primary_metric_name

    config = sweep_config(args, method, rate)
    curve: list[tuple[int, float]] = []  # (step, validation metric) at each evaluation

    def record(event: object) -> None:
        if isinstance(event, EvalEvent) and event.split == "validation":
            curve.append((event.step, event.metrics.get(primary_metric_name(config.task), 0.0)))

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lab-sweep-") as output:
        result = train(config, output, record)
    headline = primary_metric_name(config.task)
    return {
        "task": config.task,
        "dataset": args.small_set or config.data.dataset,
        "settings": args.set,
        "method": method,
        "learning_rate": rate,
        "metric": headline,
        "test": result.metrics.get(headline),
        "steps": result.completed_steps,
        "seconds": round(time.perf_counter() - started, 1),
        "validation": curve,
        **{f"test_{name}": value for name, value in result.metrics.items()},
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from bench.run import quiet_libraries
    from lab.errors import LabError

    quiet_libraries()

    if args.small_set:
        from bench.small_sets import TASKS, parse_name

        args.task = TASKS[parse_name(args.small_set)[0]]
    elif not args.task:
        raise SystemExit("Give --task (classification or ner) or --small-set.")
    grid = sweep_grid(args.task, [m.strip() for m in args.methods.split(",") if m.strip()], args.rates)
    print(f"{'method':<9} {'rate':>8} {'test metric':>12} {'steps':>6} {'seconds':>8}", flush=True)
    for method, rate in grid:
        try:
            record = run_one(args, method, rate)
        except LabError as exc:
            print(f"{method:<9} {rate:>8.2g}  failed: {exc}", flush=True)
            continue
        curve = " ".join(f"{step}:{value:.2f}" for step, value in record["validation"])
        print(
            f"{method:<9} {rate:>8.2g} {record['metric']:>5} {record['test']:.3f} {record['steps']:>6} "
            f"{record['seconds']:>8.0f}  validation {curve}",
            flush=True,
        )
        if args.json:
            with args.json.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
