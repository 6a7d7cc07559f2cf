"""`python -m bench.quality`: how well every PEFT method learns at its default, over several seeds.

For a task, a model and a budget preset, trains each method at its default learning rate and pooling
once per seed, each run a fresh `python -m lab train` process (so its peak memory is its own), and
prints one table: the held-out test metric (accuracy, or entity F1) as mean and spread over seeds,
trainable parameters and their share, wall time, peak memory, whether a run sat on the chance or
all-`O` plateau, and the published anchor for the dataset where one is known.

    python -m bench.quality --task classification --preset one-click
    python -m bench.quality --task ner --preset quick --methods lora,full --seeds 42,7
    python -m bench.quality --task classification --methods head,lora --seeds 42 --set model.pooling=mean \\
        --set data.train_subset=1000 --set data.eval_subset=300 --set train.epochs=1
    python -m bench.quality --small-set ner-240 --seeds 42     # a generated set (bench.small_sets), 45 steps

Presets: `quick` (CI-sized, minutes), `one-click` (the Home cards' budgets), `full` (hours on a
2-core CPU), `gpu` (the full sets with bert-base-sized batches, for a lent GPU). `--small-set NAME`
(ner-240, ner-1000, topics-240, topics-1000) trains on a generated set instead, at the small budget users
often bring: 3 epochs of batch 16 (240 sentences: 45 steps). `--set` changes any field of every run after
the preset.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SEEDS = (42, 7, 1234)
# Published figures for the full datasets (see issue "Results worth showing"), shown as the last row.
ANCHORS = {
    "imdb": "published: DistilBERT 92.8% and bert-base 93.5% accuracy (full 25k train)",
    "conll2003": "published: bert-base-cased test F1 91.4-92.6 (HF recipe / dslim card)",
    "wnut16": "published: BERTweet entity F1 52.1 (bert-base on WNUT-17: 0.40-0.48)",
}
# Each preset's budget per task, as `section.field=value` settings over the task's default config.
PRESETS: dict[str, dict[str, list[str]]] = {
    "quick": {
        "classification": [
            "data.dataset=imdb",
            "data.train_subset=240",
            "data.eval_subset=100",
            "train.epochs=1",
            "train.max_length=64",
            "train.eval_steps=0",
        ],
        "ner": [
            "data.dataset=wnut16",
            "data.train_subset=320",
            "data.eval_subset=100",
            "train.epochs=1",
            "train.max_length=48",
            "train.eval_steps=0",
        ],
    },
    "full": {
        "classification": [
            "data.dataset=imdb",
            "data.train_subset=0",
            "data.eval_subset=0",
            "train.epochs=1",
            "train.max_length=256",
            "train.eval_steps=0",
        ],
        "ner": [
            "data.dataset=wnut16",
            "data.train_subset=0",
            "data.eval_subset=0",
            "train.epochs=4",
            "train.max_length=128",
            "train.eval_steps=0",
        ],
    },
    "gpu": {
        "classification": [
            "data.dataset=imdb",
            "data.train_subset=0",
            "data.eval_subset=0",
            "train.epochs=2",
            "train.max_length=256",
            "train.train_batch_size=32",
            "train.eval_steps=0",
        ],
        "ner": [
            "data.dataset=wnut16",
            "data.train_subset=0",
            "data.eval_subset=0",
            "train.epochs=5",
            "train.max_length=128",
            "train.train_batch_size=32",
            "train.eval_steps=0",
        ],
    },
}
PRESET_NAMES = ("quick", "one-click", "full", "gpu")
# The budget of a run on a generated small set (bench.small_sets): 3 epochs of batch 16, short sentences.
SMALL_SET_BUDGET = ["train.epochs=3", "train.train_batch_size=16", "train.max_length=64", "train.eval_steps=0"]
SMALL_SETS_DIR = Path(tempfile.gettempdir()) / "lab-small-sets"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("classification", "ner"), default="classification")
    parser.add_argument("--preset", choices=PRESET_NAMES, default="quick")
    parser.add_argument(
        "--dataset",
        help="A built-in dataset (imdb, rotten_tomatoes, wnut16, conll2003) or a "
        "training file; default: the preset's (imdb, or wnut16 for ner).",
    )
    parser.add_argument(
        "--small-set",
        help="A generated set (ner-240, ner-1000, topics-240, topics-1000; bench.small_sets) at its small "
        "budget, instead of the preset; sets the task.",
    )
    parser.add_argument("--model", default="minilm", help="Hub id or local folder (default: the offline MiniLM).")
    parser.add_argument("--methods", default="all", help="Comma-separated PEFT methods, or all.")
    parser.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)), help="Comma-separated seeds.")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Any config field for every run, after the preset (repeatable).",
    )
    parser.add_argument("--json", type=Path, help="Write the table as JSON (results[method].metric_mean, ...).")
    return parser


def small_set_config(name: str, model: str, settings: Sequence[str]):
    """The config every run on the generated set `name` starts from, at the small-set budget."""
    from bench.small_sets import write_set
    from lab.config import default_config

    small = write_set(name, SMALL_SETS_DIR)
    assignments = [f"model.name_or_path={model}", "train.learning_rate=", "train.save_total_limit=1"]
    config = default_config(small.task).with_overrides(small.settings() + SMALL_SET_BUDGET + assignments)
    return config.with_overrides(list(settings)).validate()


def base_config(task: str, preset: str, dataset: Optional[str], model: str, settings: Sequence[str]):
    """The config every run of the table starts from (method and seed are set per run)."""
    from lab.config import default_config
    from lab.groups.one_click import one_click_runs

    if preset == "one-click":
        card = next(c for c in one_click_runs(offline=True) if c.config.task == task)
        config = card.config
    else:
        config = default_config(task).with_overrides(PRESETS[preset][task])
    assignments = [f"model.name_or_path={model}", "train.learning_rate=", "train.save_total_limit=1"]
    if dataset:
        is_file = Path(dataset).is_file()
        assignments += [f"data.train_file={dataset}", "data.dataset="] if is_file else [f"data.dataset={dataset}"]
    return config.with_overrides(assignments + list(settings)).validate()


def run_one(config, workdir: Path) -> dict[str, Any]:
    """One `python -m lab train` process; its report.json, plus the wall time seen from outside."""
    workdir.mkdir(parents=True)
    config_path = workdir / "config.yaml"
    config.save(config_path)
    env = dict(os.environ, LAB_RUNS_DIR=str(workdir / "runs"), PYTHONPATH=str(REPO))
    started = time.perf_counter()
    process = subprocess.run(
        [sys.executable, "-m", "lab", "train", str(config_path), "--output", str(workdir / "out")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    report_path = workdir / "out" / "report.json"
    if process.returncode != 0 or not report_path.is_file():
        error = (process.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": error, "wall_s": wall}
    from lab.training.metrics import primary_metric_name

    report = json.loads(report_path.read_text())
    return {
        "validation": validation_curve(workdir / "runs", primary_metric_name(config.task)),
        "metrics": report["test_metrics"],
        "trainable_params": report["trainable_params"],
        "total_params": report["total_params"],
        "peak_memory_mb": report["peak_memory_mb"],
        "train_s": report["wall_seconds"],
        "wall_s": wall,
        "split_sizes": report["split_sizes"],
        "steps": report["completed_steps"],
        "per_label": report["per_label"],
    }


def validation_curve(runs_dir: Path, metric: str) -> dict[int, float]:
    """The run's validation metric at each evaluation, by optimizer step: how soon a method learns."""
    from lab.events import EvalEvent
    from lab.runs.store import RunStore

    store = RunStore(runs_dir)
    curve: dict[int, float] = {}
    for record in store.list_runs():
        for _, event in store.events_since(record.id):
            if isinstance(event, EvalEvent) and event.split == "validation" and metric in event.metrics:
                curve[event.step] = event.metrics[metric]
    return curve


