"""Faults during a run (issue 5): out of memory, a full disk, a killed server, several tabs on one run.

What a user must see: the run that hit the fault ends `failed` (or `interrupted`) with a message
saying what to do, its memory is let go, the next queued run still starts, runs stored earlier are
untouched, and a restarted app offers to resume. Process kills of a worker and of a queued run's
owner are in test_jobs / test_store; here the killed process is an app server training in a thread.
"""
from __future__ import annotations

import errno
import gc
import hashlib
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import pytest
import torch

from lab.runs import scripted  # noqa: E402
from lab.runs.scripted import scripted_train  # noqa: E402

from lab.config import RunConfig  # noqa: E402
from lab.events import EvalEvent, StatusEvent, StepEvent  # noqa: E402
from lab.runs.execute import execute_run
from lab.runs.resume import last_checkpoint
from lab.runs.runner import JobRunner  # noqa: E402
from lab.runs.store import RunStore  # noqa: E402

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
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def engine_config(model_dir: str, train_file: Path, name: str) -> RunConfig:
    return RunConfig.from_dict({
        "task": "classification", "name": name, "data": {"dataset": "", "train_file": str(train_file)},
        "model": {"name_or_path": model_dir}, "peft": {"method": "lora"},
        "train": {"max_steps": 2, "logging_steps": 1, "train_batch_size": 8, "max_length": 32, "device": "cpu",
                  "learning_rate": 1e-3}})


# ---- out of memory ----------------------------------------------------------------------------------
OOM_ERRORS = {
    "gpu": lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    "cpu": lambda: RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: "
                                "you tried to allocate 8589934592 bytes."),
}


@pytest.mark.parametrize("kind", sorted(OOM_ERRORS))
def test_out_of_memory_fails_the_run_says_what_to_lower_and_frees_its_memory(kind, store):
    held: list[weakref.ref] = []

    def greedy_train(config, output_dir, sink, should_stop=None, resume_from_checkpoint=None):
        if config.name != "greedy":
            return scripted_train(config, output_dir, sink, should_stop, resume_from_checkpoint)
        activations = torch.ones(4_000_000)  # what a real forward pass holds when the allocator gives up
        held.append(weakref.ref(activations))
        sink(StepEvent(step=1, max_steps=10, loss=1.0))
        raise OOM_ERRORS[kind]()

    runner = JobRunner(store, train_fn=greedy_train, gpu_ids=[], poll_seconds=0.05)
    try:
        greedy = runner.submit(RunConfig(name="greedy"))
        following = runner.submit(RunConfig(name="steps=3"))
        assert runner.wait(following, timeout=30) == "completed"  # the queue went on
        failed = store.get_run(greedy)
        assert failed.status == "failed"
        for advice in ("Out of memory", "train.train_batch_size", "train.max_length", "PEFT method"):
            assert advice in failed.message
        assert "\n" not in failed.message
        gc.collect()
        assert held and held[0]() is None, "the failed run's tensors are still referenced"
        # The runner is still usable: a new run is accepted and completes.
        assert runner.wait(runner.submit(RunConfig(name="steps=2")), timeout=30) == "completed"
    finally:
        runner.shutdown(timeout=30)


