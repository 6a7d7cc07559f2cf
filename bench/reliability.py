"""`python -m bench.reliability`: run the fault and load scenarios and print a table
(scenario, expected, observed, pass / fail).

Faults: out of memory (GPU-style and CPU-allocator, in a job and in the real engine's forward pass),
a full disk while saving, an app server killed mid-run, two readers of one live run; the run store's
faults (bench/store_faults.py) and untrusted inputs (bench/input_faults.py: a YAML alias bomb, a sweep
whose trials fail, a Parquet bomb, a huge text field, a full queue). Load: twenty
sessions polling one live run once a second, each doing what the Live page's fragment does (look the
run up, read its events, fold them into tables) on threads of the training process, as Streamlit
sessions are. That is a store-level load test on loopback, not HTTP: a Streamlit session is a
websocket that runs the page script, and twenty headless browsers do not fit on a small machine.
Training speed is measured with and without the pollers (alternating, medians).

Everything runs offline in a temporary folder: a synthetic sentiment file, a tiny BERT for the
fault scenarios, and for the load test the offline MiniLM (or the tiny BERT with --quick).
"""

from __future__ import annotations

import argparse
import errno
import gc
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from bench.rows import Row
from lab.errors import one_line
from lab.launch import scripted
from lab.launch.scripted import scripted_train

REPO = Path(__file__).resolve().parents[1]
POLLERS = 20
POLL_SECONDS = 1.0  # the Live page's REFRESH_SECONDS
REFRESH_LIMIT_SECONDS = 2.0
SLOWDOWN_TARGET = 0.05


# ---- shared set-up ----------------------------------------------------------------------------------
POSITIVE = ["great", "wonderful", "moving", "brilliant", "charming", "superb"]
NEGATIVE = ["dull", "boring", "awful", "clumsy", "tedious", "weak"]


def write_sentiment_csv(path: Path, rows: int = 400, seed: int = 0) -> Path:
    """A learnable two-class file: reviews built around one positive or negative word."""
    rng = random.Random(seed)
    lines = ["text,label"]
    for index in range(rows):
        positive = index % 2 == 0
        word = rng.choice(POSITIVE if positive else NEGATIVE)
        filler = " ".join(
            rng.choice(["the", "film", "plot", "cast", "was", "really", "quite", "and", "ending"])
            for _ in range(rng.randint(6, 30))
        )
        lines.append(f"\"{filler} {word} {filler}\",{'pos' if positive else 'neg'}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def engine_config(
    model: str,
    train_file: Path,
    name: str,
    max_steps: int,
    max_length: int = 32,
    batch_size: int = 8,
    peft: str = "lora",
):
    from lab.config import RunConfig

    return RunConfig.from_dict(
        {
            "task": "classification",
            "name": name,
            "data": {"dataset": "", "train_file": str(train_file)},
            "model": {"name_or_path": model},
            "peft": {"method": peft},
            "train": {
                "max_steps": max_steps,
                "logging_steps": 1,
                "train_batch_size": batch_size,
                "max_length": max_length,
                "device": "cpu",
                "learning_rate": 1e-3,
                "eval_steps": 10_000,
            },
        }
    )


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# ---- fault scenarios ----------------------------------------------------------------------------------
def scenario_oom_job(work: Path, kind: str) -> Row:
    from lab.config import RunConfig
    from lab.launch.runner import JobRunner
    from lab.runs.store import RunStore

    store = RunStore(work / f"oom-{kind}")
    runner = JobRunner(store, train_fn=scripted_train, gpu_ids=[], poll_seconds=0.05)
    try:
        greedy = runner.submit(RunConfig(name=f"oom={kind}"))
        following = runner.submit(RunConfig(name="steps=3"))
        next_status = runner.wait(following, timeout=60)
        later = runner.wait(runner.submit(RunConfig(name="steps=2")), timeout=60)
    finally:
        runner.shutdown(timeout=30)
    gc.collect()
    run = store.get_run(greedy)
    freed = scripted.HELD[-1]() is None
    advice = (
        all(
            word in run.message
            for word in ("Out of memory", "train.train_batch_size", "train.max_length", "PEFT method")
        )
        and "\n" not in run.message
    )
    passed = run.status == "failed" and advice and freed and next_status == later == "completed"
    return Row(
        f"Out of memory ({kind.upper()}), injected in a queued job",
        "run failed, says what to lower; memory freed; next queued run starts; runner takes new runs",
        f"{run.status}: \"{one_line(run.message, 70)}\"; freed {freed}; next {next_status}; new run {later}",
        passed,
    )


