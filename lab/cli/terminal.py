"""What the terminal shows and takes while runs train: the live view of a run (`TerminalReporter`), the
`--parallel` flag of commands that train a group, and signals that stop a group cleanly."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from lab.errors import LabError
from lab.events import EvalEvent, Event, LogEvent, ProgressEvent, ResultEvent, StatusEvent, StepEvent
from lab.runs.records import RunRecord
from lab.runs.store import RunStore


def add_parallel_flag(parser: argparse.ArgumentParser) -> None:
    """--parallel N on a command that trains a group of runs (compare, sweep)."""
    parser.add_argument(
        "--parallel",
        type=int,
        metavar="N",
        help="Runs at once (default: one per GPU here, the CPU counting as one), each in a worker process of "
        "its own; on a Ray cluster N jobs at once.",
    )


def runs_at_once(args: argparse.Namespace) -> int:
    """--parallel, or one per free device slot here."""
    if args.parallel is not None and args.parallel < 1:
        raise LabError(f"--parallel must be at least 1, got {args.parallel}.")
    if args.parallel:
        return args.parallel
    from lab.groups.parallel import default_parallel

    return default_parallel()


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """While the sweep runs, SIGTERM and Ctrl-C set `stop` (nothing raises inside whatever the signal
    interrupts); a second one gets the usual behaviour: SIGTERM ends the process, Ctrl-C raises."""
    usual: dict[signal.Signals, signal.Handlers | Callable[[int, FrameType | None], Any]] = {
        signal.SIGTERM: signal.SIG_DFL,
        signal.SIGINT: signal.default_int_handler,
    }

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        signal.signal(signum, usual[signal.Signals(signum)])

    previous = {sig: signal.signal(sig, on_signal) for sig in usual}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def train_side_by_side(
    store: RunStore,
    parallel: int,
    submit_all: Callable[[Callable[..., str]], list[str]],
    on_end: Callable[[RunRecord], None],
    **runner_options: Any,
) -> list[RunRecord]:
    """Train a group's runs `parallel` at a time through a job runner of its own: `submit_all(submit)` queues
    them; Ctrl-C or SIGTERM cancels them all. `on_end` sees each run as it ends; returns them in order."""
    from lab.groups.parallel import group_runner, wait_for_runs

    print(f"{parallel} runs at once.", flush=True)
    runner, stop = group_runner(store, parallel, **runner_options), threading.Event()
    try:
        run_ids = submit_all(lambda config, group: runner.submit(config, group=group))
        with stop_on_signals(stop):
            return wait_for_runs(runner, store, run_ids, on_end, stop)
    finally:
        runner.shutdown(cancel=True, timeout=60)


def clock(timestamp: float | None) -> str:
    """A run's start or end as the terminal shows it: the local time of day."""
    return time.strftime("%H:%M:%S", time.localtime(timestamp)) if timestamp else "?"


class TerminalReporter:
    """An event sink that draws a progress bar and prints evaluation tables on the terminal."""

    def __init__(self, stream=None, bar_stream=None, details: bool = True):
        # Tables and log lines go to stdout; the bar to stderr, so a failed run's stderr is the one error line.
        self.stream = stream or sys.stdout
        self.bar_stream = bar_stream or sys.stderr
        self.bar: Any = None  # a tqdm bar while steps arrive
        self.details = details  # evaluation tables, log and status lines; without them only the bar

    def __call__(self, event: Event) -> None:
        if isinstance(event, (StepEvent, ProgressEvent)):
            self._advance(event)
        elif isinstance(event, ResultEvent):
            self._close()
            if self.details:
                self._write(
                    f"done in {event.wall_seconds:.0f} s; model saved in {event.output_dir}"
                    if event.status == "completed"
                    else f"stopped after {event.wall_seconds:.0f} s; no model saved"
                )
        elif not self.details:
            return
        elif isinstance(event, EvalEvent):
            self._close_bar_line()
            self._print_eval(event)
        elif isinstance(event, LogEvent):
            self._write(event.message)
        elif isinstance(event, StatusEvent):
            self._write(f"[{event.status}] {event.message}".rstrip())

    def _advance(self, event: StepEvent | ProgressEvent) -> None:
        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(total=event.max_steps, unit="step", file=self.bar_stream, dynamic_ncols=True)
        self.bar.update(event.step - self.bar.n)
        if isinstance(event, StepEvent):
            self.bar.set_postfix(
                loss=f"{event.loss:.4f}", lr=f"{event.learning_rate:.2e}", tok_s=f"{event.tokens_per_second:.0f}"
            )

    def _print_eval(self, event: EvalEvent) -> None:
        import pandas as pd

        from lab.training.metrics import format_report

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
