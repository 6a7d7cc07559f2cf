"""What a class sees on the pages: times for this machine, the pages in Chinese, tables that fit a screen.

The ETA follows the recent steps; a short run still has its loss point; durations read alike everywhere;
the Home cards, Compare methods and Sweeps say the pre-flight estimate before anything is queued; the
Chinese pages name headers, metrics and runs from the catalogue.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from lab.config import RunConfig
from lab.events import EstimateEvent, ProgressEvent, RunResult, StepEvent
from lab.runs.store import RunStore
from lab.training.callbacks import EventCallback
from lab.training.metrics import classification_report, report_to_records
from lab.training.pace import StepPace
from lab.views.estimates import EstimateCache, Planned, config_key, wall_seconds

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 120  # seconds per script run, on a busy machine


# ---- the ETA ---------------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now


def test_the_eta_follows_a_run_that_speeds_up(monkeypatch):
    """20 steps at 3 s (a busy machine), then 1 s a step: at step 50 of 100 the 50 steps left take about
    50 s. The run's average (1.8 s a step) would still say 90."""
    import lab.training.callbacks as callbacks

    clock = Clock()
    monkeypatch.setattr(callbacks, "time", clock)
    events: list = []
    callback = EventCallback(events.append, scorer=None, should_stop=threading.Event())
    state = SimpleNamespace(global_step=0, max_steps=100, epoch=0.0, num_input_tokens_seen=0)
    control = SimpleNamespace(should_evaluate=False, should_log=False, should_training_stop=False)
    args = SimpleNamespace(device="cpu")
    callback.on_train_begin(args, state, control)
    for step in range(1, 51):
        clock.now += 3.0 if step <= 20 else 1.0
        state.global_step = step
        callback.on_step_end(args, state, control)
    eta = [e for e in events if isinstance(e, ProgressEvent)][-1].eta_seconds
    assert eta == pytest.approx(50, rel=0.1), eta


def test_an_evaluation_is_spread_over_the_steps_not_taken_for_a_slow_step():
    pace = StepPace()
    pace.start(0, now=0.0)
    now = 0.0
    for step in range(1, 21):
        now += 1.0
        pace.step_done(step, now)
        if step % 10 == 0:  # a 5 s evaluation every 10 steps
            now += 5.0
            pace.pause_done(now)
    # 80 steps left at 1 s, plus 0.5 s a step for the evaluations to come.
    assert pace.eta(20, 100) == pytest.approx(80 * 1.5, rel=0.05)
    assert StepPace().eta(0, 100) is None  # nothing measured yet: no guess


# ---- numbers as shown ------------------------------------------------------------------------------
def test_per_label_numbers_are_stored_unrounded_so_a_table_and_a_metric_agree():
    """Rounded to 4 places when stored and to 3 when shown, a macro F1 of 0.30749 read 0.308 in the
    per-label table and 0.307 beside it."""
    records = report_to_records(classification_report(["a", "a", "a", "b"], ["a", "b", "b", "b"], ["a", "b"]))
    assert records[0]["recall"] == 1 / 3 and records[0]["f1"] == 0.5


def test_a_finished_run_says_its_time_like_every_other_duration(tmp_path):
    from lab.launch.execute import execute_run

    store = RunStore(tmp_path / "runs")
    run = store.create_run(RunConfig(task="classification", name="timed"))

    def train(config, output_dir, sink, **kwargs):
        return RunResult(status="completed", output_dir=str(output_dir), wall_seconds=2156.2)

    assert execute_run(store, run.id, train, threading.Event()) == "completed"
    assert store.get_run(run.id).message == "Finished in 35 min 56 s."


# ---- estimates before anything is queued -----------------------------------------------------------
def test_a_group_takes_its_runs_in_queue_order_over_the_slots():
    assert wall_seconds([60, 60, 60], 1) == 180
    assert wall_seconds([60, 60, 60], 2) == 120  # two at once, then the third
    assert wall_seconds([100, 10, 10, 10], 2) == 100  # the short ones run beside the long one


def test_estimates_come_from_the_background_and_never_make_a_page_wait():
    started = threading.Event()
    release = threading.Event()

    def slow(config):
        started.set()
        release.wait(10)
        return SimpleNamespace(total_seconds=90.0, device="cpu")

    cache = EstimateCache(estimator=slow)
    config = RunConfig(task="classification")
    begun = time.monotonic()
    assert cache.get(config) is None and cache.plan([config, config], 2).seconds is None
    assert time.monotonic() - begun < 1 and started.wait(5)
    release.set()
    deadline = time.monotonic() + 10
    while not cache.ready(config) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cache.get(config).total_seconds == 90.0
    assert cache.plan([config, config, config], 2).seconds == 180.0


def test_an_estimate_that_lands_while_a_group_is_planned_counts_as_in_not_as_failed():
    class LandsRightAfterEachLook(EstimateCache):
        def get(self, config):
            with self._lock:
                found = self._done.get(config_key(config))
                self._done[config_key(config)] = SimpleNamespace(total_seconds=60.0, device="cpu")
            return found

    config = RunConfig(task="classification")
    assert LandsRightAfterEachLook().plan([config, config], 2) == Planned(60.0, "cpu", runs=2, failed=0)