def on_plateau(task: str, run: dict[str, Any]) -> bool:
    """A run that learned nothing: one class for every text, or no entity at all."""
    metrics = run["metrics"]
    if task == "ner":
        return metrics.get("f1", 0.0) == 0.0
    recalls = [
        row["recall"] for row in run["per_label"] if not row["label"].endswith("avg") and row["label"] != "accuracy"
    ]
    return max(recalls, default=0) >= 0.98 and min(recalls, default=0) <= 0.02


def summarise(task: str, method: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    from lab.training.metrics import primary_metric_name

    metric = primary_metric_name(task)
    done = [run for run in runs if "metrics" in run]
    values = [run["metrics"][metric] for run in done]
    return {
        "metric": metric,
        "seeds": values,
        "errors": [run["error"] for run in runs if "error" in run],
        "metric_mean": statistics.mean(values) if values else None,
        "metric_std": statistics.pstdev(values) if len(values) > 1 else 0.0 if values else None,
        "trainable_params": done[0]["trainable_params"] if done else None,
        "trainable_share": done[0]["trainable_params"] / done[0]["total_params"] if done else None,
        "wall_s": statistics.mean(run["wall_s"] for run in runs),
        "train_s": statistics.mean(run["train_s"] for run in done) if done else None,
        "peak_memory_mb": max((run["peak_memory_mb"] or 0) for run in done) if done else None,
        "plateau_runs": sum(on_plateau(task, run) for run in done),
        "steps": done[0]["steps"] if done else None,
        # The validation metric by step, averaged over the seeds: what the registry's steps_needed reads.
        "validation_by_step": {
            step: statistics.mean(run["validation"][step] for run in done)
            for step in sorted(set.intersection(*(set(run["validation"]) for run in done)) if done else ())
        },
    }


def format_table(task: str, dataset: str, results: dict[str, dict[str, Any]], sizes: dict[str, int]) -> str:
    metric = "accuracy" if task == "classification" else "entity F1"
    lines = [
        f"{task} on {dataset} (train {sizes.get('train', '?'):,}, test {sizes.get('test', '?'):,}): "
        f"test {metric}, mean ± spread over seeds",
        f"  {'method':<9}{metric:>18}  {'per seed':<24}{'trainable':>12}{'share':>9}{'wall s':>8}"
        f"{'peak MB':>9}  plateau",
    ]
    for method, row in results.items():
        if row["metric_mean"] is None:
            lines.append(f"  {method:<9}  failed: {row['errors'][0] if row['errors'] else '?'}")
            continue
        seeds = " ".join(f"{v:.3f}" for v in row["seeds"])
        plateau = f"{row['plateau_runs']} of {len(row['seeds'])}" if row["plateau_runs"] else "none"
        lines.append(
            f"  {method:<9}{row['metric_mean']:>11.3f} ± {row['metric_std']:.3f}  {seeds:<24}"
            f"{row['trainable_params']:>12,}{100 * row['trainable_share']:>8.2f}%{row['wall_s']:>8.0f}"
            f"{row['peak_memory_mb']:>9.0f}  {plateau}"
        )
    if dataset in ANCHORS:
        lines.append(f"  anchor   {ANCHORS[dataset]}")
    return "\n".join(lines)


def chosen_methods(text: str) -> list[str]:
    """`all` (one row per registered method, lab.methods.registry) or the comma-separated names given."""
    from lab.config import PEFT_METHODS

    methods = list(PEFT_METHODS) if text == "all" else [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in PEFT_METHODS]
    if unknown:
        raise SystemExit(f"Unknown method {unknown[0]!r}; choose from {', '.join(PEFT_METHODS)} or all.")
    return methods


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from lab.errors import LabError
    from lab.training.metrics import primary_metric_name

    methods = chosen_methods(args.methods)
    seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    try:
        if args.small_set:
            config = small_set_config(args.small_set, args.model, args.set)
            args.task, args.preset = config.task, "small set"
        else:
            config = base_config(args.task, args.preset, args.dataset, args.model, args.set)
    except (LabError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    dataset = args.small_set or config.data.dataset or Path(config.data.train_file).name
    print(
        f"bench.quality: {args.task}, preset {args.preset}, model {args.model}, {len(methods)} methods x "
        f"{len(seeds)} seeds ({', '.join(map(str, seeds))})",
        flush=True,
    )
    results: dict[str, dict[str, Any]] = {}
    sizes: dict[str, int] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lab-quality-") as scratch:
        for method in methods:
            runs = []
            for seed in seeds:
                run_config = config.with_overrides(
                    [f"peft.method={method}", f"train.seed={seed}", f"name=quality-{method}-{seed}"]
                )
                run = run_one(run_config, Path(scratch) / f"{method}-{seed}")
                sizes = run.get("split_sizes", sizes)
                metric = run.get("metrics", {}).get(primary_metric_name(args.task))
                print(
                    f"  {method} seed {seed}: "
                    + (f"{metric:.3f}" if metric is not None else run["error"])
                    + f" ({run['wall_s']:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
                runs.append(run)
            results[method] = summarise(args.task, method, runs)
    print(format_table(args.task, dataset, results, sizes))
    print(f"total wall time {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "task": args.task,
                    "preset": args.preset,
                    "model": args.model,
                    "dataset": dataset,
                    "seeds": seeds,
                    "settings": args.set,
                    "split_sizes": sizes,
                    "anchor": ANCHORS.get(dataset),
                    "config": config.to_dict(),
                    "results": results,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
