"""Worker processes seen from outside: the command that starts one, its environment, and its log.

A worker's standard output and error go to the run's `worker.log`, opened for appending. The process
that watches the worker caps that file (`cap_log`): past `WORKER_LOG_MAX_BYTES` its text moves to
`worker.log.1` (replacing an older one) and `worker.log` starts empty, so a long run's log stays within
twice the cap.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from lab.runs.store import RunStore

WORKER_LOG = "worker.log"
WORKER_LOG_MAX_BYTES = 10 * 1024 * 1024
LAST_LINE_BYTES = 64 * 1024  # how far from the end of the log its last line is looked for

# (run id, number of devices) -> the command line of the worker process that trains the run
WorkerCommand = Callable[[str, int], list[str]]


def torchrun_prefix(python: str, num_devices: int) -> list[str]:
    """How a worker module starts: the interpreter, through torchrun (the same interpreter) for several devices."""
    if num_devices > 1:
        return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={num_devices}"]
    return [python]


def worker_command(run_id: str, num_devices: int) -> list[str]:
    """`python -m lab train --run-id ID`, through torchrun for several devices."""
    return [*torchrun_prefix(sys.executable, num_devices), "-m", "lab", "train", "--run-id", run_id]


def worker_env(store: RunStore, gpu_ids: list[str], cpu_threads: int = 0) -> dict[str, str]:
    """A worker's environment: the run store, the GPUs it sees, and (`cpu_threads` above 0, when workers
    share the CPU) how many threads its kernels use."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", LAB_RUNS_DIR=str(store.runs_dir.resolve()))
    if gpu_ids:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
    if cpu_threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(cpu_threads)
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)  # a runner inside a torchrun job must not leak its rank to a new worker
    return env


def worker_log(store: RunStore, run_id: str) -> Path:
    return store.run_dir(run_id) / WORKER_LOG


def cap_log(path: Path, max_bytes: int = WORKER_LOG_MAX_BYTES) -> None:
    """Keep `path` under `max_bytes`: move its text to PATH.1 and empty it. Writers that opened it for
    appending go on at its new end; a line they write between the copy and the truncation is lost."""
    try:
        if path.stat().st_size <= max_bytes:
            return
        shutil.copyfile(path, path.with_name(path.name + ".1"))
        os.truncate(path, 0)
    except OSError:
        pass  # gone, or a full disk: the next check tries again


def last_log_line(path: Path) -> str:
    """The last non-empty line of a log (read from its end only), at most 300 characters."""
    try:
        with open(path, "rb") as log_file:
            log_file.seek(max(0, log_file.seek(0, os.SEEK_END) - LAST_LINE_BYTES))
            text = log_file.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
