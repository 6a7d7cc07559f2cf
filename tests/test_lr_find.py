"""`learning_rate: auto`: the learning-rate range test on the tiny BERT (a short test: the steps are a module
constant, lowered here), its curve stored with the run and drawn by the Live page, the number the run's config
records, the refusals, and a rate it finds that learns where a tiny one does not."""

from __future__ import annotations

import csv
import math
import random
import threading

import pytest

from lab.config import RunConfig, default_config
from lab.errors import ConfigError
from lab.events import LearningRateFoundEvent, ResultEvent, RunStartedEvent, StepEvent
from lab.runs.store import RunStore
from lab.training import lr_find

TEST_STEPS = 24  # the range test's steps here (80 in a real run): 1e-6 to 1 in 24 steps still spans every decade


@pytest.fixture(autouse=True)
def short_range_test(monkeypatch):
    monkeypatch.setattr(lr_find, "RANGE_TEST_STEPS", TEST_STEPS)


def tiny_auto_config(model_dir: str, train_file, task: str = "classification", method: str = "head") -> RunConfig:
    config = RunConfig(task=task, name="auto-rate")
    config.data.dataset, config.data.train_file = "", str(train_file)
    config.model.name_or_path = model_dir
    config.peft.method = method
    config.train.learning_rate = "auto"
    # 40 steps: the tiny tokenizer's vocabulary order changes from process to process (the WordPiece trainer
    # hashes), and on some draws the rate found needs more than 20 steps to separate the set.
    config.train.max_steps, config.train.eval_steps, config.train.logging_steps = 40, 40, 2
    config.train.lr_scheduler, config.train.warmup_ratio = "constant", 0.0
    config.train.max_length, config.train.train_batch_size, config.train.seed = 32, 8, 0
    return config


@pytest.fixture(scope="module")
def separable_csv(tmp_path_factory):
    """160 texts of four words, from a pool of happy words (pos) or one of sad words (neg): a head on the tiny random
    BERT learns it in 40 steps at a rate that suits it, and not at all at a tiny one."""
    rng = random.Random(0)
    pools = {"pos": ["good", "great", "fine", "nice", "happy"], "neg": ["bad", "awful", "poor", "sad", "angry"]}
    path = tmp_path_factory.mktemp("separable") / "separable.csv"
    with path.open("w", newline="") as handle:
        rows = [(" ".join(rng.choice(pools[label]) for _ in range(4)), label) for label in ["neg", "pos"] * 80]
        csv.writer(handle).writerows([("text", "label"), *rows])
    return path


@pytest.fixture(scope="module")
def auto_run(tmp_path_factory, tiny_model_dir, separable_csv):
    """A run with learning_rate auto, trained through the run store the way the app's job runner trains one."""
    from lab.launch.execute import execute_run
    from lab.training.engine import train

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lr_find, "RANGE_TEST_STEPS", TEST_STEPS)
        store = RunStore(tmp_path_factory.mktemp("auto-runs"))
        run = store.create_run(tiny_auto_config(tiny_model_dir, separable_csv))
        status = execute_run(store, run.id, train, threading.Event())
    assert status == "completed", store.get_run(run.id).message
    return store, run.id


def test_auto_picks_a_rate_inside_the_tested_range_and_the_run_trains_with_it(auto_run):
    store, run_id = auto_run
    events = [event for _, event in store.events_since(run_id)]
    found = [e for e in events if isinstance(e, LearningRateFoundEvent)]
    assert len(found) == 1, "one range test, before training"
    test = found[0]
    assert lr_find.START_RATE <= test.learning_rate <= test.rates[-1] <= lr_find.END_RATE
    assert test.rule in ("steepest", "minimum")
    started = next(e for e in events if isinstance(e, RunStartedEvent))
    assert started.learning_rate == test.learning_rate
    assert any(isinstance(e, StepEvent) for e in events)
    # Resume and the standalone script read the number, never the test again.
    recorded = store.load_config(run_id).train
    assert isinstance(recorded.learning_rate, float) and recorded.learning_rate == test.learning_rate
    # The head keeps the method's ratio to the rate found, in the test and in the run.
    assert recorded.head_learning_rate == test.head_learning_rate == started.head_learning_rate


