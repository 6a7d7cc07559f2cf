"""`python -m bench.scale`: a comparison's wall time with one slot and with N, here or on a local Ray cluster.

The same comparison (one run per method, the same config and seed) trains twice through the job runner:
once one run at a time, once `--slots N` at a time. Both ways every run is a worker process of its own
(here) or a Ray job (`--ray`, a cluster of two one-CPU nodes on 127.0.0.1 that this command starts: run
it inside a loopback-only network namespace, as .ci/run does, since Ray listens on every interface
otherwise). It prints each run's start and end, and a table: the group's wall time, the sum of its runs'
own times (what one slot must pay in sequence), and the speed-up. With `--ray` it then trains one run with
one and with two Ray Train workers (the same global batch) and prints each one's training examples per
second and loss curve.

How it extrapolates: a group of runs on N slots takes about the longest chain of runs any slot gets (its
critical path): with equal runs, ceil(runs / N) x one run's time plus each run's start-up. On a CPU the
slots share the same cores, so two slots gain only what one run leaves idle (start-up, evaluation, data
loading); on N GPUs each run has a device to itself and the speed-up approaches min(N, runs).

    python -m bench.scale                        # 4 methods on the tiny BERT, 1 vs 2 slots (a few minutes)
    python -m bench.scale --model minilm --steps 40 --methods full,lora,ia3,head
    unshare -n -p -f --mount-proc bash -c 'ip link set lo up; python -m bench.scale --ray'
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from lab.config import RunConfig
from lab.groups.compare import plan_comparison
from lab.groups.parallel import wait_for_runs
from lab.launch.runner import JobRunner
from lab.runs.store import RunStore

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def base_config(model: str, steps: int, ray_address: str = "") -> RunConfig:
    train: dict[str, Any] = {"max_steps": steps, "eval_steps": steps, "train_batch_size": 8, "max_length": 64}
    train |= {"device": "cpu", "seed": 0}
    if ray_address:
        train |= {"executor": "ray", "ray_address": ray_address}
    return RunConfig.from_dict(
        {
            "task": "classification",
            "data": {"dataset": "", "train_file": str(FIXTURES / "sentiment.csv")},
            "model": {"name_or_path": model},
            "train": train,
        }
    ).validate()


def run_group(base: RunConfig, methods: str, slots: int, runs_dir: Path) -> dict[str, Any]:
    """Train the comparison with `slots` runs at once; its wall time and each run's own start and end."""
    store = RunStore(runs_dir)
    runner = JobRunner(store, gpu_ids=[], parallel=slots)
    comparison = plan_comparison(base, methods, f"scale {slots}")
    started = time.time()
    try:
        run_ids = comparison.start(lambda config, group: runner.submit(config, local="process", group=group))
        records = wait_for_runs(runner, store, run_ids)
    finally:
        runner.shutdown(timeout=120)
    wall = time.time() - started
    for run in records:
        print(
            f"  {slots} slot(s) {run.peft_method:<8} {run.status:<10} "
            f"{run.started_at - started:6.1f} s -> {run.finished_at - started:6.1f} s",
            flush=True,
        )
    failed = [run for run in records if run.status != "completed"]
    if failed:
        raise SystemExit(f"run {failed[0].id} {failed[0].status}: {failed[0].message}")
    return {
        "slots": slots,
        "wall": wall,
        "runs_total": sum(run.finished_at - run.started_at for run in records),
        "runs": len(records),
    }


def data_parallel_rate(base: RunConfig, workers: int, runs_dir: Path) -> dict[str, Any]:
    """One run with `workers` Ray Train workers and a global batch of 8: its training examples per second
    between its first and last logged step (start-up and evaluation left out), and its loss curve."""
    from lab.events import StepEvent

    config = base.with_overrides(
        [f"train.num_workers={workers}", f"train.train_batch_size={8 // workers}", "train.logging_steps=1"]
    )
    config.train.group_by_length, config.train.warmup_ratio = False, 0.0
    config.name = f"{workers} worker(s)"
    store = RunStore(runs_dir)
    runner = JobRunner(store, gpu_ids=[])
    try:
        run_id = runner.submit(config.validate())
        status = runner.wait(run_id)
    finally:
        runner.shutdown(timeout=120)
    if status != "completed":
        raise SystemExit(f"the {workers}-worker run {status}: {store.get_run(run_id).message}")
    steps = [event for _, event in store.events_since(run_id) if isinstance(event, StepEvent)]
    seconds = steps[-1].time - steps[0].time
    return {
        "workers": workers,
        "examples_per_second": (steps[-1].step - steps[0].step) * 8 / seconds,
        "losses": [round(event.loss, 4) for event in steps],
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def two_node_cluster():
    """A head and a worker node, one CPU each, on 127.0.0.1; returns (cluster, job API address)."""
    if [name for _, name in socket.if_nameindex()] != ["lo"]:
        raise SystemExit("--ray runs inside a loopback-only namespace: unshare -n -p -f --mount-proc (see above)")
    from ray.cluster_utils import Cluster

    dashboard = _free_port()
    head = {"num_cpus": 1, "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": dashboard}
    cluster = Cluster(initialize_head=True, head_node_args=head | {"node_ip_address": "127.0.0.1"})
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    address = f"http://127.0.0.1:{dashboard}"
    from lab.launch.ray_launcher import connect

    deadline = time.monotonic() + 90
    while True:
        try:
            connect(address).list_jobs()
            return cluster, address
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="full,head,lora,ia3")
    parser.add_argument("--slots", type=int, default=2, help="Runs at once in the second pass (default 2).")
    parser.add_argument("--model", default="", help="A model path or name (default: the tiny test BERT).")
    parser.add_argument("--steps", type=int, default=24, help="Optimizer steps per run (default 24).")
    parser.add_argument("--ray", action="store_true", help="On a two-node local Ray cluster (see above).")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
        model = args.model
        if not model:
            from lab.model.testing import build_tiny_model, fixture_texts

            model = build_tiny_model(Path(folder) / "tiny-bert", fixture_texts(FIXTURES))
        cluster, address = two_node_cluster() if args.ray else (None, "")
        try:
            base = base_config(model, args.steps, address)
            where = f"a 2-node Ray cluster at {address}" if address else "this machine (worker processes)"
            print(f"Comparison of {args.methods} on {where}, {args.steps} steps per run:", flush=True)
            rows = [run_group(base, args.methods, slots, Path(folder) / f"runs-{slots}") for slots in (1, args.slots)]
            rates = (
                [data_parallel_rate(base, workers, Path(folder) / f"dp-{workers}") for workers in (1, 2)]
                if address
                else []
            )
        finally:
            if cluster is not None:
                cluster.shutdown()
    one = rows[0]["wall"]
    print(f"\n{'slots':>5} {'runs':>5} {'wall s':>8} {'sum of runs s':>14} {'speed-up':>9}")
    for row in rows:
        speed_up = one / row["wall"]
        print(f"{row['slots']:>5} {row['runs']:>5} {row['wall']:>8.1f} {row['runs_total']:>14.1f} {speed_up:>9.2f}")
    if rates:
        print(f"\nOne run, global batch 8 ({args.steps} steps): {'workers':>7} {'examples/s':>11}  loss curve")
        for rate in rates:
            losses = " ".join(f"{loss:.3f}" for loss in rate["losses"])
            print(f"{'':>36}{rate['workers']:>7} {rate['examples_per_second']:>11.1f}  {losses}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
