"""`python -m bench.first_step`: how long a one-click card takes to its first loss point, stage by stage.

The app imports the training stack in the background when it starts (ui.common's warm-up) and trains
in a thread of its own process, so a click pays only the stages after the imports. This measures both:
the import of the training stack, then `train()` on the card's config up to its first step event, from
the timestamps of the status events the engine emits between stages. The run is stopped after its
first step (it ends `cancelled`; nothing is saved).

    python -m bench.first_step --card imdb
    python -m bench.first_step --card conll --set data.train_subset=400
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time

STAGES = ("loading data and model", "tokenising", "training")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.first_step", description=__doc__.splitlines()[0])
    parser.add_argument("--card", choices=("imdb", "conll"), default="imdb")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    from lab.events import ProgressEvent, StatusEvent
    from lab.groups.one_click import one_click_runs
    from lab.training.engine import train

    imported = time.perf_counter() - started

    card = next(c for c in one_click_runs(offline=True) if c.key == args.card)
    config = card.config.with_overrides(args.set)
    stop, marks = threading.Event(), {}

    def sink(event) -> None:
        now = time.perf_counter()
        if isinstance(event, StatusEvent) and event.status == "running":
            marks.setdefault(next((s for s in STAGES if event.message.startswith(s)), event.message), now)
        elif isinstance(event, ProgressEvent):
            marks.setdefault("first step", now)
            stop.set()

    clicked = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        train(config, folder, sink=sink, should_stop=stop)
    print(f"{'import of the training stack (the app: at start)':<52} {imported:6.2f} s")
    points = [("click, until the run starts", clicked)] + [(s, marks[s]) for s in (*STAGES, "first step") if s in marks]
    names = {"training": "trainer set-up and the first step"}
    for (stage, at), (_, until) in zip(points, points[1:]):
        print(f"{names.get(stage, stage):<52} {until - at:6.2f} s")
    print(f"{'click -> first step':<52} {marks.get('first step', time.perf_counter()) - clicked:6.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