def test_the_curve_is_stored_with_the_run_and_read_back(auto_run):
    store, run_id = auto_run
    test = next(e for _, e in store.events_since(run_id) if isinstance(e, LearningRateFoundEvent))
    assert 3 <= len(test.rates) <= TEST_STEPS and len(test.losses) == len(test.smoothed) == len(test.rates)
    assert test.rates == sorted(test.rates) and test.rates[0] == lr_find.START_RATE
    assert all(math.isfinite(loss) for loss in test.smoothed)
    assert test.seconds > 0


def test_the_live_page_draws_the_curve_in_both_languages(auto_run, monkeypatch):
    pytest.importorskip("streamlit")
    from test_app_pages import app, no_exception, plotly_specs

    store, run_id = auto_run
    monkeypatch.setenv("LAB_RUNS_DIR", str(store.runs_dir))
    test = next(e for _, e in store.events_since(run_id) if isinstance(e, LearningRateFoundEvent))
    for language, title in (("en", "Loss against learning rate"), ("zh", "损失与学习率")):
        at = app("pages/3_Live_run.py", run=run_id, lang=language)
        no_exception(at)
        spec = plotly_specs(at)[title]
        assert spec["layout"]["xaxis"]["type"] == "log"
        assert spec["data"][0]["x"] == pytest.approx(test.rates)
        assert spec["layout"]["shapes"][0]["x0"] == pytest.approx(test.learning_rate)  # the chosen rate, marked


def test_the_rate_found_learns_where_a_tiny_rate_does_not(auto_run, tiny_model_dir, separable_csv, tmp_path):
    from lab.training.engine import train

    store, run_id = auto_run
    found = [e for _, e in store.events_since(run_id) if isinstance(e, (StepEvent, ResultEvent))]
    losses, accuracy = [e.loss for e in found if isinstance(e, StepEvent)], found[-1].metrics["accuracy"]
    assert sum(losses[-3:]) < 0.6 * sum(losses[:3]) and accuracy >= 0.8, (losses, accuracy)

    tiny = tiny_auto_config(tiny_model_dir, separable_csv)
    tiny.train.learning_rate = 1e-7
    events: list = []
    result = train(tiny, tmp_path, events.append)
    losses = [e.loss for e in events if isinstance(e, StepEvent)]
    assert sum(losses[-3:]) > 0.9 * sum(losses[:3]) and result.metrics["accuracy"] <= 0.6, (losses, result.metrics)


def test_a_cancelled_range_test_stops_at_the_next_step(tiny_model_dir, separable_csv, tmp_path):
    """Cancel arrives while the test runs: it stops after the step in flight, and the run ends cancelled."""
    from lab.training.engine import train

    class StopAfter(threading.Event):
        def __init__(self, steps: int) -> None:
            super().__init__()
            self.asked, self.steps = 0, steps

        def is_set(self) -> bool:
            self.asked += 1
            return self.asked >= self.steps or super().is_set()

    events: list = []
    stop = StopAfter(3)
    result = train(tiny_auto_config(tiny_model_dir, separable_csv), tmp_path, events.append, should_stop=stop)
    assert result.status == "cancelled"
    assert not [e for e in events if isinstance(e, (LearningRateFoundEvent, RunStartedEvent, StepEvent))]
    assert stop.asked <= 4, "the test went on after the cancel"


def test_validation_refuses_a_learning_rate_that_is_neither_a_number_nor_auto():
    with pytest.raises(ConfigError) as refused:
        RunConfig.from_yaml("train:\n  learning_rate: banana\n")
    assert str(refused.value) == "train.learning_rate must be a number or auto, got 'banana' (str)."
    assert RunConfig.from_yaml("train:\n  learning_rate: auto\n").validate().train.learning_rate == "auto"
    assert default_config("ner").with_overrides(["train.learning_rate=auto"]).train.finds_learning_rate


def test_the_script_of_an_auto_config_is_refused_in_one_line_and_a_found_rate_is_written_out():
    from lab.publish.standalone import standalone_script

    config = default_config("ner").with_overrides(["train.learning_rate=auto"])
    with pytest.raises(ConfigError, match=r"learning_rate is auto: a range test finds the rate") as refused:
        standalone_script(config)
    assert refused.value.code == "learning_rate_auto_unresolved" and "\n" not in str(refused.value)
    found = config.with_overrides(["train.learning_rate=0.0032"])  # what a run's stored config holds
    assert "LEARNING_RATE = 0.0032" in standalone_script(found)


