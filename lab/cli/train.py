"""`python -m lab train | compare | config | predict`, and the terminal view of a live run."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from lab.cli.flags import config_from_args
from lab.cli.terminal import TerminalReporter, clock, runs_at_once, train_side_by_side
from lab.config import RunConfig, example_yaml
from lab.errors import LabError


def command_train(args: argparse.Namespace) -> int:
    if args.run_id:
        from lab.launch.worker import run_stored_job
        from lab.runs.store import RunStore

        return run_stored_job(args.run_id, RunStore())
    config = config_from_args(args)
    from lab.cli.acting import store_for
    from lab.launch.worker import run_in_foreground

    store = store_for(args)
    run_id, code = run_in_foreground(config, output_dir=args.output, sink=TerminalReporter(), store=store)
    run = store.get_run(run_id)
    if run.status == "failed":
        # The run record keeps the traceback (python -m lab show RUN --traceback); the terminal gets one line.
        print(f"error: {run.message}", file=sys.stderr)
    elif run.status != "completed":
        print(f"{run.status}: {run.message}", file=sys.stderr)
    return code


def command_compare(args: argparse.Namespace) -> int:
    from lab.cli.acting import store_for
    from lab.groups.compare import comparison_base, plan_comparison
    from lab.launch.worker import run_in_foreground
    from lab.training.metrics import primary_metric_name

    started = time.monotonic()
    task = args.task or (RunConfig.load(args.config).task if args.config else "classification")
    base = config_from_args(args, budget=comparison_base(task))
    comparison, store = plan_comparison(base, args.methods, args.name or ""), store_for(args)
    count, metric = len(comparison.configs), primary_metric_name(base.task)
    parallel = runs_at_once(args)
    print(
        f"Comparing {count} methods on {base.dataset_name} ({base.task}, {base.model.name_or_path}), "
        f"each at its default learning rate; group {comparison.group!r}.",
        flush=True,
    )
    if parallel > 1:
        return compare_side_by_side(comparison.start, comparison.group, store, parallel, metric, started)

    def train_here(config: RunConfig, group: str) -> int:
        print(f"[{comparison.configs.index(config) + 1}/{count}] {config.peft.method}", flush=True)
        run_id, code = run_in_foreground(config, sink=TerminalReporter(details=False), store=store, group=group)
        run = store.get_run(run_id)
        score = f"test {metric} {run.metrics[metric]:.3f}" if metric in run.metrics else run.message
        print(f"  {run.status}: {score}", flush=True)
        return code

    codes = comparison.start(train_here)
    print(f"\n{comparison.group}\n{format_comparison(store.list_runs(group=comparison.group))}")
    print(f"{count} runs in {time.monotonic() - started:.0f} s (the whole comparison)")
    return next((code for code in codes if code), 0)


def compare_side_by_side(start, group: str, store, parallel: int, metric: str, started: float) -> int:
    """Train a comparison's runs `parallel` at a time; prints each run as it ends, with when it started and
    ended, then the table."""
    from lab.launch.execute import EXIT_CODES

    def on_end(run) -> None:
        score = f"test {metric} {run.metrics[metric]:.3f}" if metric in run.metrics else run.message
        print(f"  {run.peft_method}: {run.status}: {score} ({clock(run.started_at)}-{clock(run.finished_at)})")

    records = train_side_by_side(store, parallel, start, on_end)
    print(f"\n{group}\n{format_comparison(store.list_runs(group=group))}")
    print(f"{len(records)} runs in {time.monotonic() - started:.0f} s (the whole comparison, {parallel} at once)")
    return next((EXIT_CODES.get(run.status, 1) for run in records if run.status != "completed"), 0)


def format_comparison(records) -> str:
    """A comparison group (lab.runs.records.RunRecord rows) as a table, one method per line."""
    from lab.groups.compare import comparison_table
    from lab.model.parameters import format_share
    from lab.training.metrics import primary_metric_name

    if not records:
        return "No runs in this comparison."
    metric = primary_metric_name(records[0].task)
    lines = [
        f"  {'method':<9}{'status':<12}{'test ' + metric:>14}{'trainable':>13}{'share':>10}{'train s':>9}{'peak MB':>9}"
    ]
    for row in comparison_table(records).to_dict("records"):
        lines.append(
            f"  {row['method']:<9}{row['status']:<12}{_number(row['test'], '.3f'):>14}"
            f"{_number(row['trainable'], ','):>13}{format_share(row['trainable share']):>10}"
            f"{_number(row['train seconds'], '.0f'):>9}{_number(row['peak memory MB'], '.0f'):>9}"
        )
    return "\n".join(lines)


def _number(value, spec: str) -> str:
    """A table cell: the number in `spec`, or '–' for a missing one (None, or pandas' NaN)."""
    return "–" if value is None or value != value else format(int(value) if spec == "," else value, spec)


def command_config(args: argparse.Namespace) -> int:
    if args.script:
        from lab.publish.standalone import standalone_script

        sys.stdout.write(standalone_script(RunConfig.load(args.script)))
        return 0
    sys.stdout.write(example_yaml(args.example))
    return 0


def command_predict(args: argparse.Namespace) -> int:
    from lab.inference.predict import Predictor

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
    if args.explain and args.split_punctuation:
        raise LabError("--explain gives one number per whitespace-separated word: leave out --split-punctuation.")
    predictor = Predictor(args.model_dir)
    predictions = predictor.predict(texts, split_punctuation=args.split_punctuation)
    explanations: list[Any] = [None] * len(texts)  # an Explanation per text with --explain
    if args.explain:
        from lab.inference.explain import explain

        explanations = [explain(predictor, text) for text in texts]
    if args.json:
        items = [{**p.to_dict(predictor.task), **(e.to_dict() if e else {})} for p, e in zip(predictions, explanations)]
        print(json.dumps(items, ensure_ascii=False, indent=2))
        return 0
    for prediction, explanation in zip(predictions, explanations):
        if predictor.task == "ner":
            print(" ".join(f"{w}/{t}" for w, t in zip(prediction.words, prediction.tags)))
        else:
            ranked = sorted(prediction.probabilities.items(), key=lambda kv: -kv[1])
            print(f"{prediction.label}\t" + "  ".join(f"{k}={v:.3f}" for k, v in ranked) + f"\t{prediction.text}")
        if explanation is not None:
            about = (
                f"the tag {explanation.target} of {explanation.words[explanation.word]!r}"
                if explanation.word is not None
                else f"the label {explanation.target}"
            )
            print(
                f"  why {about} (probability {explanation.probability:.3f}): "
                + "  ".join(f"{w} {a:+.3f}" for w, a in zip(explanation.words, explanation.attributions))
            )
    return 0