def scenario_oom_engine(work: Path, model: str, train_file: Path) -> Row:
    import torch
    from transformers import Trainer

    import lab.training.engine
    from lab.launch.runner import JobRunner
    from lab.runs.store import RunStore

    models: list[weakref.ref] = []
    real_load, real_step = lab.training.engine.load_model, Trainer.training_step
    raised: list[bool] = []

    def load_model(*args, **kwargs):
        loaded = real_load(*args, **kwargs)
        models.append(weakref.ref(loaded))
        return loaded

    def training_step(self, *args, **kwargs):
        if not raised:
            raised.append(True)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.50 GiB")
        return real_step(self, *args, **kwargs)

    lab.training.engine.load_model, Trainer.training_step = load_model, training_step
    store = RunStore(work / "oom-engine")
    runner = JobRunner(store, train_fn=lab.training.engine.train, gpu_ids=[], poll_seconds=0.05)
    try:
        first = runner.submit(engine_config(model, train_file, "too-big", 2))
        second = runner.submit(engine_config(model, train_file, "fits", 2))
        next_status = runner.wait(second, timeout=300)
    finally:
        runner.shutdown(timeout=60)
        lab.training.engine.load_model, Trainer.training_step = real_load, real_step
    gc.collect()
    run = store.get_run(first)
    freed = bool(models) and models[0]() is None
    passed = run.status == "failed" and run.message.startswith("Out of memory") and freed and next_status == "completed"
    return Row(
        "Out of memory in the engine's forward pass (tiny BERT)",
        "run failed with what to lower; its model freed; next queued run trains to the end",
        f"{run.status}: \"{one_line(run.message, 70)}\"; model freed {freed}; next {next_status}",
        passed,
    )


def _digest(store, run_id: str) -> tuple[Any, ...]:
    import hashlib

    folder = store.run_dir(run_id)
    files = {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    return store.get_run(run_id).to_dict(), [(s, e.to_dict()) for s, e in store.events_since(run_id)], files


def scenario_disk_full(work: Path, model: str, train_file: Path) -> Row:
    import lab.training.engine
    from lab.config import RunConfig
    from lab.launch.execute import execute_run
    from lab.runs.store import RunStore

    store = RunStore(work / "disk-full")
    earlier = store.create_run(RunConfig(name="steps=3")).id
    execute_run(store, earlier, scripted_train, threading.Event())
    before = _digest(store, earlier)

    def save_model(trainer, config, label_names, model_dir: Path, *args) -> None:
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "model.safetensors").write_bytes(b"\0" * 128)
        raise OSError(errno.ENOSPC, "No space left on device", str(model_dir / "model.safetensors"))

    real_save, lab.training.engine.save_model = lab.training.engine.save_model, save_model
    try:
        run_id = store.create_run(engine_config(model, train_file, "no-room", 2)).id
        status = execute_run(store, run_id, lab.training.engine.train, threading.Event())
    finally:
        lab.training.engine.save_model = real_save
    reopened = RunStore(store.runs_dir)
    intact = _digest(reopened, earlier) == before and reopened.integrity_check() == "ok"
    message = store.get_run(run_id).message
    passed = status == "failed" and message.startswith("The disk is full") and intact
    return Row(
        "Disk full (ENOSPC) while saving the model",
        "run failed cleanly with 'disk is full … resume'; earlier runs byte-identical; store ok",
        f"{status}: \"{one_line(message, 70)}\"; earlier run intact {intact}",
        passed,
    )


SERVER = """
import sys, time
sys.path.insert(0, {repo!r})
from lab.launch.scripted import scripted_train
from lab.config import RunConfig
from lab.launch.runner import JobRunner
from lab.runs.store import RunStore
runner = JobRunner(RunStore(sys.argv[1]), train_fn=scripted_train, gpu_ids=[], poll_seconds=0.05)
print(runner.submit(RunConfig(name="steps=40,sleep=0.05,ckpt=4")), flush=True)
time.sleep(600)
"""


