"""`python -m lab lesson list | run NAME`: the lessons, and one lesson's runs trained in this terminal."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lab.cli.flags import add_config_flags, config_from_args
from lab.cli.terminal import add_parallel_flag, runs_at_once
from lab.groups.lessons import LESSONS, get_lesson


def add_lesson_command(commands: argparse._SubParsersAction) -> None:
    lesson = commands.add_parser(
        "lesson",
        help="Experiments that answer one question each: runs that vary one setting, and a conclusion "
        "computed from their results.",
    )
    actions = lesson.add_subparsers(dest="lesson_command", required=True)
    listing = actions.add_parser("list", help="The lessons, their questions and expected time.")
    listing.set_defaults(handler=command_lesson_list)
    run = actions.add_parser(
        "run",
        help="Train a lesson's runs one after another, then print its table and conclusion.",
        description="Without a YAML the runs start from the lesson's own small budget on the Home page's "
        "data for its task (offline: IMDB or WNUT-16); the flags change it as they change `train`'s, on any "
        "built-in dataset, file or model. The runs are a group in the run store (lesson NAME LABEL with "
        "--name), shown together on the Runs and Lessons pages.",
    )
    run.add_argument("lesson", choices=list(LESSONS), metavar="NAME", help=f"One of {', '.join(LESSONS)}.")
    add_config_flags(run)
    run.add_argument(
        "--values", help="Comma-separated values of the lesson's setting instead of its own (e.g. 1e-4,1e-3)."
    )
    run.add_argument(
        "--json",
        metavar="PATH",
        help='Also write {"lesson", "question", "runs": [{"id", "value", "metrics"}, ...], "conclusion"} to PATH.',
    )
    add_parallel_flag(run)
    run.set_defaults(handler=command_lesson_run)


def command_lesson_list(args: argparse.Namespace) -> int:
    for lesson in LESSONS.values():
        planned = minutes(lesson.planned_seconds)
        print(f"{lesson.name:<14}{lesson.question}\n{'':<14}varies {lesson.setting}; about {planned} on 2 CPU cores")
    return 0


def command_lesson_run(args: argparse.Namespace, train_fn=None, runner_options: dict | None = None) -> int:
    """Train the lesson's runs in this terminal, one after another or `--parallel N` at once (with
    `train_fn` or `runner_options`, a test's stand-in for the engine or its worker)."""
    from lab.cli.acting import store_for
    from lab.cli.terminal import TerminalReporter, clock, train_side_by_side
    from lab.data.builtin import BUILTINS
    from lab.groups.findings import finding_text
    from lab.groups.lessons import (
        expected_seconds,
        group_name,
        lesson_base,
        lesson_conclusion,
        lesson_configs,
        lesson_report,
        lesson_runs,
        parse_values,
    )
    from lab.launch.worker import run_in_foreground

    started = time.monotonic()
    lesson = get_lesson(args.lesson)
    task = args.task or (BUILTINS[args.dataset].task if args.dataset in BUILTINS else lesson.task)
    base = config_from_args(args, budget=lesson_base(lesson, task))
    values = parse_values(args.values, lesson) if args.values is not None else None
    configs, group, store = (
        lesson_configs(lesson, base, values),
        group_name(lesson, base, args.name or ""),
        store_for(args),
    )
    print(f"{lesson.question}\n", flush=True)
    print(
        f"{len(configs)} runs varying {lesson.setting} on {base.dataset_name} ({base.task}, "
        f"{base.model.name_or_path}, {base.peft.method}); group {group!r}.",
        flush=True,
    )
    print(f"Expected time: about {minutes(expected_seconds(configs))} (the lab's estimate).", flush=True)
    parallel, outcome = runs_at_once(args), 0
    if parallel > 1:
        from lab.launch.execute import EXIT_CODES

        def on_end(run) -> None:
            said = "completed" if run.status == "completed" else f"{run.status}: {run.message}"
            print(f"  {run.name}: {said} ({clock(run.started_at)}-{clock(run.finished_at)})", flush=True)

        records = train_side_by_side(
            store,
            parallel,
            lambda submit: [submit(config, group) for config in configs],
            on_end,
            **(runner_options or {}),
        )
        outcome = next((EXIT_CODES.get(run.status, 1) for run in records if run.status != "completed"), 0)
    for number, config in enumerate(configs if parallel == 1 else [], start=1):
        print(f"[{number}/{len(configs)}] {config.name}", flush=True)
        run_id, code = run_in_foreground(
            config, sink=TerminalReporter(details=False), store=store, group=group, train_fn=train_fn
        )
        run = store.get_run(run_id)
        print(f"  {run.status}: {run.message}" if run.status != "completed" else "  completed", flush=True)
        outcome = outcome or code
        if run.status in ("interrupted", "cancelled"):  # Ctrl-C or a signal stops the lesson, not only this run
            break
    runs = lesson_runs(store, lesson, group)
    print(f"\n{group}\n{format_lesson(runs, lesson.setting)}\n")
    for finding in lesson_conclusion(store, lesson, runs):
        print(finding_text(finding))
    print(f"{len(configs)} runs in {time.monotonic() - started:.0f} s (the whole lesson)")
    if args.json:
        path = Path(args.json)
        report = lesson_report(store, lesson, runs)
        path.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path}")
    return outcome


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def format_lesson(runs, setting: str) -> str:
    """A lesson's runs (lab.groups.lessons.LessonRun) as a table for the terminal, one value per line."""
    from lab.model.parameters import format_share
    from lab.training.metrics import primary_metric_name

    if not runs:
        return "No runs in this lesson."
    metric, width = primary_metric_name(runs[0].record.task), max(12, len(setting) + 2)
    lines = [
        f"  {setting:<{width}}{'status':<12}{'test ' + metric:>14}{'best val.':>11}"
        f"{'trainable':>13}{'share':>10}{'train s':>9}"
    ]
    for run in runs:
        record, outcome = run.record, run.outcome
        value = f"{outcome.value:g}" if isinstance(outcome.value, float) else str(outcome.value)
        test = f"{record.metrics[metric]:.3f}" if metric in record.metrics else "–"
        best = f"{outcome.best_validation:.3f}" if outcome.best_validation is not None else "–"
        trainable, total = outcome.trainable_params, outcome.total_params
        count = f"{trainable:,}" if trainable else "–"
        share = format_share(trainable / total) if trainable and total else "–"
        seconds = f"{outcome.seconds:.0f}" if outcome.seconds is not None else "–"
        lines.append(f"  {value:<{width}}{record.status:<12}{test:>14}{best:>11}{count:>13}{share:>10}{seconds:>9}")
    return "\n".join(lines)
