"""What travels between the rooms travels typed: the device and precision as event fields, a stage or an
error as a code with params that a catalogue translates, one result type for the engine's return value
and its event, and a stored event read back field by field."""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path

import pytest

from lab.config import DataConfig, ModelConfig, PeftSettings, RunConfig, TrainConfig
from lab.errors import LabError, Message
from lab.events import (
    Event,
    LogEvent,
    ResultEvent,
    RunResult,
    RunStartedEvent,
    StatusEvent,
    StepEvent,
    event_from_dict,
)
from lab.runs.store import RunStore
from lab.views.run_view import run_view

REPO = Path(__file__).resolve().parents[1]
STAGES = {"stage_loading", "stage_tokenising", "stage_training", "stage_evaluating", "stage_testing", "stage_saving"}


def test_the_engine_says_device_precision_and_stages_as_fields_and_returns_what_it_reports(
    tiny_model_dir, sentiment_csv, tmp_path
):
    from lab.training.engine import train

    config = RunConfig(
        task="classification",
        data=DataConfig(dataset="", train_file=str(sentiment_csv)),
        model=ModelConfig(name_or_path=tiny_model_dir),
        peft=PeftSettings(method="lora", r=4, alpha=8),
        train=TrainConfig(max_steps=2, eval_steps=2, logging_steps=1, max_length=32, train_batch_size=8),
    )
    events: list[Event] = []
    result = train(config, tmp_path, sink=events.append)
    started = [event for event in events if isinstance(event, RunStartedEvent)]
    assert len(started) == 1
    assert (started[0].device, started[0].precision, started[0].max_steps) == ("cpu", "fp32", 2)
    assert 0 < started[0].trainable_params < started[0].total_params and started[0].max_length == 32
    stages = [event for event in events if isinstance(event, StatusEvent) and event.status == "running"]
    assert {event.code for event in stages} == STAGES
    assert next(e for e in stages if e.code == "stage_training").params == {"steps": "2"}
    reported = [event for event in events if isinstance(event, ResultEvent)]
    assert len(reported) == 1 and reported[0].result() == result and result.completed_steps == 2
    assert (result.trainable_params, result.total_params) == (started[0].trainable_params, started[0].total_params)
    assert run_view(events).device == "cpu (fp32)"


def test_the_engine_counts_the_words_max_length_cuts_as_fields(tiny_model_dir, ner_conll, tmp_path):
    from lab.training.engine import train

    config = RunConfig(
        task="ner",
        data=DataConfig(dataset="", train_file=str(ner_conll)),
        model=ModelConfig(name_or_path=tiny_model_dir),
        train=TrainConfig(max_steps=1, eval_steps=1, logging_steps=1, max_length=8, train_batch_size=8),
    )
    events: list[Event] = []
    train(config, tmp_path, sink=events.append)
    cut = run_view(events).truncated
    assert set(cut) == {"validation", "test"}
    assert all(0 < event.words_cut < event.words_total and event.max_length == 8 for event in cut.values())


def test_a_result_event_and_a_run_result_share_one_definition():
    result = RunResult("completed", "/runs/r1", {"accuracy": 0.9}, trainable_params=10, total_params=100)
    event = ResultEvent.of(result)
    assert isinstance(event, RunResult) and event.result() == result
    assert {f.name for f in dataclasses.fields(RunResult)} < {f.name for f in dataclasses.fields(ResultEvent)}


