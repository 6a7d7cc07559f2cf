"""Faults during a run: out of memory, a full disk, a killed server, several tabs on one run.

What a user must see: the run that hit the fault ends `failed` (or `interrupted`) with a message
saying what to do, its memory is let go, the next queued run still starts, runs stored earlier are
untouched, and a restarted app offers to resume. Process kills of a worker and of a queued run's
owner are in test_jobs / test_store; here the killed process is an app server training in a thread.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench.reliability import scenario_disk_full, scenario_oom_engine, scenario_oom_job
from bench.store_faults import STORE_SCENARIOS, run_scenario
from lab.config import RunConfig
from lab.events import EvalEvent, StepEvent
from lab.launch import scripted
from lab.launch.scripted import scripted_train
from lab.runs.resume import last_checkpoint
from lab.runs.store import RunStore

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "runs")


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def folder_digest(store: RunStore, run_id: str) -> dict[str, str]:
    folder = store.run_dir(run_id)
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ---- out of memory and a full disk: the scenarios `python -m bench.reliability` prints ---------------
# One source for each fault: the benchmark's scenario injects it and judges the outcome; the test
# runs the same scenario and fails with what it observed.
@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_out_of_memory_fails_the_run_says_what_to_lower_and_frees_its_memory(kind, tmp_path):
    row = scenario_oom_job(tmp_path, kind)
    assert row.passed, row.observed


def test_out_of_memory_in_the_real_engine_frees_the_model_and_the_next_run_trains(
    tmp_path, tiny_model_dir, sentiment_csv
):
    row = scenario_oom_engine(tmp_path, tiny_model_dir, sentiment_csv)
    assert row.passed, row.observed


def test_disk_full_while_saving_fails_cleanly_and_earlier_runs_are_intact(tmp_path, tiny_model_dir, sentiment_csv):
    row = scenario_disk_full(tmp_path, tiny_model_dir, sentiment_csv)
    assert row.passed, row.observed


@pytest.mark.parametrize("title", list(STORE_SCENARIOS))
def test_the_run_store_degrades_instead_of_crashing(title, tmp_path):
    """Read-only, locked, damaged and full stores; owners a reader cannot look at; deleted folders; escape
    codes; long histories (bench/store_faults.py says what each stages and expects)."""
    row = run_scenario(title, tmp_path)
    if row.observed.startswith("skipped"):
        pytest.skip(row.observed)
    assert row.passed, row.observed


# ---- a killed app server ------------------------------------------------------------------------------
SERVER = f"""
import sys, time
sys.path[:0] = [{str(REPO)!r}, {str(TESTS)!r}]
from lab.launch.scripted import scripted_train
from lab.config import RunConfig
from lab.launch.runner import JobRunner
from lab.runs.store import RunStore
runner = JobRunner(RunStore(sys.argv[1]), train_fn=scripted_train, gpu_ids=[], poll_seconds=0.05)
print(runner.submit(RunConfig(name="steps=40,sleep=0.05,ckpt=4")), flush=True)
time.sleep(600)
"""


def test_killed_app_server_shows_the_run_interrupted_and_resumes_it_from_its_checkpoint(store, monkeypatch):
    """An app server trains in a thread and is killed (OOM killer, closed laptop, kill -9). The next
    server opens the store: the run says interrupted, the Live page offers Resume, Resume continues
    from the last complete checkpoint in the same record."""
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(store.runs_dir)], stdout=subprocess.PIPE, text=True)
    try:
        run_id = server.stdout.readline().strip()
        checkpoints = store.run_dir(run_id) / "checkpoints"
        wait_for(lambda: last_checkpoint(checkpoints) is not None)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    checkpoint = last_checkpoint(checkpoints)

    monkeypatch.setenv("LAB_RUNS_DIR", str(store.runs_dir))
    monkeypatch.setattr("lab.launch.runner.default_train_fn", lambda: scripted_train)  # the app's runner trains with it
    at = live_page(run_id)
    assert store.get_run(run_id).status == "interrupted"
    assert any(f"pid {server.pid}" in w.value and "resume" in w.value for w in at.warning), [
        w.value for w in at.warning
    ]
    next(b for b in at.button if b.label == "Resume").click().run()
    assert not at.exception, [e.value for e in at.exception]
    wait_for(lambda: store.get_run(run_id).status == "completed")
    run = store.get_run(run_id)
    assert run.attempt == 2
    assert scripted.CALLS[-1]["resume_from_checkpoint"] == str(checkpoint)
    steps = [e.step for _, e in store.events_since(run_id) if isinstance(e, StepEvent)]
    assert steps[-1] == 40 and int(checkpoint.name.split("-")[1]) + 1 in steps


# ---- several tabs on one live run -----------------------------------------------------------------------
def live_page(run_id: str | None = None) -> Any:
    AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    if run_id:
        at.query_params["run"] = run_id
    at.run()
    at.switch_page("pages/3_Live_run.py")
    return at.run()


def shown_step(at) -> str:
    assert not at.exception, [e.value for e in at.exception]
    return next(m.value for m in at.metric if m.label == "Step")


def test_two_tabs_and_a_reloaded_tab_see_the_same_live_run(store, monkeypatch):
    monkeypatch.setenv("LAB_RUNS_DIR", str(store.runs_dir))
    run_id = store.create_run(RunConfig(name="shared")).id
    store.mark_running(run_id)
    store.append_events(run_id, [StepEvent(step=step, max_steps=10, loss=1 / step) for step in (1, 2, 3)])

    first, second = live_page(run_id), live_page(run_id)
    assert shown_step(first) == shown_step(second) == "3 / 10"
    store.append_events(
        run_id,
        [StepEvent(step=step, max_steps=10, loss=1 / step) for step in (4, 5, 6)]
        + [
            EvalEvent(
                step=6,
                metrics={"accuracy": 0.75},
                per_label=[{"label": "pos", "precision": 1.0, "recall": 0.5, "f1": 0.667, "support": 2}],
            )
        ],
    )
    first.run(), second.run()  # what the refresh timer does
    assert shown_step(first) == shown_step(second) == "6 / 10"
    reloaded = live_page(first.query_params["run"])  # a reload keeps the URL, so it finds the same run
    fresh = live_page()  # a new tab with no run in its URL opens the live one
    assert shown_step(reloaded) == shown_step(fresh) == "6 / 10"
    assert fresh.query_params["run"] == run_id
    assert any(b.label == "Cancel run" for b in fresh.button)
    # Every reader reads; none consumes: the store still holds every event for the next one.
    assert len(store.events_since(run_id)) == 1 + 1 + 6 + 1