def scenario_killed_server(work: Path) -> Row:
    from lab.launch.runner import JobRunner
    from lab.runs.resume import last_checkpoint
    from lab.runs.store import RunStore

    runs_dir = work / "killed-server"
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(repo=str(REPO)), str(runs_dir)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        run_id = server.stdout.readline().strip()
        store = RunStore(runs_dir)
        checkpoints = store.run_dir(run_id) / "checkpoints"
        wait_until(lambda: last_checkpoint(checkpoints) is not None, 60)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    reopened = RunStore(runs_dir)  # the restarted app
    after_restart = reopened.get_run(run_id).status
    checkpoint = last_checkpoint(checkpoints)
    runner = JobRunner(reopened, train_fn=scripted_train, gpu_ids=[], poll_seconds=0.05)
    try:
        runner.resume(run_id)
        final = runner.wait(run_id, timeout=60)
    finally:
        runner.shutdown(timeout=30)
    steps = [e.step for _, e in reopened.events_since(run_id) if e.kind == "step"]
    resumed_at = int(checkpoint.name.split("-")[1]) if checkpoint else -1
    passed = after_restart == "interrupted" and final == "completed" and resumed_at + 1 in steps and steps[-1] == 40
    return Row(
        "App server killed (SIGKILL) while a run trains in its thread",
        "reopened: run 'interrupted'; Resume continues from its last checkpoint in the same record",
        f"after restart: {after_restart}; resumed from {checkpoint.name if checkpoint else 'none'}; {final} "
        f"at step {steps[-1] if steps else '-'}",
        passed,
    )


def scenario_two_readers(work: Path) -> Row:
    from lab.config import RunConfig
    from lab.launch.runner import JobRunner
    from lab.runs.store import RunStore

    store = RunStore(work / "two-readers")
    runner = JobRunner(store, train_fn=scripted_train, gpu_ids=[], poll_seconds=0.05)
    seen: dict[str, list[int]] = {"first tab": [], "reloaded tab": []}
    try:
        run_id = runner.submit(RunConfig(name="steps=30,sleep=0.03"))
        tab, cursor = RunStore(store.runs_dir), 0
        while store.get_run(run_id).is_active or cursor < store.last_seq(run_id):
            batch = tab.events_since(run_id, cursor)
            seen["first tab"] += [seq for seq, _ in batch]
            cursor = batch[-1][0] if batch else cursor
            time.sleep(0.1)
        seen["reloaded tab"] = [seq for seq, _ in RunStore(store.runs_dir).events_since(run_id)]  # from the start
    finally:
        runner.shutdown(timeout=30)
    same = seen["first tab"] == seen["reloaded tab"] == list(range(1, store.last_seq(run_id) + 1))
    return Row(
        "A second tab and a reloaded tab on one live run",
        "both see every event, in order, once; reading consumes nothing",
        f"following tab {len(seen['first tab'])} events, reloaded tab {len(seen['reloaded tab'])}, identical {same}",
        same,
    )


# ---- load: twenty sessions polling one live run ---------------------------------------------------------
@dataclass
class PollStats:
    refresh_seconds: list[float]
    gaps: list[float]  # seconds between consecutive refreshes of one session
    requests: int
    cpu_seconds: float = 0.0  # CPU time the refreshes used (thread time), all sessions together
    wall_seconds: float = 0.0  # how long the sessions polled


def poll(
    store, run_id: str, stop: threading.Event, offset: float, budget: int, out: PollStats, lock: threading.Lock
) -> None:
    """One session's Live page: every POLL_SECONDS look up the run, read its events, fold them."""
    from lab.views.run_view import run_view

    time.sleep(offset)
    last_done: Optional[float] = None
    for _ in range(budget):
        if stop.is_set():
            return
        started, cpu_started = time.monotonic(), time.thread_time()
        store.get_run(run_id)
        run_view(event for _, event in store.events_since(run_id))
        done = time.monotonic()
        with lock:
            out.refresh_seconds.append(done - started)
            out.cpu_seconds += time.thread_time() - cpu_started
            out.requests += 1
            if last_done is not None:
                out.gaps.append(done - last_done)
        last_done = done
        stop.wait(max(0.0, POLL_SECONDS - (done - started)))


def steps_per_second(store, run_id: str) -> float:
    steps = [e for _, e in store.events_since(run_id) if e.kind == "step"]
    steps = steps[2:]  # the first steps include warm-up (allocations, lazy initialisation)
    if len(steps) < 2:
        return float("nan")
    return (steps[-1].step - steps[0].step) / max(1e-9, steps[-1].elapsed_seconds - steps[0].elapsed_seconds)