# ---- a short tiny run, trained through the store ---------------------------------------------------
@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("class-runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAB_RUNS_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def store(runs_dir) -> RunStore:
    return RunStore(runs_dir)


@pytest.fixture(scope="module")
def ner_run(store, ner_conll, tiny_model_dir) -> str:
    """Three steps, logged every five: shorter than one logging interval."""
    from lab.launch.execute import execute_run
    from lab.training.engine import train

    config = RunConfig(task="ner", name="tiny-ner")
    config.data.dataset, config.data.train_file = "", str(ner_conll)
    config.model.name_or_path = tiny_model_dir
    config.train.max_steps, config.train.logging_steps, config.train.eval_steps = 3, 5, 2
    config.train.max_length, config.train.train_batch_size, config.train.learning_rate = 32, 8, 3e-3
    run = store.create_run(config)
    assert execute_run(store, run.id, train, threading.Event()) == "completed", store.get_run(run.id).message
    return run.id


def test_a_run_shorter_than_a_logging_interval_still_draws_its_loss(store, ner_run):
    events = [event for _, event in store.events_since(ner_run)]
    steps = [event for event in events if isinstance(event, StepEvent)]
    assert steps and steps[-1].step == 3  # its last step, though 3 < logging_steps: the curve reaches the end
    # The estimate for this machine arrives before the first step.
    kinds = [type(event) for event in events]
    assert kinds.index(EstimateEvent) < kinds.index(ProgressEvent)
    estimate = next(event for event in events if isinstance(event, EstimateEvent))
    assert estimate.total_steps == 3 and estimate.total_seconds > 0 and estimate.device == "cpu"


def app(page: str = "", **query) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.query_params.update(query)
    if page:
        at.run()
        at.switch_page(page)
    return at.run()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_the_live_page_in_chinese_names_headers_metrics_and_time(ner_run):
    at = app("pages/3_Live_run.py", lang="zh", run=ner_run)
    no_exception(at)
    tables = [table.value for table in at.table][:2]  # validation and test per-label tables (the data map's follows)
    assert tables and all(frame.index.name == "标签" for frame in tables), [f.index.name for f in tables]
    assert all(list(frame.columns) == ["精确率", "召回率", "F1", "样本数"] for frame in tables), tables[0].columns
    assert "宏平均" in tables[0].index and "macro avg" not in tables[0].index  # the average rows too
    shown = "\n".join(m.value for m in at.markdown)
    for raw in ("macro_f1", "token_accuracy", "precision **"):
        assert raw not in shown, raw
    assert "宏平均 F1" in shown and "词元准确率" in shown
    finished = at.success[0].value
    assert finished.startswith("用时") and "秒" in finished and " s" not in finished, finished
    legend = [trace.get("name") for chart in at.get("plotly_chart") for trace in json.loads(chart.proto.spec)["data"]]
    assert "宏平均 F1" in legend and "macro_f1" not in legend, legend


def test_the_live_page_shows_the_estimate_before_the_first_step(store):
    run = store.create_run(RunConfig(task="classification", name="waiting"))
    store.mark_running(run.id)
    store.append_event(run.id, EstimateEvent(device="cpu", total_seconds=2923, seconds_per_step=3.1, total_steps=900))
    at = app("pages/3_Live_run.py", run=run.id)
    no_exception(at)
    assert any("48 min 43 s" in caption.value for caption in at.caption), [c.value for c in at.caption]
    store.finish(run.id, "cancelled", "test cleanup")


def test_the_playground_puts_what_the_model_got_wrong_first_with_chinese_headers(ner_run):
    at = app("pages/5_Playground.py", lang="zh", run=ner_run)
    no_exception(at)
    next(toggle for toggle in at.toggle if toggle.label == "显示").set_value(True).run()
    no_exception(at)
    assert list(at.dataframe[-1].value.columns) == ["真实实体", "预测实体", "句子"]


def test_the_runs_and_data_pages_in_chinese(ner_run):
    at = app("pages/4_Runs.py", lang="zh")
    no_exception(at)
    assert all(box.placeholder != "Choose options" for box in at.multiselect), [b.placeholder for b in at.multiselect]
    at = app("pages/1_Data.py", lang="zh")
    no_exception(at)
    assert any(box.label.startswith("最大长度") for box in at.number_input), [b.label for b in at.number_input]


def test_home_cards_say_this_machines_estimate_and_name_the_run_in_the_pages_language(
    store, tiny_model_dir, monkeypatch
):
    monkeypatch.setenv("LAB_ONE_CLICK_MODEL", tiny_model_dir)
    monkeypatch.setenv("LAB_ONE_CLICK_SET", "train.max_steps=2;data.train_subset=32;data.eval_subset=16")
    at = app(lang="zh")
    no_exception(at)
    deadline = time.monotonic() + 90
    while sum("在这台机器上：约" in c.value for c in at.caption) < 2 and time.monotonic() < deadline:
        time.sleep(1)
        at.run()  # what the card's timer does in a browser
    assert sum("在这台机器上：约" in c.value for c in at.caption) == 2, [c.value for c in at.caption]
    # The card's text promises no time of its own beside the estimate (it said 5 minutes; this machine took 49).
    cards = [m.value for m in at.markdown if "MiniLM" in m.value]
    assert len(cards) == 2 and not any("分钟" in card for card in cards), cards
    at.button[1].click().run()
    no_exception(at)
    newest = store.list_runs(limit=1)[0]
    assert newest.name == "WNUT-16 命名实体识别（一键）"
    store.finish(newest.id, "cancelled", "test cleanup")
