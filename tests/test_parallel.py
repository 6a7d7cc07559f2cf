"""A group's runs side by side: device slots, `--parallel N` on compare and sweep, cancelling a group.

On this CPU the default is one slot, so these tests ask for two. The scheduling tests use the scripted
stand-in engine in worker processes; the comparison trains the tiny BERT for real, in worker processes,
and checks each run against the same config trained alone.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from conftest import write_keyword_csv

from lab.cli.main import main
from lab.config import RunConfig
from lab.errors import ConfigError
from lab.groups.parallel import cancel_group, group_runner, wait_for_runs
from lab.launch.runner import JobRunner
from lab.launch.scripted import scripted_train
from lab.launch.slots import gpus_for, pick_slots
from lab.runs.store import RunStore

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
WORKER = (
    f"import sys; sys.path[:0] = [{str(REPO)!r}, {str(TESTS)!r}]; "
    "from lab.launch.scripted import worker_main; sys.exit(worker_main(sys.argv[1]))"
)


def scripted_worker(run_id: str, num_devices: int) -> list[str]:
    return [sys.executable, "-c", WORKER, run_id]


def scripted_config(name: str, **train) -> RunConfig:
    return RunConfig.from_dict(
        {"task": "classification", "name": name, "data": {"dataset": "imdb"}, "train": {"device": "cpu", **train}}
    )


def overlap(first, second) -> bool:
    return first.started_at < second.finished_at and second.started_at < first.finished_at


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "runs")


def test_slots_hand_out_distinct_gpus_within_the_runs_devices():
    gpus = ["0", "1"]
    assert pick_slots({0, 1, 2, 3}, 1, gpus, allowed=["1"]) == [1]  # slot 3 is GPU 1 too; the first free wins
    assert pick_slots({0, 2}, 2, gpus) is None  # both free slots are GPU 0: a 2-GPU run waits
    assert pick_slots({2, 3}, 2, gpus) == [2, 3] and gpus_for([2, 3], gpus) == ["0", "1"]
    assert pick_slots({0, 1}, 2, []) == [0, 1] and gpus_for([0, 1], []) == []  # the CPU: any free slots


def test_a_run_whose_devices_are_not_here_is_refused_before_it_is_recorded(store):
    runner = JobRunner(store, train_fn=scripted_train, gpu_ids=["0", "1"])
    try:
        with pytest.raises(ConfigError, match="this machine's GPUs are 0, 1"):
            runner.submit(scripted_config("steps=1", devices=["5"]))
        assert store.list_runs() == []
        with pytest.raises(ConfigError, match="train.devices lists GPU ids"):
            scripted_config("steps=1", devices=["cuda:0"]).validate()
        assert scripted_config("x", devices=[0, 1]).train.devices == ["0", "1"]  # YAML reads ids as numbers
    finally:
        runner.shutdown(timeout=10)


def test_two_slots_train_two_runs_at_once_and_cancel_stops_the_whole_group(store):
    runner = JobRunner(store, gpu_ids=[], command=scripted_worker, parallel=2, poll_seconds=0.05)
    try:
        assert runner.slot_count == 2
        quick = [runner.submit(scripted_config("steps=6,sleep=0.5"), group="g1") for _ in range(2)]
        first, second = wait_for_runs(runner, store, quick)
        assert first.status == second.status == "completed" and first.executor == "process"
        assert overlap(first, second), (first.started_at, first.finished_at, second.started_at, second.finished_at)

        long = [runner.submit(scripted_config("steps=2000,sleep=0.05"), group="g2") for _ in range(4)]
        deadline = time.monotonic() + 30
        while sorted(runner.running()) != sorted(long[:2]) and time.monotonic() < deadline:
            time.sleep(0.1)  # (the first two's worker processes may still be exiting)
        assert sorted(runner.running()) == sorted(long[:2]) and runner.queued() == long[2:]  # two train, two wait
        assert sorted(cancel_group(runner, store, "g2")) == sorted(long)
        assert [run.status for run in wait_for_runs(runner, store, long)] == ["cancelled"] * 4
    finally:
        runner.shutdown(timeout=30)


@pytest.fixture(scope="module")
def keyword_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("parallel-data") / "keyword.csv"
    write_keyword_csv(path, seed=5)
    return path


def test_a_four_method_comparison_on_two_slots_overlaps_and_each_run_scores_as_alone(
    tiny_model_dir, keyword_csv, tmp_path, capsys, monkeypatch
):
    config = RunConfig.from_dict(
        {
            "task": "classification",
            "data": {"dataset": "", "train_file": str(keyword_csv)},
            "model": {"name_or_path": tiny_model_dir},
            "train": {"max_steps": 16, "eval_steps": 8, "train_batch_size": 8, "max_length": 32, "device": "cpu"},
        }
    )
    config.save(tmp_path / "base.yaml")
    runs_dir = tmp_path / "runs"
    monkeypatch.setenv("LAB_RUNS_DIR", str(runs_dir))
    methods = "full,head,lora,ia3"
    argv = ["compare", str(tmp_path / "base.yaml"), "--methods", methods, "--parallel", "2", "--name", "side"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "2 runs at once" in printed and "4 runs in" in printed

    store = RunStore(runs_dir)
    runs = store.list_runs(group="compare side")
    assert sorted(run.peft_method for run in runs) == sorted(methods.split(","))
    assert all(run.status == "completed" and run.executor == "process" for run in runs)
    assert any(overlap(a, b) for a in runs for b in runs if a.id < b.id)  # two trained at the same time

    from lab.training.engine import train

    for run in runs:  # the same config trained alone, in this process: the same test accuracy
        alone = train(store.load_config(run.id), tmp_path / f"alone-{run.peft_method}", lambda event: None)
        assert alone.metrics == pytest.approx(run.metrics, rel=1e-3, abs=1e-4), run.peft_method


def test_a_sweep_on_two_slots_trains_trials_side_by_side_and_tells_every_one(store):
    from lab.groups.sweep import SweepSetup, create_study, parse_params, run_sweep, runner_trial

    base = scripted_config("")
    name = "eval=4,sleep=0.3,steps=8,trial"  # the stand-in reads its steps from the run's name: "NAME #N"
    setup = SweepSetup(name, base, parse_params(["train.seed=int:0:1000"], base), trials=4, metric="accuracy")
    runner = group_runner(store, 2, gpu_ids=[], command=scripted_worker, poll_seconds=0.05)
    told = []
    try:
        study = create_study(store, setup)
        end = run_sweep(
            store,
            study,
            setup,
            runner_trial(runner, store, poll_seconds=0.1),
            lambda number, status, value, message: told.append(status),
            parallel=2,
        )
    finally:
        runner.shutdown(timeout=30)
    assert end == "finished"
    assert len(told) == 4 and len(study.trials) == 4
    runs = store.list_runs(group=f"sweep {name}")
    assert len(runs) == 4
    assert any(overlap(a, b) for a in runs for b in runs if a.id < b.id)