def training_arm(work: Path, name: str, config, pollers: int) -> tuple[float, PollStats]:
    from lab.launch.runner import JobRunner
    from lab.runs.store import RunStore

    store = RunStore(work / "load" / name)
    runner = JobRunner(store, gpu_ids=[], poll_seconds=0.1)
    stats, lock, stop = PollStats([], [], 0), threading.Lock(), threading.Event()
    try:
        run_id = runner.submit(config)
        wait_until(lambda: store.get_run(run_id).status != "queued", 60)
        budget = 600  # at most ten minutes of polling per session: a bounded number of requests
        threads = [
            threading.Thread(
                target=poll,
                args=(store, run_id, stop, i * POLL_SECONDS / max(1, pollers), budget, stats, lock),
                daemon=True,
            )
            for i in range(pollers)
        ]
        polling_started = time.monotonic()
        for thread in threads:
            thread.start()
        status = runner.wait(run_id, timeout=1800)
        stop.set()
        for thread in threads:
            thread.join()
        stats.wall_seconds = time.monotonic() - polling_started
    finally:
        runner.shutdown(timeout=60)
    if status != "completed":
        raise RuntimeError(f"load arm {name} ended {status}: {store.get_run(run_id).message}")
    return steps_per_second(store, run_id), stats


def scenario_load(
    work: Path, model: str, train_file: Path, steps: int, repeats: int, max_length: int, batch_size: int
) -> list[Row]:
    config = engine_config(model, train_file, "load", steps, max_length=max_length, batch_size=batch_size, peft="full")
    alone, polled, stats = [], [], PollStats([], [], 0)
    cpu_shares = []
    for repeat in range(repeats):
        for pollers in (0, POLLERS) if repeat % 2 == 0 else (POLLERS, 0):
            rate, arm_stats = training_arm(work, f"r{repeat}-p{pollers}", config, pollers)
            (polled if pollers else alone).append(rate)
            stats.refresh_seconds += arm_stats.refresh_seconds
            stats.gaps += arm_stats.gaps
            stats.requests += arm_stats.requests
            if pollers:
                cpu_shares.append(arm_stats.cpu_seconds / (arm_stats.wall_seconds * (os.cpu_count() or 1)))
            print(f"  load arm {repeat + 1}/{repeats}, {pollers:2d} pollers: {rate:.2f} steps/s", file=sys.stderr)
    refresh = sorted(stats.refresh_seconds)
    gaps = sorted(stats.gaps)
    p95 = refresh[int(0.95 * (len(refresh) - 1))] if refresh else float("nan")
    worst_gap = gaps[-1] if gaps else float("nan")
    alone_rate, polled_rate = statistics.median(alone), statistics.median(polled)
    slowdown = 1 - polled_rate / alone_rate
    # Identical runs differ by this much on a shared machine: a smaller measured effect is noise.
    noise = (max(alone) - min(alone)) / alone_rate if len(alone) > 1 else float("nan")
    cpu_share = statistics.median(cpu_shares)
    return [
        Row(
            f"{POLLERS} sessions polling a live run every {POLL_SECONDS:g} s (store level, loopback)",
            f"every refresh < {REFRESH_LIMIT_SECONDS:g} s and a fresh view at least every {REFRESH_LIMIT_SECONDS:g} s",
            f"{stats.requests} refreshes; duration median {statistics.median(refresh) * 1000:.0f} ms, "
            f"p95 {p95 * 1000:.0f} ms, max {refresh[-1] * 1000:.0f} ms; longest gap {worst_gap:.2f} s",
            refresh[-1] < REFRESH_LIMIT_SECONDS and worst_gap < REFRESH_LIMIT_SECONDS,
        ),
        Row(
            f"Training speed with {POLLERS} pollers ({Path(model).name if os.sep in model else model}, "
            f"batch {batch_size} x {max_length})",
            f"slowdown < {SLOWDOWN_TARGET:.0%} (and pollers' CPU share < {SLOWDOWN_TARGET:.0%}, the slowdown they "
            f"cause when training keeps every core busy)",
            f"{alone_rate:.2f} steps/s alone, {polled_rate:.2f} with pollers (medians of {len(alone)} runs each: "
            f"{', '.join(f'{r:.2f}' for r in alone)} / {', '.join(f'{r:.2f}' for r in polled)}): "
            f"slowdown {slowdown:+.1%} (spread of the runs alone {noise:.0%}); the pollers used {cpu_share:.1%} "
            f"of the machine's CPU",
            slowdown < SLOWDOWN_TARGET and cpu_share < SLOWDOWN_TARGET,
        ),
    ]