def test_events_are_frozen():
    event = StepEvent(step=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.step = 4  # type: ignore[misc]


def test_a_status_keeps_its_code_through_the_store(tmp_path):
    store = RunStore(tmp_path)
    run = store.create_run(RunConfig(name="coded"))
    store.mark_running(run.id)
    store.finish(
        run.id, "failed", LabError("Data file x.csv does not exist.", code="file_missing", path="x.csv").message
    )
    final = [event for _, event in store.events_since(run.id) if isinstance(event, StatusEvent)][-1]
    assert (final.status, final.message, final.code, final.params) == (
        "failed",
        "Data file x.csv does not exist.",
        "file_missing",
        {"path": "x.csv"},
    )
    assert store.get_run(run.id).message == "Data file x.csv does not exist."  # the CLI's English


def test_events_stored_before_the_typed_fields_still_read():
    """A store written before these fields: no RunStartedEvent, no codes, a result without completed_steps."""
    stored = [
        {"kind": "status", "time": 1.0, "status": "running", "message": "tokenising"},
        {"kind": "log", "time": 2.0, "message": "device cpu, precision fp32, learning rate 0.001", "level": "info"},
        {"kind": "result", "time": 3.0, "status": "completed", "metrics": {}, "per_label": [], "output_dir": "/o",
         "trainable_params": 1, "total_params": 2, "wall_seconds": 3.0, "peak_memory_mb": None},
    ]  # fmt: skip
    events = [event_from_dict(data) for data in stored]
    view = run_view(events)
    assert view.device == ""  # unknown, shown as "–"; the page never reads it out of the log line
    assert view.stage is not None and view.stage.said() == "tokenising" and view.stage.said().code == ""
    assert view.result is not None and view.result.completed_steps == 0 and view.result.output_dir == "/o"
    assert [event_from_dict(event.to_dict()) for event in events] == events  # and they round-trip


def test_a_misspelled_field_in_a_stored_event_is_reported_not_silently_dropped(caplog):
    with caplog.at_level(logging.WARNING, logger="lab.events"):
        event = event_from_dict({"kind": "step", "step": 5, "los": 0.25})
    assert isinstance(event, StepEvent) and event.step == 5
    assert "'los'" in caplog.text and "step event" in caplog.text
    with pytest.raises(ValueError, match="unknown event kind 'stepp'"):
        event_from_dict({"kind": "stepp", "step": 5})


def test_the_type_checker_refuses_a_wrong_event_field(tmp_path):
    api = pytest.importorskip("mypy.api")
    snippet = tmp_path / "wrong_field.py"
    snippet.write_text(
        "from lab.events import RunStartedEvent, StatusEvent\n"
        "StatusEvent(stauts='running')\n"
        "RunStartedEvent(device=0)\n"
        "StatusEvent().status = 'x'\n"
    )
    out, _, code = api.run(
        ["--config-file", str(REPO / "pyproject.toml"), "--cache-dir", str(tmp_path / ".mypy"), str(snippet)]
    )
    assert code == 1, out
    assert 'Unexpected keyword argument "stauts"' in out
    assert 'incompatible type "int"; expected "str"' in out
    assert "read-only" in out or "frozen" in out


# ---- the Live run page -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("typed-runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAB_RUNS_DIR", str(folder))
        yield RunStore(folder)


def live_page(run_id: str, **query):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.query_params.update({"run": run_id, **query})
    at.run()
    at.switch_page("pages/3_Live_run.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def device_shown(at) -> str:
    return next(metric.value for metric in at.metric if metric.label in ("Device", "设备"))


def test_a_library_error_on_the_chinese_live_page_is_chinese(store, tmp_path):
    from lab.data.splits import load_splits
    from lab.launch.execute import execute_run

    missing = tmp_path / "gone.csv"
    run = store.create_run(RunConfig(name="missing-file"))

    def fails_like_the_engine(config, output_dir, sink, should_stop=None, resume_from_checkpoint=None):
        load_splits(DataConfig(dataset="", train_file=str(missing)), "classification", 0, log=print)

    assert execute_run(store, run.id, fails_like_the_engine, threading.Event()) == "failed"
    assert store.get_run(run.id).message == f"Data file {missing} does not exist."  # the CLI's English
    assert live_page(run.id, lang="zh").error[0].value == f"数据文件 {missing} 不存在。"
    assert live_page(run.id).error[0].value == f"Data file {missing} does not exist."


def test_the_live_page_shows_the_device_and_stage_from_typed_fields(store):
    run = store.create_run(RunConfig(name="typed-device"))
    store.mark_running(run.id)
    store.append_event(run.id, RunStartedEvent(device="cuda", precision="bf16", max_steps=10))
    store.append_event(run.id, StepEvent(step=1, max_steps=10, loss=0.5, memory_mb=900.0))
    assert device_shown(live_page(run.id)) == "cuda (bf16)"
    # The log line of an older lab reads the same to a person, but a page no longer parses it.
    old = store.create_run(RunConfig(name="old-device"))
    store.mark_running(old.id)
    store.append_event(old.id, LogEvent(message="device cuda, precision bf16, learning rate 0.001"))
    store.append_event(old.id, StepEvent(step=1, max_steps=10, loss=0.5))
    assert device_shown(live_page(old.id)) == "–"

    staged = store.create_run(RunConfig(name="typed-stage"))
    store.mark_running(staged.id)
    store.append_event(staged.id, StatusEvent(status="running", message=Message("tokenising", "stage_tokenising")))
    at = live_page(staged.id, lang="zh")
    assert "正在分词…" in [bar.proto.text for bar in at.get("progress")]
