"""`python -m lab sweep`: an Optuna search over config fields, each trial a run in the store (lab.groups.sweep).

SIGTERM and Ctrl-C stop the sweep: the handlers only set an event, the running trial stops at its next
step, and the command exits 130 saying how to resume; a second signal ends the process at once.
"""

from __future__ import annotations

import argparse
import threading

from lab.cli.flags import add_config_flags, config_from_args
from lab.cli.terminal import TerminalReporter, add_parallel_flag, runs_at_once, stop_on_signals
from lab.errors import LabError

EPILOG = """\
--param grammar (keep it: scripts use it):
  section.field=log:LOW:HIGH     a float on a log scale     train.learning_rate=log:1e-5:1e-2
  section.field=float:LOW:HIGH   a float                    train.warmup_ratio=float:0:0.2
  section.field=int:LOW:HIGH     a whole number             peft.r=int:4:32
  section.field=choice:A,B,...   one of the values          peft.r=choice:4,8,16
A trial's value is its best validation METRIC (the test split is never used for the choice). With
--pruner median a trial whose validation metric is below the median of earlier trials at the same step
is stopped early and marked pruned. A failed trial counts as one of the trials; after 3 failures in a
row the sweep stops with the last one's error. The study is kept in RUNS_DIR/sweeps/NAME.db:
python -m lab sweep --resume NAME continues it and runs only the missing trials."""


def add_sweep_command(subparsers: argparse._SubParsersAction) -> None:
    sweep = subparsers.add_parser(
        "sweep",
        help="Search config fields with Optuna; every trial is a run.",
        description="Search config fields with Optuna (ask / tell); every trial is a run "
        "in the run store, grouped under the sweep.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_flags(sweep)
    sweep.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=KIND:...",
        help="A field to search and its range (repeatable; grammar below).",
    )
    sweep.add_argument("--trials", type=int, default=12, help="Trials to run (default 12).")
    sweep.add_argument("--metric", help="Validation metric to optimise (default: accuracy, or f1 for NER).")
    sweep.add_argument("--direction", choices=("maximize", "minimize"), default="maximize")
    sweep.add_argument("--pruner", choices=("median", "none"), default="median")
    sweep.add_argument("--resume", metavar="NAME", help="Continue the sweep NAME (its own setup; other flags ignored).")
    add_parallel_flag(sweep)
    sweep.set_defaults(handler=command_sweep)


def command_sweep(args: argparse.Namespace) -> int:
    from lab.cli.acting import store_for
    from lab.groups.sweep import SweepSetup, best_trial, create_study, load_study, parse_params, run_sweep
    from lab.launch.worker import continue_in_foreground
    from lab.training.metrics import primary_metric_name

    store = store_for(args)
    if args.resume:
        study, setup = load_study(store, args.resume)
    else:
        if args.trials < 1:
            raise LabError("--trials must be at least 1.")
        base = config_from_args(args)
        setup = SweepSetup(
            name=args.name or f"{base.task}-{base.dataset_name}",
            base=base,
            params=parse_params(args.param, base),
            trials=args.trials,
            metric=args.metric or primary_metric_name(base.task),
            direction=args.direction,
            pruner=args.pruner,
            seed=base.train.seed,
        )
        study = create_study(store, setup)
    print(
        f"Sweep {setup.name!r}: {setup.trials} trials over {', '.join(p.text() for p in setup.params)}; "
        f"{setup.direction} validation {setup.metric}.",
        flush=True,
    )

    stop = threading.Event()

    def run_trial(config, group, sink, prune) -> str:
        run = store.create_run(config, executor="cli", group=group)
        reporter = TerminalReporter(details=False)

        def both(event) -> None:
            reporter(event)
            sink(event)
            if prune():
                store.request_cancel(run.id)

        continue_in_foreground(store, run.id, both, interrupted=stop)
        return run.id

    def on_trial(number: int, status: str, value, message: str) -> None:
        shown = f"{setup.metric} {value:.4f}" if value is not None else ""
        print(
            f"  trial {number}: {status} {shown}".rstrip() + (f": {message}" if status == "failed" else ""), flush=True
        )

    parallel = runs_at_once(args)
    with stop_on_signals(stop):
        if parallel > 1:
            end = _sweep_side_by_side(store, study, setup, on_trial, stop, parallel)
        else:
            end = run_sweep(store, study, setup, run_trial, on_trial, should_stop=stop)
    if end == "stopped":
        print(
            f"Sweep {setup.name!r} stopped; continue it with python -m lab sweep --resume {setup.name!r}.", flush=True
        )
        return 130
    best = best_trial(study)
    if best is None:
        print("No trial completed.")
        return 1
    print(
        f"best trial {best.number}: validation {setup.metric} {best.value:.4f} with "
        + ", ".join(f"{key}={value}" for key, value in best.params.items())
        + f" (run {best.user_attrs.get('run_id', '?')})"
    )
    return 0


def _sweep_side_by_side(store, study, setup, on_trial, stop: threading.Event, parallel: int):
    """`parallel` trials at once, each through a job runner in a worker process of its own."""
    from lab.groups.parallel import group_runner
    from lab.groups.sweep import run_sweep, runner_trial

    print(f"{parallel} trials at once.", flush=True)
    runner = group_runner(store, parallel)
    try:
        return run_sweep(store, study, setup, runner_trial(runner, store, stop), on_trial, stop, parallel)
    finally:
        runner.shutdown(cancel=True, timeout=60)
