"""`python -m bench.chaos`: kill -9 a training worker at random moments of every phase, then check the store.

A reference run trains once, uninterrupted, in a worker process (`python -m lab train --run-id ID`);
its milestones (status, evaluation and result events, written to the store at once) give each
phase's length: loading data and model, tokenising, training, evaluation, checkpoint writing, test
evaluation, final save. Then, N times per phase, the same run starts in a fresh worker, and once its
own milestone for the phase appears it gets SIGKILL after a random part of that length (the phase
the kill really landed in is read back from the killed run's events).
After each kill:

- the store opens and `PRAGMA integrity_check` says ok;
- the run is `interrupted`, never `running`;
- `python -m lab resume RUN` completes it;
- its final test metrics equal the reference run's (same seed) within `--tolerance`, and its saved
  adapter weights the reference's within 1e-4;
- a completed run stored before is byte-for-byte unchanged.

Also: SIGTERM and SIGINT to a server process whose job runner trains in a thread (the app's
executor), two such servers on one runs folder at once, and a full disk while SQLite itself writes
(injected as `sqlite3.OperationalError("database or disk is full")` at the store's write: a
size-limited mount needs root mount rights this machine's CI may not have).

    python -m bench.chaos                  # 2 kills per phase, the offline MiniLM
    python -m bench.chaos --kills 1 --model tiny
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
PHASES = ("loading", "tokenising", "training", "evaluation", "checkpoint", "test evaluation", "final save")
FIXTURE = REPO / "tests" / "fixtures" / "sentiment.csv"
WEIGHT_TOLERANCE = 1e-4  # fp32 on a CPU: a resumed run ends on the reference's weights up to rounding


@dataclass
class Outcome:
    aimed: str
    landed: str
    status_after_kill: str
    integrity: str
    resumed: str
    metric_difference: Optional[float]
    weight_difference: Optional[float]  # largest |weight| difference of the saved adapter vs the reference's
    others_intact: bool
    resumed_from: str

    def holds(self, tolerance: float) -> bool:
        if self.landed == "done" and self.status_after_kill == "completed":  # it finished before the kill
            return self.integrity == "ok" and self.others_intact
        # Killed after its result event but before its final status was written, a run has not recorded its
        # end: it is rightly interrupted, and must resume like any other.
        return (
            self.integrity == "ok"
            and self.status_after_kill == "interrupted"
            and self.resumed == "completed"
            and self.metric_difference is not None
            and self.metric_difference <= tolerance
            and self.weight_difference is not None
            and self.weight_difference <= WEIGHT_TOLERANCE
            and self.others_intact
        )


def chaos_config(model: str, seed: int = 0):
    from lab.config import RunConfig

    return RunConfig.from_dict(
        {
            "task": "classification",
            "name": "chaos",
            "data": {"dataset": "", "train_file": str(FIXTURE)},
            "model": {"name_or_path": model},
            "peft": {"method": "lora"},
            "train": {
                "max_steps": 24,
                "eval_steps": 8,
                "logging_steps": 1,
                "train_batch_size": 8,
                "max_length": 48,
                "learning_rate": 2e-3,
                "seed": seed,
                "device": "cpu",
                "save_total_limit": 3,
            },
        }
    )


def _env(runs_dir: Path) -> dict[str, str]:
    return dict(
        os.environ, LAB_RUNS_DIR=str(runs_dir), PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1"
    )


def start_worker(runs_dir: Path, run_id: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lab", "train", "--run-id", run_id],
        cwd=REPO,
        env=_env(runs_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# Each phase starts at a milestone the engine writes to the store at once (a status, evaluation or
# result event); a kill is aimed at a random moment of the phase's length after its milestone.
MILESTONES = {
    "loading": "loading data and model",
    "tokenising": "tokenising",
    "training": "training",
    "evaluation": "evaluating at step",
    "checkpoint": "validation evaluation",
    "test evaluation": "evaluating on the test split",
    "final save": "saving the model",
}


def milestone(event: Any) -> str:
    """The phase an event starts, '' for none."""
    from lab.events import EvalEvent, ResultEvent, StatusEvent

    if isinstance(event, EvalEvent):
        return "checkpoint" if event.split == "validation" else ""
    if isinstance(event, ResultEvent):
        return "done"
    if isinstance(event, StatusEvent) and event.status == "running":
        return next((phase for phase, text in MILESTONES.items() if event.message.startswith(text)), "")
    return ""


def durations(events: list[Any]) -> dict[str, float]:
    """Each phase's length in seconds in one run: from its first milestone to the next milestone
    (checkpoint writing: to the next optimizer step, which comes right after the save)."""
    from lab.events import StepEvent

    marks = [(milestone(e), e.time) for e in events if milestone(e)]
    lengths: dict[str, float] = {}
    for (phase, start), (_, end) in zip(marks, marks[1:]):
        lengths.setdefault(phase, end - start)
    saved_at = next((e.time for e in events if milestone(e) == "checkpoint"), None)
    next_step = next((e.time for e in events if isinstance(e, StepEvent) and saved_at and e.time > saved_at), None)
    if saved_at and next_step:
        lengths["checkpoint"] = next_step - saved_at
    return lengths


def landed_phase(events: list[Any]) -> str:
    """The phase a killed run was in: its last milestone among the stored events."""
    phases = [milestone(e) for e in events if milestone(e)]
    return phases[-1] if phases else "starting"


def folder_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def adapter_weights(output_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    path = output_dir / "model" / "adapter_model.safetensors"
    return load_file(path) if path.is_file() else {}


def weight_difference(ours: dict[str, Any], reference: dict[str, Any]) -> Optional[float]:
    if not ours or ours.keys() != reference.keys():
        return None
    return max(float((ours[k] - reference[k]).abs().max()) for k in ours)


def kill_once(
    work: Path,
    model: str,
    phase: str,
    length: float,
    reference: dict[str, Any],
    rng: random.Random,
    after_step: Optional[int] = None,
) -> Outcome:
    """`reference`: the uninterrupted run's test metrics (`metrics`) and saved weights (`weights`).
    `after_step`: instead of a random moment of `phase`, kill as soon as that optimizer step is logged."""
    from lab.events import StepEvent
    from lab.runs.store import RunStore

    runs_dir = work / f"{phase.replace(' ', '-')}-{rng.randrange(10**6)}"
    store = RunStore(runs_dir)
    bystander = store.create_run(chaos_config(model).with_overrides(["name=bystander"]))
    store.finish(bystander.id, "completed", "Finished before the chaos.")
    before = store.get_run(bystander.id).to_dict(), folder_digest(store.run_dir(bystander.id))
    run_id = store.create_run(chaos_config(model)).id
    delay = rng.uniform(0, max(0.0, length - 0.02))
    process = start_worker(runs_dir, run_id)
    seen = 0
    while process.poll() is None:  # wait for the phase's milestone, then for the chosen moment inside it
        new = store.events_since(run_id, seen)
        seen = new[-1][0] if new else seen
        if after_step is not None:
            if any(isinstance(e, StepEvent) and e.step >= after_step for _, e in new):
                break
        elif any(milestone(e) == phase for _, e in new):
            time.sleep(delay)
            break
        time.sleep(0.005)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait()
    reopened = RunStore(runs_dir)
    integrity = reopened.integrity_check()
    run = reopened.get_run(run_id)
    landed = landed_phase([e for _, e in reopened.events_since(run_id)])
    resumed = subprocess.run(
        [sys.executable, "-m", "lab", "resume", run_id],
        cwd=REPO,
        env=_env(runs_dir),
        capture_output=True,
        text=True,
        timeout=900,
    )
    after = RunStore(runs_dir)
    final = after.get_run(run_id)
    metrics = reference["metrics"]
    difference = max(abs(final.metrics[k] - metrics[k]) for k in metrics) if final.metrics else None
    weights = weight_difference(adapter_weights(after.output_dir(final)), reference["weights"])
    intact = (after.get_run(bystander.id).to_dict(), folder_digest(after.run_dir(bystander.id))) == before
    resumed_from = (
        "checkpoint"
        if " from checkpoint-" in resumed.stderr
        else "step 0"
        if "starting it over" in resumed.stderr
        else "?"
    )
    return Outcome(phase, landed, run.status, integrity, final.status, difference, weights, intact, resumed_from)


def reference_run(work: Path, model: str) -> tuple[dict[str, Any], dict[str, float], float]:
    """The uninterrupted run: ({"metrics", "weights"}, each phase's length, wall seconds)."""
    from lab.runs.store import RunStore

    store = RunStore(work / "reference")
    run_id = store.create_run(chaos_config(model)).id
    started = time.time()
    code = start_worker(work / "reference", run_id).wait()
    run = store.get_run(run_id)
    if code != 0 or run.status != "completed":
        raise SystemExit(f"the reference run did not complete ({run.status}: {run.message})")
    reference = {"metrics": run.metrics, "weights": adapter_weights(store.output_dir(run))}
    return reference, durations([e for _, e in store.events_since(run_id)]), time.time() - started


# ---- signals to a server that trains in a thread, two servers, a full disk ---------------------------
SERVER = """
import sys, time
sys.path.insert(0, {repo!r})
from lab.config import RunConfig
from lab.launch.runner import JobRunner
from lab.runs.store import RunStore
from bench.chaos import chaos_config
runner = JobRunner(RunStore(sys.argv[1]), gpu_ids=[], poll_seconds=0.05)
print(runner.submit(chaos_config(sys.argv[2]).with_overrides(["train.max_steps=400"])), flush=True)
time.sleep(float(sys.argv[3]))
"""


def signal_to_server(work: Path, model: str, sig: signal.Signals) -> tuple[str, str, bool]:
    """Returns (status after the signal, status after resume, store ok)."""
    from lab.events import StepEvent
    from lab.runs.store import RunStore

    runs_dir = work / f"server-{sig.name}"
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(repo=str(REPO)), str(runs_dir), model, "600"],
        cwd=REPO,
        env=_env(runs_dir),
        stdout=subprocess.PIPE,
        text=True,
    )
    run_id = server.stdout.readline().strip()
    store = RunStore(runs_dir)
    deadline = time.time() + 300
    while not any(isinstance(e, StepEvent) for _, e in store.events_since(run_id)) and time.time() < deadline:
        time.sleep(0.2)
    server.send_signal(sig)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    reopened = RunStore(runs_dir)
    status = reopened.get_run(run_id).status
    subprocess.run(
        [sys.executable, "-m", "lab", "resume", run_id], cwd=REPO, env=_env(runs_dir), capture_output=True, timeout=1800
    )
    final = RunStore(runs_dir)
    return status, final.get_run(run_id).status, final.integrity_check() == "ok"


