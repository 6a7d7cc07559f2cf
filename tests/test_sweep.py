"""Sweeps with Optuna: every trial a run in the store, pruned trials marked pruned, a killed sweep resumes
and runs only the trials still missing. The tiny BERT on the NER fixture: at 5e-3 it tags the fixture's
entities within 24 steps, at 1e-6 it never leaves all-O, so the median pruner has something to prune."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.config import RunConfig
from lab.errors import ConfigError, LabError
from lab.events import EvalEvent, StepEvent
from lab.groups.sweep import Param, SweepSetup, create_study, parse_param, run_sweep
from lab.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[1]


def sweep_args(tiny_model_dir, ner_conll, name, trials, *extra):
    return [
        "sweep",
        "--task",
        "ner",
        "--train-file",
        str(ner_conll),
        "--model",
        tiny_model_dir,
        "--peft",
        "full",
        "--max-steps",
        "24",
        "--max-length",
        "32",
        "--batch-size",
        "8",
        "--set",
        "train.eval_steps=6",
        "--param",
        "train.learning_rate=choice:0.005,0.000001",
        "--trials",
        str(trials),
        "--name",
        name,
        *extra,
    ]


def lab(runs_dir, *args, timeout=600, **popen):
    env = dict(os.environ, PYTHONPATH=str(ROOT), LAB_RUNS_DIR=str(runs_dir))
    command = [sys.executable, "-m", "lab", *map(str, args)]
    if popen:
        return subprocess.Popen(command, env=env, cwd=ROOT, text=True, **popen)
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def group_runs(runs_dir, name):
    return json.loads(lab(runs_dir, "runs", "--json", "--group", f"sweep {name}").stdout)


def test_a_sweep_makes_one_run_per_trial_prunes_the_poor_ones_and_names_the_best(tiny_model_dir, ner_conll, tmp_path):
    result = lab(tmp_path, *sweep_args(tiny_model_dir, ner_conll, "four", 5))
    assert result.returncode == 0, result.stderr
    runs = group_runs(tmp_path, "four")
    assert len(runs) == 5 and {run["status"] for run in runs} <= {"completed", "pruned"}
    best_line = next(line for line in result.stdout.splitlines() if line.startswith("best trial"))
    assert "train.learning_rate=0.005" in best_line and "validation f1" in best_line
    pruned = [run for run in runs if run["status"] == "pruned"]
    assert pruned, result.stdout  # a trial at 1e-6 after two at 5e-3 sat below the median
    assert all("Pruned by the median pruner at step" in run["message"] for run in pruned)
    assert all(
        run["status"] == "completed" and run["metrics"]["f1"] > 0.5
        for run in runs
        if "#" in run["name"] and run not in pruned and run["metrics"].get("f1", 0) > 0
    )


def test_a_killed_sweep_resumes_and_runs_only_the_missing_trials(tiny_model_dir, ner_conll, tmp_path):
    process = lab(
        tmp_path,
        *sweep_args(tiny_model_dir, ner_conll, "killed", 4, "--pruner", "none"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    told = []
    for line in process.stdout:
        if line.strip().startswith("trial "):
            told.append(line)
        if len(told) == 2:
            os.killpg(process.pid, signal.SIGKILL)  # mid-way through the third trial, or just before it
            break
    process.wait(timeout=60)
    resumed = lab(tmp_path, "sweep", "--resume", "killed")
    assert resumed.returncode == 0, resumed.stderr
    again = [line for line in resumed.stdout.splitlines() if line.strip().startswith("trial ")]
    assert len(again) == 2, resumed.stdout  # 4 asked for, 2 done before the kill
    finished = [run for run in group_runs(tmp_path, "killed") if run["status"] == "completed"]
    assert len(finished) == 4


@pytest.mark.parametrize(
    "text, expected",
    [
        ("train.learning_rate=log:1e-5:1e-2", Param("train.learning_rate", "log", 1e-5, 1e-2)),
        ("peft.r=int:4:32", Param("peft.r", "int", 4, 32)),
        ("peft.r=choice:4,8,16", Param("peft.r", "choice", choices=(4, 8, 16))),
        ("train.learning_rate=choice:1e-3,3e-4", Param("train.learning_rate", "choice", choices=(1e-3, 3e-4))),
        ("train.optimizer=choice:adamw,sgd", Param("train.optimizer", "choice", choices=("adamw", "sgd"))),
        ("train.warmup_ratio=float:0:0.2", Param("train.warmup_ratio", "float", 0.0, 0.2)),
    ],
)
def test_the_param_grammar(text, expected):
    assert parse_param(text, RunConfig()) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("train.learning_rate=1e-3", "expected section.field=KIND"),
        ("train.lr=log:1e-5:1e-2", "unknown config key 'train.lr'"),
        ("train.learning_rate=log:0:1e-2", "both above 0 for log"),
        ("peft.r=int:32:4", "needs LOW < HIGH"),
        ("peft.r=int:a:b", "needs LOW:HIGH numbers"),
    ],
)
def test_a_bad_param_is_one_clear_error(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_param(text, RunConfig())


# ---- a sweep always ends -------------------------------------------------------------------------------
def scripted_trials(store: RunStore, outcomes: list[str]):
    """A RunTrial whose runs end as `outcomes` says, one after the other, without training."""
    remaining = list(outcomes)

    def run_trial(config, group, sink, prune) -> str:
        run_id = store.create_run(config, executor="cli", group=group).id
        store.mark_running(run_id)
        outcome = remaining.pop(0)
        if outcome == "completed":
            sink(EvalEvent(split="validation", step=1, metrics={"accuracy": 0.5}))
            store.finish(run_id, "completed", "Finished.")
        else:
            store.finish(run_id, outcome, f"Model /nonexistent/model-{len(remaining)} was not found.")
        return run_id

    return run_trial


def sweep_setup(name: str, trials: int) -> SweepSetup:
    base = RunConfig()
    return SweepSetup(name, base, [parse_param("peft.r=int:4:8", base)], trials, "accuracy", pruner="none")


def test_a_sweep_whose_trials_keep_failing_stops_after_three_with_the_last_error(tmp_path):
    store = RunStore(tmp_path / "runs")
    setup = sweep_setup("broken", trials=10)
    study = create_study(store, setup)
    with pytest.raises(LabError, match=r"last 3 trials failed\. .*: Model /nonexistent/model-7 was not found\."):
        run_sweep(store, study, setup, scripted_trials(store, ["failed"] * 10))
    assert len(store.list_runs()) == 3


def test_failed_trials_count_towards_the_total_and_only_failures_in_a_row_stop_a_sweep(tmp_path):
    store = RunStore(tmp_path / "runs")
    setup = sweep_setup("patchy", trials=6)
    outcomes = ["failed", "failed", "completed", "failed", "failed", "completed"]
    assert run_sweep(store, create_study(store, setup), setup, scripted_trials(store, outcomes)) == "finished"
    assert sorted(run.status for run in store.list_runs()) == ["completed"] * 2 + ["failed"] * 4


def test_the_sweep_of_a_model_that_does_not_exist_ends_with_its_error(sentiment_csv, tmp_path):
    started = time.monotonic()
    result = lab(
        tmp_path,
        *("sweep", "--train-file", sentiment_csv, "--model", "/nonexistent/model"),
        *("--param", "peft.r=int:4:8", "--trials", "1", "--name", "missing-model"),
        timeout=120,
    )
    assert time.monotonic() - started < 120
    assert result.returncode != 0
    runs = group_runs(tmp_path, "missing-model")
    assert 1 <= len(runs) <= 3 and {run["status"] for run in runs} == {"failed"}
    assert "/nonexistent/model" in result.stdout + result.stderr


def test_sigterm_stops_a_sweep_at_once_and_leaves_it_resumable(tiny_model_dir, ner_conll, tmp_path):
    process = lab(
        tmp_path,
        *sweep_args(tiny_model_dir, ner_conll, "stopped", 3, "--pruner", "none"),
        *("--set", "train.max_steps=100000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    store = RunStore(tmp_path)
    try:
        deadline = time.monotonic() + 240
        while not any(
            isinstance(event, StepEvent) for run in store.list_runs() for _, event in store.events_since(run.id)
        ):
            assert process.poll() is None and time.monotonic() < deadline, "the first trial never trained"
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert time.monotonic() - stopped_at < 15
    assert process.returncode == 130, stderr[-2000:]
    assert "--resume 'stopped'" in stdout and "Traceback" not in stderr and "Exception ignored" not in stderr
    (run,) = store.list_runs()
    assert store.get_run(run.id).status == "cancelled"
