"""A scripted stand-in for `lab.training.engine.train`, for testing the run store, the job runner and
their worker processes (tests and `bench.reliability`) without training a model.

It speaks the engine's contract: emits a running status, one StepEvent per optimizer step, writes a
Trainer-like `checkpoint-<step>` folder every `checkpoint_every` steps, checks `should_stop` before
each step, and returns a RunResult. Its behaviour comes from the run name, so a worker
process (which only gets a run id) behaves as the test asked:

    "steps=N"          N optimizer steps (default 5)
    "sleep=S"          seconds per step (default 0.01)
    "fail=K"           raise LabError at step K
    "crash=K"          raise RuntimeError at step K
    "ckpt=K"           write a checkpoint every K steps
    "eval=K"           a validation evaluation every K steps (accuracy step / steps)
    "deaf"             ignore should_stop (only signals stop it)
    "deaf-term"        also ignore SIGTERM (only SIGKILL stops it)
    "oom=gpu|cpu"      run out of memory (a GPU or a CPU allocator error) while holding a tensor
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Optional

from lab.config import RunConfig
from lab.errors import LabError
from lab.events import EvalEvent, ResultEvent, RunResult, StatusEvent, StepEvent

PER_LABEL = [
    {"label": "neg", "precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2},
    {"label": "pos", "precision": 0.6667, "recall": 1.0, "f1": 0.8, "support": 2},
]

# Every call, in this process: what the runner passed in (for asserting resume arguments).
CALLS: list[dict[str, Any]] = []
# The last step each run (by output folder) emitted, in this process: what the sink has not flushed yet.
LAST_STEP: dict[str, int] = {}
# The tensor an "oom" run held when it failed: a test checks that the failed run let it go.
HELD: list[weakref.ref] = []
# The parameter counts and time a scripted run reports.
SCRIPTED_SUMMARY: dict[str, Any] = {"trainable_params": 10, "total_params": 100, "wall_seconds": 0.1}


def options(name: str) -> dict[str, str]:
    return dict(part.partition("=")[::2] for part in name.split(",") if part)


def scripted_train(
    config: RunConfig,
    output_dir: str | Path,
    sink,
    should_stop: Optional[threading.Event] = None,
    resume_from_checkpoint: Optional[str] = None,
) -> RunResult:
    opts = options(config.name)
    CALLS.append({"name": config.name, "output_dir": str(output_dir), "resume_from_checkpoint": resume_from_checkpoint})
    steps, seconds = int(opts.get("steps", 5)), float(opts.get("sleep", 0.01))
    if "deaf-term" in opts:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sink(StatusEvent(status="running"))
    if opts.get("oom"):
        import torch

        activations = torch.ones(4_000_000)  # what a forward pass holds when the allocator gives up
        HELD.append(weakref.ref(activations))
        raise (
            torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            if opts["oom"] == "gpu"
            else RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8589934592 bytes")
        )
    first = int(Path(resume_from_checkpoint).name.split("-")[1]) + 1 if resume_from_checkpoint else 1
    for step in range(first, steps + 1):
        if should_stop is not None and should_stop.is_set() and "deaf" not in opts and "deaf-term" not in opts:
            return RunResult("cancelled", str(output_dir), **SCRIPTED_SUMMARY)
        time.sleep(seconds)
        if str(step) == opts.get("fail"):
            raise LabError(f"Row {step} of train.csv has no label.")
        if str(step) == opts.get("crash"):
            raise RuntimeError("boom")
        sink(StepEvent(step=step, max_steps=steps, loss=1.0 / step))
        LAST_STEP[str(output_dir)] = step
        if opts.get("eval") and step % int(opts["eval"]) == 0:
            sink(EvalEvent(step=step, split="validation", metrics={"accuracy": step / steps}))
        if opts.get("ckpt") and step % int(opts["ckpt"]) == 0:
            folder = Path(output_dir) / "checkpoints" / f"checkpoint-{step}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    metrics = {"accuracy": 0.75, "macro_f1": 0.7333}
    sink(ResultEvent(metrics=metrics, per_label=PER_LABEL, output_dir=str(output_dir)))
    return RunResult("completed", str(output_dir), metrics, PER_LABEL, **SCRIPTED_SUMMARY)


def worker_main(run_id: str) -> int:
    """What a scripted `python -m lab train --run-id ID` runs."""
    from lab.launch.worker import run_stored_job
    from lab.runs.store import RunStore

    return run_stored_job(run_id, RunStore(), train_fn=scripted_train)


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1]))