def two_servers(work: Path, model: str) -> tuple[list[str], bool]:
    from lab.runs.store import RunStore

    runs_dir = work / "two-servers"
    script = SERVER.format(repo=str(REPO)).replace('["train.max_steps=400"]', '["train.max_steps=16"]')
    servers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(runs_dir), model, "120"],
            cwd=REPO,
            env=_env(runs_dir),
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    run_ids = [server.stdout.readline().strip() for server in servers]
    store = RunStore(runs_dir)
    deadline = time.time() + 600
    while any(store.get_run(r).is_active for r in run_ids) and time.time() < deadline:
        time.sleep(0.5)
    for server in servers:
        server.kill()
        server.wait()
    return [store.get_run(r).status for r in run_ids], store.integrity_check() == "ok"


def disk_full_in_sqlite(work: Path) -> tuple[str, str, bool]:
    """The store's own writes fail as a full disk does; the run must end `failed` saying so."""
    import sqlite3
    import threading

    from lab.config import RunConfig
    from lab.launch.execute import execute_run
    from lab.launch.scripted import scripted_train
    from lab.runs.store import RunStore

    store = RunStore(work / "sqlite-full")
    run_id = store.create_run(RunConfig(name="steps=3")).id
    real = RunStore.append_events

    def full(self, run_id, events):
        raise sqlite3.OperationalError("database or disk is full")

    RunStore.append_events = full
    try:
        status = execute_run(store, run_id, scripted_train, threading.Event())
    finally:
        RunStore.append_events = real
    reopened = RunStore(store.runs_dir)
    return status, reopened.get_run(run_id).message, reopened.integrity_check() == "ok"