def test_the_rule_reads_the_steepest_descent_before_the_minimum():
    rates = [lr_find.rate_at(step, 40) for step in range(40)]
    # Flat, a descent centred on step 20, a minimum at step 30, then divergence.
    losses = [1.0 if s < 14 else 1.0 - 0.08 * (s - 14) if s < 26 else 0.04 + 0.01 * (s - 26) for s in range(30)]
    losses += [0.2 * 2 ** (s - 30) for s in range(30, 40)]
    rate, rule, smoothed = lr_find.choose_rate(rates, losses)
    assert rule == "steepest" and rates[14] <= rate <= rates[26]
    # A loss that only rises: a tenth of the minimum's rate, never below the tested range.
    rate, rule, _ = lr_find.choose_rate(rates[:10], [1.0 + s for s in range(10)])
    assert (rule, rate) == ("minimum", lr_find.START_RATE)


def test_the_new_run_form_offers_auto_and_finds_a_rate_now(tiny_model_dir, sentiment_csv):
    pytest.importorskip("streamlit")
    from test_app_pages import app, fill_form, no_exception, plotly_specs, widget

    at = fill_form(app("pages/2_New_run.py"), sentiment_csv, tiny_model_dir)
    widget(at.checkbox, "auto: find it with a range test").check().run()
    no_exception(at)
    assert "learning_rate: auto" in next(code.value for code in at.code if code.language == "yaml")
    assert "--lr auto" in next(code.value for code in at.code if code.language == "bash")
    assert any("learning_rate is auto" in caption.value for caption in at.caption)  # the script's refusal
    widget(at.button, "Find a rate now").click().run()
    no_exception(at)
    assert "Loss against learning rate" in plotly_specs(at)


def test_the_head_keeps_the_methods_ratio_beside_every_tested_rate_unless_the_user_set_its_rate():
    from lab.model.defaults import head_learning_rate_for, learning_rate_for

    lora = default_config("ner").with_overrides(["train.learning_rate=auto"])
    ratio = head_learning_rate_for(lora.with_overrides(["train.learning_rate="])) / learning_rate_for(
        lora.with_overrides(["train.learning_rate="])
    )
    assert ratio > 1 and lr_find.head_rate_beside(lora, 1e-5) == pytest.approx(1e-5 * ratio)
    own = lora.with_overrides(["train.head_learning_rate=0.02"])
    assert lr_find.head_rate_ratio(own) is None and lr_find.head_rate_beside(own, 1e-5) == 0.02
    head_only = lora.with_overrides(["peft.method=head"])
    assert lr_find.head_rate_beside(head_only, 1e-3) == 1e-3


def test_a_students_find_a_rate_now_on_another_students_upload_is_refused(
    tiny_model_dir, sentiment_csv, tmp_path, monkeypatch
):
    pytest.importorskip("streamlit")
    import shutil

    from streamlit.testing.v1 import AppTest
    from test_app_pages import REPO, TIMEOUT, fill_form, no_exception, plotly_specs, widget

    from lab.accounts.book import AccountBook
    from lab.accounts.uploads import OWNER_FILE, UPLOADS_FOLDER

    runs_dir = tmp_path / "class-runs"
    monkeypatch.setenv("LAB_RUNS_DIR", str(runs_dir))
    book = AccountBook(runs_dir)
    book.add("bob", "student", "bob-s3cret-pw")
    book.add("carol", "student", "carol-s3cret-pw")
    carols_folder = runs_dir / UPLOADS_FOLDER / "c4r0l"
    carols_folder.mkdir(parents=True)
    (carols_folder / OWNER_FILE).write_text("carol")
    carols_upload = carols_folder / "sentiment.csv"
    shutil.copy(sentiment_csv, carols_upload)

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.session_state["auth-token"] = book.log_in("bob", "bob-s3cret-pw")
    at.run()
    at.switch_page("pages/2_New_run.py")
    at = fill_form(at.run(), carols_upload, tiny_model_dir)
    widget(at.button, "Find a rate now").click().run()
    no_exception(at)
    assert any("is not yours to train on" in element.value for element in at.error)
    assert "Loss against learning rate" not in plotly_specs(at)
