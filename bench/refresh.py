"""`python -m bench.refresh`: what one refresh of the Live, Compare and Runs pages costs on long runs,
before and after the per-session cursor.

Writes a synthetic run into a fresh run store (100,000 step events and 500 validation evaluations
with an 11-row per-label table each, like a long GPU run), then times what the Live page does per
refresh, p50 / p95 over repeats:

- `whole log`: read every event and fold them all (the page before the per-session cursor);
- `first view`: the same through a `RunViewFolder`, as a session's first look at the run;
- `later refresh`: five new step events arrive (one second of a fast run), then the session's folder
  reads only the events after its cursor and rebuilds its tables.

Then the same for a group of `--group-runs` such runs (a comparison, or runs compared on the Runs
page): `group, whole logs` re-reads and re-folds every run, as both pages did on each refresh;
`group, later refresh` is `lab.views.history.folded_views` with the session's folders while one run
of the group is live, as the pages do now.

    python -m bench.refresh                 # 100,000 steps, 500 evaluations, a group of 3
    python -m bench.refresh --steps 20000 --evaluations 100 --repeats 20 --group-runs 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Optional

TARGET_MS = 50.0  # later refreshes, p95, independent of the run's length


def write_synthetic_run(store, steps: int, evaluations: int, labels: int = 10) -> str:
    from lab.config import RunConfig
    from lab.events import EvalEvent, StepEvent

    run_id = store.create_run(RunConfig(name="synthetic-long-run")).id
    every = max(1, steps // max(1, evaluations))
    batch = []
    per_label = [
        {"label": f"type-{i}", "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 10} for i in range(labels)
    ] + [{"label": "micro avg", "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 100}]
    for step in range(1, steps + 1):
        batch.append(
            StepEvent(
                step=step,
                max_steps=steps,
                loss=1.0 / step,
                learning_rate=1e-4,
                tokens_per_second=1e4,
                elapsed_seconds=step * 0.1,
                eta_seconds=(steps - step) * 0.1,
            )
        )
        if step % every == 0:
            batch.append(
                EvalEvent(split="validation", step=step, metrics={"f1": 0.5, "precision": 0.5}, per_label=per_label)
            )
        if len(batch) >= 5000:
            store.append_events(run_id, batch)
            batch = []
    if batch:
        store.append_events(run_id, batch)
    return run_id


def timed(action: Callable[[], object], repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    return seconds


def percentiles(seconds: list[float]) -> tuple[float, float]:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return 1000 * statistics.median(ordered), 1000 * p95


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.refresh", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--evaluations", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=50, help="Later refreshes to time (the whole log: a fifth).")
    parser.add_argument("--group-runs", type=int, default=3, help="Runs in the compared group (0: skip the group).")
    args = parser.parse_args(argv)

    from lab.events import StepEvent
    from lab.runs.store import RunStore
    from lab.views.history import folded_views
    from lab.views.run_view import RunViewFolder, run_view

    with tempfile.TemporaryDirectory(prefix="lab-refresh-") as folder:
        store = RunStore(folder)
        started = time.perf_counter()
        run_id = write_synthetic_run(store, args.steps, args.evaluations)
        total = store.last_seq(run_id)
        print(
            f"synthetic run: {args.steps:,} step events, {args.evaluations} evaluations, {total:,} events "
            f"(written in {time.perf_counter() - started:.1f} s)"
        )

        def whole_log():
            store.get_run(run_id)
            return run_view(event for _, event in store.events_since(run_id))

        def first_view():
            store.get_run(run_id)
            return RunViewFolder().add(store.events_since(run_id, 0)).view()

        session = RunViewFolder().add(store.events_since(run_id, 0))
        session.view()
        next_step = [args.steps]

        def later_refresh():
            next_step[0] += 5
            store.append_events(
                run_id,
                [StepEvent(step=s, max_steps=10**9, loss=0.1) for s in range(next_step[0] - 4, next_step[0] + 1)],
            )
            started = time.perf_counter()
            store.get_run(run_id)
            session.add(store.events_since(run_id, session.seq)).view()
            return time.perf_counter() - started  # the append is the training process's cost, not the page's

        rows = [
            ("whole log (before)", timed(whole_log, max(3, args.repeats // 5))),
            ("first view", timed(first_view, max(3, args.repeats // 5))),
            ("later refresh", [later_refresh() for _ in range(args.repeats)]),
        ]
        if args.group_runs > 0:
            rows += group_rows(store, run_id, args, folded_views, run_view)
    print(f"{'refresh':<30}{'p50 ms':>10}{'p95 ms':>10}")
    for name, seconds in rows:
        p50, p95 = percentiles(seconds)
        print(f"{name:<30}{p50:>10.1f}{p95:>10.1f}")
    later = [percentiles(seconds)[1] for name, seconds in rows if "later refresh" in name]
    verdict = "met" if max(later) < TARGET_MS else "NOT met"
    print(f"later refreshes p95 at most {max(later):.1f} ms (target < {TARGET_MS:.0f} ms: {verdict})")
    return 0


def group_rows(store, live_run: str, args: argparse.Namespace, folded_views, run_view) -> list[tuple[str, list[float]]]:
    """The Compare and Runs pages' refresh over a group: the live run plus `group_runs - 1` ended ones."""
    from lab.events import StepEvent

    group = [live_run] + [write_synthetic_run(store, args.steps, args.evaluations) for _ in range(args.group_runs - 1)]

    def whole_logs():
        store.list_runs()
        return {run_id: run_view(event for _, event in store.events_since(run_id)) for run_id in group}

    folders: dict = {}
    folded_views(folders, store, group)  # the session's first look
    next_step = [store.last_seq(live_run) + 10**6]

    def later_refresh():
        next_step[0] += 5
        store.append_events(
            live_run, [StepEvent(step=s, max_steps=10**9, loss=0.1) for s in range(next_step[0] - 4, next_step[0] + 1)]
        )
        started = time.perf_counter()
        store.list_runs()
        folded_views(folders, store, group)
        return time.perf_counter() - started

    name = f"group of {len(group)}"
    return [
        (f"{name}, whole logs (before)", timed(whole_logs, max(3, args.repeats // 10))),
        (f"{name}, later refresh", [later_refresh() for _ in range(args.repeats)]),
    ]


if __name__ == "__main__":
    sys.exit(main())