def resolve_model(name: str, work: Path) -> str:
    if name != "tiny":
        return name
    from lab.model.testing import build_tiny_model, fixture_texts

    return build_tiny_model(work / "tiny-bert", fixture_texts(REPO / "tests" / "fixtures"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=2, help="Kills per phase (default 2).")
    parser.add_argument(
        "--model", default="minilm", help="minilm (default), tiny (a random 2-layer BERT), or a folder."
    )
    parser.add_argument("--phases", default=",".join(PHASES), help="Comma-separated phases.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the kill times.")
    parser.add_argument("--tolerance", type=float, default=0.02, help="Allowed test-metric difference after resume.")
    parser.add_argument("--no-servers", action="store_true", help="Skip the server, two-server and disk-full rows.")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lab-chaos-") as scratch:
        work = Path(scratch)
        model = resolve_model(args.model, work)
        reference, phases, seconds = reference_run(work, model)
        metrics = {k: round(v, 4) for k, v in reference["metrics"].items()}
        print(f"reference run: {seconds:.1f} s, test metrics {json.dumps(metrics)}")
        print("phase lengths (s): " + ", ".join(f"{p} {phases.get(p, 0):.2f}" for p in PHASES))
        print(
            f"\n{'aimed at':<17}{'landed in':<17}{'after kill':<13}{'integrity':<11}{'resumed':<11}"
            f"{'from':<12}{'metric diff':>12}{'weight diff':>12}  others  holds"
        )
        held = total = 0
        for phase in [p.strip() for p in args.phases.split(",") if p.strip()]:
            for _ in range(args.kills):
                outcome = kill_once(work, model, phase, phases.get(phase, 0.0), reference, rng)
                ok = outcome.holds(args.tolerance)
                held, total = held + ok, total + 1
                difference = "-" if outcome.metric_difference is None else f"{outcome.metric_difference:.4f}"
                weights = "-" if outcome.weight_difference is None else f"{outcome.weight_difference:.1e}"
                print(
                    f"{outcome.aimed:<17}{outcome.landed:<17}{outcome.status_after_kill:<13}{outcome.integrity:<11}"
                    f"{outcome.resumed:<11}{outcome.resumed_from:<12}{difference:>12}{weights:>12}  "
                    f"{'yes' if outcome.others_intact else 'NO':<7} {'yes' if ok else 'NO'}",
                    flush=True,
                )
                rows.append({**outcome.__dict__, "holds": ok})
        print(f"\nkills: {held} of {total} held every invariant")
        if not args.no_servers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                after, resumed, ok = signal_to_server(work, model, sig)
                print(f"{sig.name} to a server training in a thread: run {after}; resumed {resumed}; store ok {ok}")
                rows.append({"scenario": sig.name, "after": after, "resumed": resumed, "store_ok": ok})
            statuses, ok = two_servers(work, model)
            print(f"two servers on one runs folder: runs {', '.join(statuses)}; store ok {ok}")
            status, message, ok = disk_full_in_sqlite(work)
            print(
                f"disk full while SQLite writes (injected OperationalError): run {status} "
                f"(\"{message}\"); store ok {ok}"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if held == total else 1


if __name__ == "__main__":
    sys.exit(main())