# ---- the report -------------------------------------------------------------------------------------------
def format_table(rows: Sequence[Row]) -> str:
    widths = (34, 44, 58, 4)
    header = ("scenario", "expected", "observed", "pass")
    lines = []

    def add(cells: Sequence[str]) -> None:
        wrapped = [textwrap.wrap(cell, width) or [""] for cell, width in zip(cells, widths)]
        for index in range(max(len(cell) for cell in wrapped)):
            lines.append(
                " | ".join(
                    (cell[index] if index < len(cell) else "").ljust(width) for cell, width in zip(wrapped, widths)
                ).rstrip()
            )

    add(header)
    lines.append("-+-".join("-" * width for width in widths))
    for row in rows:
        add((row.scenario, row.expected, row.observed, "PASS" if row.passed else "FAIL"))
        lines.append("-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.reliability", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Load test on the tiny BERT, 1 repeat (a smoke run).")
    parser.add_argument("--load-model", default="minilm", help="Model the load test trains (default: offline MiniLM).")
    parser.add_argument("--load-steps", type=int, default=40, help="Optimizer steps per load-test run.")
    parser.add_argument("--repeats", type=int, default=3, help="Runs with and without pollers (alternating).")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--skip-load", action="store_true", help="Only the fault scenarios.")
    parser.add_argument("--json", type=Path, help="Also write the rows as JSON here.")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory(prefix="lab-reliability-") as folder:
        work = Path(folder)
        os.environ.setdefault("HF_HOME", str(work / "hf-home"))
        from datasets import disable_progress_bars

        import lab  # noqa: F401 - decides offline mode before transformers loads
        from lab.model.testing import build_tiny_model

        disable_progress_bars()  # tokenising bars of every scenario would bury the table

        train_file = write_sentiment_csv(work / "reviews.csv")
        texts = [line.rsplit(",", 1)[0].strip('"') for line in train_file.read_text().splitlines()[1:]]
        tiny = build_tiny_model(work / "tiny-bert", texts)
        rows: list[Row] = []
        scenarios: list[tuple[str, Callable[[], Any]]] = [
            ("OOM (GPU) in a job", lambda: scenario_oom_job(work, "gpu")),
            ("OOM (CPU) in a job", lambda: scenario_oom_job(work, "cpu")),
            ("OOM in the engine", lambda: scenario_oom_engine(work, tiny, train_file)),
            ("disk full", lambda: scenario_disk_full(work, tiny, train_file)),
            ("killed server", lambda: scenario_killed_server(work)),
            ("two readers", lambda: scenario_two_readers(work)),
        ]
        from bench.store_faults import STORE_SCENARIOS, run_scenario

        scenarios += [(title, lambda title=title: run_scenario(title, work)) for title in STORE_SCENARIOS]
        from bench.input_faults import INPUT_SCENARIOS
        from bench.input_faults import run_scenario as run_input_scenario

        scenarios += [(title, lambda title=title: run_input_scenario(title, work)) for title in INPUT_SCENARIOS]
        if not args.skip_load:
            model = tiny if args.quick else args.load_model
            scenarios.append(
                (
                    "load",
                    lambda: scenario_load(
                        work,
                        model,
                        train_file,
                        args.load_steps,
                        1 if args.quick else args.repeats,
                        args.max_length,
                        args.batch_size,
                    ),
                )
            )
        for title, run in scenarios:
            print(f"running: {title}", file=sys.stderr)
            started = time.monotonic()
            try:
                result = run()
            except Exception as exc:  # noqa: BLE001 - a scenario that crashes is a failed row, not a crash
                result = Row(title, "(scenario ran)", f"crashed: {type(exc).__name__}: {one_line(str(exc))}", False)
            rows += result if isinstance(result, list) else [result]
            print(f"  {time.monotonic() - started:.1f} s", file=sys.stderr)
    print(format_table(rows))
    passed = sum(row.passed for row in rows)
    print(
        f"\n{passed} of {len(rows)} rows pass. Load test: {POLLERS} threads in the training process, each "
        f"doing the Live page's refresh (run lookup + all events + tables) every {POLL_SECONDS:g} s; "
        f"{os.cpu_count()} CPU cores."
    )
    if args.json:
        args.json.write_text(json.dumps([row.__dict__ for row in rows], indent=2), encoding="utf-8")
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
