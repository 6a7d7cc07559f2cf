"""`python -m bench.first_step`: how long a one-click card takes from the click to its first loss point, stage by stage.

The app imports the training stack in the background when it starts (ui.common's warm-up) and trains
in a thread of its own process, so a click pays only the stages after the imports. This measures both:
the import of the training stack, then `train()` on the card's config up to its first loss point (the
step-1 StepEvent: the card logs its first step), each stage timed by wrapping the engine's own calls
(tokenizer, data, model, PEFT wrapping, tokenising, the pre-flight estimate, the Trainer's set-up) and the
first step from the Trainer's start to that event. The run is stopped there (it ends `cancelled`;
nothing is saved). Say the machine's load beside the figures: /proc/loadavg is printed with them.

    python -m bench.first_step --card imdb
    python -m bench.first_step --card conll --set data.train_subset=400
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import threading
import time
from pathlib import Path

# The engine's calls on the way to the first step, in order, and what the report calls them.
ENGINE_STAGES = {
    "load_tokenizer": "tokenizer",
    "load_splits": "data splits",
    "load_model": "model weights and new head",
    "adapt": "PEFT wrapping",
    "tokenize_splits": "tokenising",
    "estimate": "pre-flight estimate",
    "LabTrainer": "Trainer set-up",
}
FIRST_STEP = "the first step (Trainer start -> first loss)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.first_step", description=__doc__.splitlines()[0])
    parser.add_argument("--card", choices=("imdb", "conll"), default="imdb")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    import lab.training.engine as engine
    from lab.events import StatusEvent, StepEvent
    from lab.groups.one_click import one_click_runs

    imported = time.perf_counter() - started

    card = next(c for c in one_click_runs(offline=True) if c.key == args.card)
    config = card.config.with_overrides(args.set)
    stop, spent, marks = threading.Event(), {}, {}

    def timed(name, call):
        @functools.wraps(call)
        def wrapper(*args, **kwargs):
            began = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - began

        return wrapper

    for name in ENGINE_STAGES:
        setattr(engine, name, timed(name, getattr(engine, name)))

    def sink(event) -> None:
        now = time.perf_counter()
        if isinstance(event, StatusEvent) and event.status == "running" and str(event.message).startswith("training"):
            marks.setdefault("trainer started", now)
        elif isinstance(event, StepEvent):
            marks.setdefault("first loss", now)
            stop.set()

    clicked = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        engine.train(config, folder, sink=sink, should_stop=stop)
    reached = marks.get("first loss", time.perf_counter())
    rows = [(label, spent[name]) for name, label in ENGINE_STAGES.items() if name in spent]
    if "trainer started" in marks:
        rows.append((FIRST_STEP, reached - marks["trainer started"]))
    rows.append(("everything else (config checks, events, seeding)", reached - clicked - sum(s for _, s in rows)))
    print(f"card {args.card}: {config.name}; load average {Path('/proc/loadavg').read_text().split()[:3]}")
    print(f"{'import of the training stack (the app: at start)':<52} {imported:6.2f} s")
    for label, seconds in rows:
        print(f"{label:<52} {seconds:6.2f} s")
    print(f"{'click -> first loss point':<52} {reached - clicked:6.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