def test_out_of_memory_in_the_real_engine_frees_the_model_and_the_next_run_trains(store, tiny_model_dir,
                                                                                  sentiment_csv, monkeypatch):
    from transformers import Trainer

    import lab.training.engine

    models: list[weakref.ref] = []
    real_load_model, real_step = lab.training.engine.load_model, Trainer.training_step
    ooms = []

    def load_model(*args, **kwargs):
        model = real_load_model(*args, **kwargs)
        models.append(weakref.ref(model))
        return model

    def training_step(self, *args, **kwargs):
        if not ooms:  # the first run's first step: the forward pass runs out of GPU memory
            ooms.append(True)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.50 GiB")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(lab.training.engine, "load_model", load_model)
    monkeypatch.setattr(Trainer, "training_step", training_step)
    runner = JobRunner(store, train_fn=lab.training.engine.train, gpu_ids=[], poll_seconds=0.05)
    try:
        first = runner.submit(engine_config(tiny_model_dir, sentiment_csv, "too-big"))
        second = runner.submit(engine_config(tiny_model_dir, sentiment_csv, "fits"))
        assert runner.wait(second, timeout=300) == "completed", store.get_run(second).message
        message = store.get_run(first).message
        assert store.get_run(first).status == "failed"
        assert message.startswith("Out of memory during training: lower train.train_batch_size or train.max_length")
        gc.collect()
        assert models[0]() is None, "the model of the run that ran out of memory is still referenced"
    finally:
        runner.shutdown(timeout=60)


# ---- disk full ----------------------------------------------------------------------------------------
def test_disk_full_while_saving_fails_cleanly_and_earlier_runs_are_intact(store, tiny_model_dir, sentiment_csv,
                                                                          monkeypatch):
    import lab.training.engine

    earlier = store.create_run(RunConfig(name="earlier,steps=3"))
    assert execute_run(store, earlier.id, scripted_train, threading.Event()) == "completed"
    before = store.get_run(earlier.id).to_dict(), folder_digest(store, earlier.id)

    def save_model(trainer, config, label_names, model_dir: Path, *args) -> None:
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "model.safetensors").write_bytes(b"\x00" * 128)  # cut off half-way
        raise OSError(errno.ENOSPC, "No space left on device", str(model_dir / "model.safetensors"))

    monkeypatch.setattr(lab.training.engine, "save_model", save_model)
    run_id = store.create_run(engine_config(tiny_model_dir, sentiment_csv, "no-room")).id
    assert execute_run(store, run_id, lab.training.engine.train, threading.Event()) == "failed"
    run = store.get_run(run_id)
    assert run.message.startswith("The disk is full (")
    assert "model.safetensors" in run.message and f"python -m lab resume {run_id}" in run.message
    assert [e.status for _, e in store.events_since(run_id) if isinstance(e, StatusEvent)][-1] == "failed"

    reopened = RunStore(store.runs_dir)
    assert (reopened.get_run(earlier.id).to_dict(), folder_digest(reopened, earlier.id)) == before
    assert reopened.integrity_check() == "ok"


# ---- a killed app server ------------------------------------------------------------------------------
SERVER = f"""
import sys, time
sys.path[:0] = [{str(REPO)!r}, {str(TESTS)!r}]
from lab.runs.scripted import scripted_train
from lab.config import RunConfig
from lab.runs.runner import JobRunner
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
    monkeypatch.setattr("lab.runs.runner.default_train_fn", lambda: scripted_train)  # the app's runner trains with it
    at = live_page(run_id)
    assert store.get_run(run_id).status == "interrupted"
    assert any(f"pid {server.pid}" in w.value and "resume" in w.value for w in at.warning), [w.value for w in at.warning]
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
    store.append_events(run_id, [StepEvent(step=step, max_steps=10, loss=1 / step) for step in (4, 5, 6)] +
                        [EvalEvent(step=6, metrics={"accuracy": 0.75},
                                   per_label=[{"label": "pos", "precision": 1.0, "recall": 0.5, "f1": 0.667,
                                               "support": 2}])])
    first.run(), second.run()  # what the refresh timer does
    assert shown_step(first) == shown_step(second) == "6 / 10"
    reloaded = live_page(first.query_params["run"])  # a reload keeps the URL, so it finds the same run
    fresh = live_page()  # a new tab with no run in its URL opens the live one
    assert shown_step(reloaded) == shown_step(fresh) == "6 / 10"
    assert fresh.query_params["run"] == run_id
    assert any(b.label == "Cancel run" for b in fresh.button)
    # Every reader reads; none consumes: the store still holds every event for the next one.
    assert len(store.events_since(run_id)) == 1 + 1 + 6 + 1
