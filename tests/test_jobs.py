"""The job runner: queueing, cancel, failure, resume, worker processes, and runs that survive a kill.

Most tests inject `lab.launch.scripted.scripted_train` (behaviour chosen by the run name); the tests at the
end drive the real engine on the tiny model and skip while it is missing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.config import RunConfig
from lab.errors import LabError
from lab.events import LogEvent, ResultEvent, StatusEvent, StepEvent
from lab.launch import scripted
from lab.launch.launchers import choose_launcher
from lab.launch.processes import cap_log, last_log_line, worker_command
from lab.launch.runner import JobRunner
from lab.launch.scripted import scripted_train
from lab.launch.worker import run_stored_job
from lab.runs.resume import last_checkpoint, prepare_resume
from lab.runs.store import RunStore

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
WORKER = (
    f"import sys; sys.path[:0] = [{str(REPO)!r}, {str(TESTS)!r}]; "
    "from lab.launch.scripted import worker_main; sys.exit(worker_main(sys.argv[1]))"
)


def fake_worker_command(run_id: str, num_devices: int) -> list[str]:
    return [sys.executable, "-c", WORKER, run_id]


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "runs")


@pytest.fixture
def runner(store: RunStore):
    runner = JobRunner(
        store,
        train_fn=scripted_train,
        gpu_ids=[],
        command=fake_worker_command,
        cancel_grace_seconds=0.5,
        poll_seconds=0.05,
    )
    yield runner
    runner.shutdown(timeout=30)


def config(name: str) -> RunConfig:
    return RunConfig(name=name)


def events_of(store: RunStore, run_id: str, kind: type) -> list:
    return [event for _, event in store.events_since(run_id) if isinstance(event, kind)]


def statuses(store: RunStore, run_id: str) -> list[str]:
    return [event.status for event in events_of(store, run_id, StatusEvent)]


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def first_step_seen(store: RunStore, run_id: str, step: int = 1) -> bool:
    return any(e.step >= step for e in events_of(store, run_id, StepEvent))


# ---- thread launcher -----------------------------------------------------------------------------
def test_thread_job_completes_with_metrics_report_and_ordered_events(runner: JobRunner, store: RunStore) -> None:
    run_id = runner.submit(config("steps=4"))
    assert runner.wait(run_id, timeout=20) == "completed"
    run = store.get_run(run_id)
    assert run.metrics["accuracy"] == 0.75 and run.per_label == scripted.PER_LABEL
    assert run.started_at <= run.finished_at and run.summary["total_params"] == 100
    assert (store.run_dir(run_id) / "report.json").is_file()
    kinds = [event.kind for _, event in store.events_since(run_id)]
    assert kinds == ["status", "status", "status", "step", "step", "step", "step", "result", "status"]
    assert statuses(store, run_id) == ["queued", "running", "running", "completed"]


def test_cancelled_thread_job_says_cancelled_within_one_step(runner: JobRunner, store: RunStore) -> None:
    run_id = runner.submit(config("steps=100000,sleep=0.05"))
    wait_for(lambda: first_step_seen(store, run_id, 2))
    runner.cancel(run_id)
    # Read after cancel() returns: writing the request takes a moment on a loaded machine, and the
    # promise is about the steps after the request is in.
    step_at_cancel = scripted.LAST_STEP[str(store.run_dir(run_id))]
    assert runner.wait(run_id, timeout=10) == "cancelled"
    assert events_of(store, run_id, StepEvent)[-1].step <= step_at_cancel + 1
    assert store.get_run(run_id).message == "Cancelled at the user's request."


def test_failed_job_keeps_its_message_and_the_next_queued_job_runs(runner: JobRunner, store: RunStore) -> None:
    failing = runner.submit(config("steps=5,fail=3,sleep=0.05"))
    crashing = runner.submit(config("steps=5,crash=1"))
    following = runner.submit(config("steps=3"))
    assert runner.queued()[-2:] == [crashing, following]  # one job at a time, the others in order
    assert runner.wait(following, timeout=30) == "completed"
    failed = store.get_run(failing)
    assert failed.status == "failed" and failed.message == "Row 3 of train.csv has no label."
    assert "LabError" in failed.traceback and "scripted.py" in failed.traceback
    assert store.get_run(crashing).message == "RuntimeError: boom"
    starts = [store.get_run(i).started_at for i in (failing, crashing, following)]
    assert starts == sorted(starts)
    assert store.get_run(following).started_at >= store.get_run(crashing).finished_at


def test_cancel_of_a_queued_job_drops_it_without_touching_the_running_one(runner: JobRunner, store: RunStore) -> None:
    running = runner.submit(config("steps=100000,sleep=0.02"))
    queued = runner.submit(config("steps=2"))
    runner.cancel(queued)
    assert store.get_run(queued).status == "cancelled" and store.get_run(queued).started_at is None
    assert statuses(store, queued) == ["queued", "cancelled"]
    wait_for(lambda: first_step_seen(store, running))
    assert store.get_run(running).status == "running"
    runner.cancel(running)
    assert runner.wait(running, timeout=10) == "cancelled"
    with pytest.raises(LabError, match="nothing to cancel"):
        runner.cancel(running)


def test_cancel_asked_from_another_process_reaches_the_runner(runner: JobRunner, store: RunStore) -> None:
    run_id = runner.submit(config("steps=100000,sleep=0.02"))
    wait_for(lambda: first_step_seen(store, run_id))
    cli = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from lab.runs.store import RunStore; "
            "from lab.launch.worker import cancel_run; cancel_run(RunStore(sys.argv[1]), sys.argv[2])",
            str(store.runs_dir),
            run_id,
        ],
        cwd=REPO,
        check=True,
    )
    assert cli.returncode == 0
    assert runner.wait(run_id, timeout=10) == "cancelled"


def test_a_full_queue_refuses_the_next_run_with_a_clear_message_and_records_nothing(store: RunStore) -> None:
    runner = JobRunner(store, train_fn=scripted_train, gpu_ids=[], poll_seconds=0.05, max_queued=2)
    try:
        running = runner.submit(config("steps=100000,sleep=0.02"))
        wait_for(lambda: first_step_seen(store, running))
        waiting = [runner.submit(config("steps=1")) for _ in range(2)]
        with pytest.raises(LabError, match=r"The queue is full: 2 runs are waiting\..*LAB_QUEUE_LIMIT"):
            runner.submit(config("steps=1"))
        assert len(store.list_runs()) == 3
        runner.cancel(waiting[0])
        runner.submit(config("steps=1"))  # a place freed up
    finally:
        runner.shutdown(timeout=20)


def test_the_queue_bound_is_a_setting(store: RunStore, monkeypatch) -> None:
    monkeypatch.setenv("LAB_QUEUE_LIMIT", "7")
    runner = JobRunner(store, train_fn=scripted_train, gpu_ids=[])
    runner.shutdown(timeout=5)
    assert runner.max_queued == 7
    monkeypatch.setenv("LAB_QUEUE_LIMIT", "lots")
    with pytest.raises(LabError, match="LAB_QUEUE_LIMIT must be a whole number"):
        JobRunner(store, train_fn=scripted_train, gpu_ids=[])


# ---- resume -------------------------------------------------------------------------------------
def test_resume_continues_from_the_last_checkpoint_in_the_same_record(runner: JobRunner, store: RunStore) -> None:
    run_id = runner.submit(config("steps=12,ckpt=2,sleep=0.05"))
    wait_for(
        lambda: last_checkpoint(store.run_dir(run_id) / "checkpoints") is not None and first_step_seen(store, run_id, 5)
    )
    runner.cancel(run_id)
    assert runner.wait(run_id, timeout=10) == "cancelled"
    checkpoint = last_checkpoint(store.run_dir(run_id) / "checkpoints")
    resumed_at = int(checkpoint.name.split("-")[1])
    partial = checkpoint.parent / f"checkpoint-{resumed_at + 100}"  # cut off mid-save by a kill
    partial.mkdir()

    seq = store.last_seq(run_id)
    assert runner.resume(run_id) == run_id
    assert runner.wait(run_id, timeout=20) == "completed"
    assert scripted.CALLS[-1]["resume_from_checkpoint"] == str(checkpoint)
    assert not partial.exists()
    after = [event for _, event in store.events_since(run_id, seq)]
    assert [e.step for e in after if isinstance(e, StepEvent)] == list(range(resumed_at + 1, 13))
    assert any(isinstance(e, LogEvent) and f"Resuming from {checkpoint.name}" in e.message for e in after)
    run = store.get_run(run_id)
    assert run.attempt == 2 and run.message.startswith("Finished") and len(store.list_runs()) == 1
    assert statuses(store, run_id)[-3:] == ["queued", "running", "running", "completed"][-3:]


def test_resume_without_a_checkpoint_starts_over_and_says_so(runner: JobRunner, store: RunStore) -> None:
    run_id = runner.submit(config("steps=100000,sleep=0.02"))
    wait_for(lambda: first_step_seen(store, run_id))
    runner.cancel(run_id)
    runner.wait(run_id, timeout=10)
    (store.run_dir(run_id) / "config.yaml").write_text(config("steps=3").to_yaml())  # finish quickly now
    runner.resume(run_id)
    assert runner.wait(run_id, timeout=20) == "completed"
    assert scripted.CALLS[-1]["resume_from_checkpoint"] is None
    logs = [e.message for e in events_of(store, run_id, LogEvent)]
    assert any("starting it over from step 0" in message for message in logs)


def test_only_ended_unfinished_runs_can_be_resumed(runner: JobRunner, store: RunStore) -> None:
    done = runner.submit(config("steps=1"))
    runner.wait(done, timeout=10)
    with pytest.raises(LabError, match="already completed"):
        runner.resume(done)
    busy = runner.submit(config("steps=100000,sleep=0.02"))
    with pytest.raises(LabError, match="already queued or running|only an interrupted"):
        runner.resume(busy)
    with pytest.raises(LabError, match="only an interrupted"):
        prepare_resume(store, busy)


# ---- process launcher ----------------------------------------------------------------------------
def test_process_job_writes_through_the_store(runner: JobRunner, store: RunStore) -> None:
    run_id = runner.submit(config("steps=3"), local="process")
    assert runner.wait(run_id, timeout=60) == "completed"
    run = store.get_run(run_id)
    assert run.executor == "process" and run.metrics["accuracy"] == 0.75
    assert [e.step for e in events_of(store, run_id, StepEvent)] == [1, 2, 3]
    running = [e.message for e in events_of(store, run_id, StatusEvent) if e.status == "running"]
    assert running[0].startswith("Training in process ") and str(os.getpid()) not in running[0]


def test_process_job_stops_cooperatively_on_cancel(store: RunStore) -> None:
    runner = JobRunner(store, gpu_ids=[], command=fake_worker_command, cancel_grace_seconds=20, poll_seconds=0.05)
    try:
        run_id = runner.submit(config("steps=100000,sleep=0.02"), local="process")
        wait_for(lambda: first_step_seen(store, run_id))
        started = time.monotonic()
        runner.cancel(run_id)
        assert runner.wait(run_id, timeout=20) == "cancelled"
        assert time.monotonic() - started < 5  # well before the grace period sends SIGTERM
        assert store.get_run(run_id).message == "Cancelled at the user's request."  # the worker's own account
    finally:
        runner.shutdown(timeout=20)


@pytest.mark.parametrize(
    "deafness, expected_message",
    [
        ("deaf", "Cancelled; the worker stopped on SIGTERM."),
        ("deaf-term", "Cancelled; the worker process was stopped."),
    ],
)
def test_cancel_escalates_to_sigterm_then_sigkill(
    runner: JobRunner, store: RunStore, deafness: str, expected_message: str
) -> None:
    run_id = runner.submit(config(f"steps=100000,sleep=0.02,{deafness}"), local="process")
    wait_for(lambda: first_step_seen(store, run_id))
    started = time.monotonic()
    runner.cancel(run_id)
    assert runner.wait(run_id, timeout=20) == "cancelled"
    assert time.monotonic() - started < 10
    assert store.get_run(run_id).message == expected_message


def test_killed_worker_process_leaves_the_run_interrupted_after_reopening(store: RunStore) -> None:
    run_id = store.create_run(config("steps=100000,sleep=0.02"), executor="process").id
    env = dict(os.environ, LAB_RUNS_DIR=str(store.runs_dir))
    worker = subprocess.Popen(fake_worker_command(run_id, 1), env=env, cwd=REPO)
    wait_for(lambda: first_step_seen(store, run_id))
    assert store.get_run(run_id).owner_pid == worker.pid
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    run = RunStore(store.runs_dir).get_run(run_id)  # e.g. the app after a restart
    assert run.status == "interrupted" and f"pid {worker.pid}" in run.message
    assert statuses(store, run_id)[-1] == "interrupted"


def test_runner_marks_a_killed_worker_interrupted_and_keeps_going(runner: JobRunner, store: RunStore) -> None:
    run_id = runner.submit(config("steps=100000,sleep=0.02"), local="process")
    following = runner.submit(config("steps=2"))
    wait_for(lambda: first_step_seen(store, run_id))
    os.kill(store.get_run(run_id).owner_pid, signal.SIGKILL)
    assert runner.wait(run_id, timeout=20) == "interrupted"
    assert "killed by SIGKILL" in store.get_run(run_id).message
    assert runner.wait(following, timeout=20) == "completed"


def test_worker_that_dies_before_training_fails_with_its_last_words(store: RunStore) -> None:
    def broken_command(run_id: str, num_devices: int) -> list[str]:
        return [sys.executable, "-c", "import sys; print('ModuleNotFoundError: no lab here'); sys.exit(3)"]

    runner = JobRunner(store, train_fn=scripted_train, gpu_ids=[], command=broken_command, poll_seconds=0.05)
    try:
        run_id = runner.submit(config("steps=2"), local="process")
        assert runner.wait(run_id, timeout=20) == "failed"
        message = store.get_run(run_id).message
        assert "exited with code 3" in message and "no lab here" in message and "worker.log" in message
    finally:
        runner.shutdown(timeout=10)


def test_stored_job_refuses_a_run_that_is_not_queued(store: RunStore) -> None:
    run_id = store.create_run(config("steps=1")).id
    assert run_stored_job(run_id, store, train_fn=scripted_train) == 0
    with pytest.raises(LabError, match="not queued"):
        run_stored_job(run_id, store, train_fn=scripted_train)


def test_a_worker_log_past_its_cap_moves_aside_while_the_worker_keeps_writing(tmp_path: Path) -> None:
    path = tmp_path / "worker.log"
    with open(path, "ab") as worker_output:  # as a worker process holds it
        worker_output.write(b"early line\n" * 200)
        worker_output.flush()
        cap_log(path, max_bytes=1000)
        worker_output.write(b"late line\n")
        worker_output.flush()
    assert path.read_bytes() == b"late line\n"
    assert (tmp_path / "worker.log.1").read_bytes() == b"early line\n" * 200
    assert last_log_line(path) == "late line"


@pytest.mark.parametrize(
    "train, local, expected",
    [
        ({}, "thread", "thread"),
        ({}, "process", "process"),
        ({"num_devices": 2}, "thread", "torchrun"),
        ({"executor": "ray", "num_devices": 2}, "process", "ray"),
    ],
)
def test_one_function_says_where_a_run_trains(train: dict, local: str, expected: str) -> None:
    assert choose_launcher(RunConfig.from_dict({"train": train}), local) == expected


def test_worker_command_uses_torchrun_for_several_devices() -> None:
    assert worker_command("r1", 1) == [sys.executable, "-m", "lab", "train", "--run-id", "r1"]
    command = worker_command("r1", 2)
    assert command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert command[-5:] == ["-m", "lab", "train", "--run-id", "r1"]


# ---- with the real engine -----------------------------------------------------------------------
def engine_config(model_dir: str, train_file: Path, name: str, max_steps: int, num_devices: int = 1) -> RunConfig:
    return RunConfig.from_dict(
        {
            "task": "classification",
            "name": name,
            "data": {"dataset": "", "train_file": str(train_file)},
            "model": {"name_or_path": model_dir},
            "peft": {"method": "full"},
            "train": {
                "max_steps": max_steps,
                "eval_steps": 2,
                "logging_steps": 1,
                "train_batch_size": 8,
                "learning_rate": 1e-3,
                "max_length": 32,
                "device": "cpu",
                "num_devices": num_devices,
                "save_total_limit": 2,
            },
        }
    )


def real_engine(request) -> str:
    return request.getfixturevalue("tiny_model_dir")


def test_resume_continues_the_step_counter_and_loss_curve(request, store: RunStore, sentiment_csv: Path) -> None:
    model_dir = real_engine(request)
    from lab.training.engine import train

    def stop_after_step_5(config, output_dir, sink, should_stop=None, resume_from_checkpoint=None):
        def watching(event):
            sink(event)
            if isinstance(event, StepEvent) and event.step >= 5:
                should_stop.set()

        return train(
            config, output_dir, watching, should_stop=should_stop, resume_from_checkpoint=resume_from_checkpoint
        )

    first = JobRunner(store, train_fn=stop_after_step_5, gpu_ids=[], poll_seconds=0.05)
    run_id = first.submit(engine_config(model_dir, sentiment_csv, "resume", max_steps=8))
    assert first.wait(run_id, timeout=300) == "cancelled"
    first.shutdown()
    checkpoint = last_checkpoint(store.run_dir(run_id) / "checkpoints")
    assert checkpoint is not None, "the engine should checkpoint at each evaluation (eval_steps=2)"
    resumed_at = int(checkpoint.name.split("-")[1])
    seq = store.last_seq(run_id)

    second = JobRunner(store, gpu_ids=[], poll_seconds=0.05)
    second.resume(run_id)
    assert second.wait(run_id, timeout=300) == "completed"
    second.shutdown()
    resumed_steps = [e.step for _, e in store.events_since(run_id, seq) if isinstance(e, StepEvent)]
    assert resumed_steps[0] == resumed_at + 1 and resumed_steps[-1] == 8
    assert all(b > a for a, b in zip(resumed_steps, resumed_steps[1:]))


def test_a_thread_job_cancelled_while_it_tokenises_stops_before_training(
    request, store: RunStore, tmp_path: Path
) -> None:
    model_dir = real_engine(request)
    big_csv = tmp_path / "big.csv"
    rows = "".join(
        f"the film number {i} was {'good' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'}\n" for i in range(60_000)
    )
    big_csv.write_text("text,label\n" + rows)
    runner = JobRunner(store, gpu_ids=[], poll_seconds=0.05)
    try:
        run_id = runner.submit(engine_config(model_dir, big_csv, "tokenising", max_steps=2))
        wait_for(lambda: "tokenising" in [e.message for e in events_of(store, run_id, StatusEvent)], timeout=120)
        cancelled_at = time.monotonic()
        runner.cancel(run_id)
        assert runner.wait(run_id, timeout=60) == "cancelled"
        assert time.monotonic() - cancelled_at < 3  # one batch of rows, not the whole file
    finally:
        runner.shutdown(timeout=60)
    assert not events_of(store, run_id, StepEvent)


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not installed")
def test_torchrun_two_processes_make_one_run_with_events_once(request, store: RunStore, sentiment_csv: Path) -> None:
    model_dir = real_engine(request)
    runner = JobRunner(store, gpu_ids=[], poll_seconds=0.1)
    try:
        run_id = runner.submit(engine_config(model_dir, sentiment_csv, "ddp", max_steps=4, num_devices=2))
        status = runner.wait(run_id, timeout=400)
        log = (store.run_dir(run_id) / "worker.log").read_text(errors="replace")
        assert status == "completed", store.get_run(run_id).message + "\n" + log[-3000:]
    finally:
        runner.shutdown(timeout=60)
    assert len(store.list_runs()) == 1
    assert statuses(store, run_id).count("completed") == 1
    assert len(events_of(store, run_id, ResultEvent)) == 1
    steps = [e.step for e in events_of(store, run_id, StepEvent)]
    assert steps == sorted(set(steps)) and steps[-1] == 4  # rank 1 wrote nothing
    from transformers import AutoModelForSequenceClassification

    model_dir_out = Path(store.get_run(run_id).summary["output_dir"] or store.run_dir(run_id)) / "model"
    assert AutoModelForSequenceClassification.from_pretrained(model_dir_out) is not None
