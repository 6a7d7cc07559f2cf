"""One run across nodes: what a Ray job runs when `train.num_workers` is above 1 (with `train.executor: ray`).

The job's driver starts Ray Train's `TorchTrainer` with that many workers, each asking Ray for one CPU (or
one GPU with `train.device: cuda`), so Ray places them on the cluster's nodes. Ray Train joins them in one
torch process group; each worker runs the lab's engine, whose Hugging Face Trainer sees the group (RANK,
WORLD_SIZE) and trains data-parallel: every worker takes `train_batch_size` examples a step, so the global
batch is workers x train_batch_size. Rank 0 speaks for the run: its events, result or failure go into
`ray_train_lines.log` in the run's folder (shared by the nodes, as for any Ray run), which the driver
prints as the tagged lines the lab's host follows (lab.launch.ray_worker), so the Live page sees a run
like any other. Checkpoints are the Trainer's, in the run's folder, so resume works as for one worker.

Cancel: Ray's `stop_job` sends the driver SIGTERM; the driver writes a stop file the workers poll, and the
run stops at its next optimizer step. A worker or node lost mid-run ends the run `interrupted` (resumable).

    python -m lab.launch.ray_train OUTPUT_DIR [CHECKPOINT]
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lab.launch.ray_worker import CONFIG_ENV, FAILURE_TAG, RESULT_TAG, RUN_ID_ENV, emit, parse_line

LINES_FILE = "ray_train_lines.log"  # rank 0's tagged lines, for the driver to print
STOP_FILE = "ray_train_stop"  # the driver's cancel, for the workers to see


class _FileSink:
    """Rank 0's tagged lines, appended to a file the driver follows (a worker's own output may not reach
    the job's log, and would come back with a prefix on each line if it did)."""

    def __init__(self, path: Path) -> None:
        from lab.launch.ray_worker import LineSink

        self.path, self.lines = path, LineSink()

    def __call__(self, event: Any) -> None:
        with _stdout_to(self.path):
            self.lines(event)


class _stdout_to:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        self.handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed on exit)
        self.saved, sys.stdout = sys.stdout, self.handle

    def __exit__(self, *exc: Any) -> None:
        sys.stdout = self.saved
        self.handle.close()


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: the engine on this worker's share of every batch."""
    import ray.train

    from lab.config import RunConfig
    from lab.events import discard
    from lab.launch.execute import default_train_fn, describe_failure

    output_dir = Path(loop_config["output_dir"])
    rank = ray.train.get_context().get_world_rank()
    should_stop = threading.Event()
    threading.Thread(target=_watch_stop_file, args=(output_dir / STOP_FILE, should_stop), daemon=True).start()
    lines = output_dir / LINES_FILE
    sink = _FileSink(lines) if rank == 0 else discard
    try:
        config = RunConfig.from_dict(loop_config["config"])
        result = default_train_fn()(
            config, str(output_dir), sink, should_stop=should_stop, resume_from_checkpoint=loop_config["checkpoint"]
        )
    except BaseException as exc:  # noqa: BLE001 - every way the run ends goes back to the host
        if rank == 0:
            status, message = describe_failure(exc, loop_config["run_id"], should_stop.is_set())
            if _peer_lost(exc):  # another worker (or its node) died: the run can carry on from a checkpoint
                run_id = loop_config["run_id"]
                status = "interrupted"
                message = f"A Ray Train worker was lost ({message}); resume it with python -m lab resume {run_id}."
            with _stdout_to(lines):
                emit(FAILURE_TAG, {"status": status, "message": message, "traceback": traceback.format_exc()})
        raise
    if rank == 0:
        with _stdout_to(lines):
            emit(RESULT_TAG, asdict(result))


def _watch_stop_file(path: Path, should_stop: threading.Event) -> None:
    while not should_stop.is_set():
        if path.exists():
            should_stop.set()
        time.sleep(0.5)


def _echo(path: Path, done: threading.Event, said: list[str]) -> None:
    """Print rank 0's lines on the driver's output as they are appended; remember the last tag seen."""
    offset = 0
    while True:
        finished = done.is_set()
        try:
            with open(path, encoding="utf-8") as handle:
                handle.seek(offset)
                text = handle.read()
        except FileNotFoundError:
            text = ""
        complete = text[: text.rfind("\n") + 1]
        offset += len(complete.encode("utf-8"))
        for line in complete.splitlines():
            parsed = parse_line(line)
            if parsed is not None and parsed[0] in (RESULT_TAG, FAILURE_TAG):
                said.append(parsed[0])
            print(line, flush=True)
        if finished:
            return
        time.sleep(0.2)


def main(argv: list[str]) -> int:
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from lab.config import RunConfig as LabConfig

    output_dir = Path(argv[0]).resolve()
    checkpoint = argv[1] if len(argv) > 1 else None
    config = LabConfig.from_dict(json.loads(os.environ[CONFIG_ENV]))
    run_id = os.environ.get(RUN_ID_ENV, "?")
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in (output_dir / LINES_FILE, output_dir / STOP_FILE):
        stale.unlink(missing_ok=True)  # an earlier attempt's (a resume)
    signal.signal(signal.SIGTERM, lambda signum, frame: (output_dir / STOP_FILE).touch())
    workers, on_gpu = config.train.num_workers, config.train.device == "cuda"
    print(f"Training run {run_id} with Ray Train: {workers} workers, pid {os.getpid()}.", flush=True)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "output_dir": str(output_dir),
            "checkpoint": checkpoint,
            "config": config.to_dict(),
            "run_id": run_id,
        },
        scaling_config=ScalingConfig(
            num_workers=workers, use_gpu=on_gpu, resources_per_worker={"GPU": 1} if on_gpu else {"CPU": 1}
        ),
        run_config=RunConfig(
            name=f"lab-{run_id}",
            storage_path=str(output_dir / "ray_train"),
            failure_config=FailureConfig(max_failures=0),
        ),
    )
    done, said = threading.Event(), list[str]()
    echo = threading.Thread(target=_echo, args=(output_dir / LINES_FILE, done, said), daemon=True)
    echo.start()
    error, lost = "", False
    try:
        trainer.fit()
    except Exception as exc:  # noqa: BLE001 - a worker failed, or a worker or its node was lost
        error, lost = f"{type(exc).__name__}: {exc}".splitlines()[0][:300], _lost_a_worker(exc)
    done.set()
    echo.join()
    if said and not lost:
        return 0 if said[-1] == RESULT_TAG else 1
    # A worker (or its node) died under the run; rank 0 said nothing, or only that its peers went silent.
    emit(
        FAILURE_TAG,
        {
            "status": "interrupted",
            "message": f"A Ray Train worker of run {run_id} was lost before the run finished ({error}); "
            f"resume it with python -m lab resume {run_id}.",
            "traceback": "",
        },
    )
    return 1


# How torch's collective backends say that a peer process went away mid-step.
PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "gloo/transport", "NCCL communicator")


def _peer_lost(exc: BaseException) -> bool:
    return any(marker in str(exc) for marker in PEER_LOST)


def _lost_a_worker(exc: BaseException) -> bool:
    """Whether Ray Train failed because a worker's process or node died (not because the run raised)."""
    from ray.exceptions import ActorDiedError, NodeDiedError, RayActorError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (RayActorError, ActorDiedError, NodeDiedError)) or "died" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
