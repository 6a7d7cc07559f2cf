"""Every page of the Streamlit app, driven by streamlit.testing.v1.AppTest (no browser).

Finished runs come from the real engine on the tiny BERT (a few seconds), written through the run
store exactly as the app's job runner writes them. Each page is checked for what a user would
notice: the form builds the config it shows and launches, errors appear as messages (never a
traceback), the live page draws a finished run's curves and per-label tables.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from lab.config import RunConfig
from lab.events import StepEvent
from lab.runs.store import RunStore
from lab.views.estimates import EstimateCache, config_key

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 120  # seconds per script run: the first page that imports torch can be slow on a busy machine


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """A runs directory of its own for this module (the app keys its store and job runner by folder)."""
    folder = tmp_path_factory.mktemp("app-runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAB_RUNS_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def store(runs_dir) -> RunStore:
    return RunStore(runs_dir)


def tiny_config(name: str, task: str, train_file: Path, model: str) -> RunConfig:
    config = RunConfig(task=task, name=name)
    config.data.dataset, config.data.train_file = "", str(train_file)
    config.model.name_or_path = model
    config.train.epochs, config.train.eval_steps, config.train.logging_steps = 2.0, 4, 2
    config.train.max_length, config.train.train_batch_size = 32, 16
    config.peft.method = "full" if task == "ner" else "lora"
    config.train.learning_rate = 3e-3
    return config


def train_in_store(store: RunStore, config: RunConfig) -> str:
    """A finished run, trained synchronously the way the app's job runner trains one."""
    from lab.launch.execute import execute_run
    from lab.training.engine import train

    run = store.create_run(config)
    status = execute_run(store, run.id, train, threading.Event())
    assert status == "completed", store.get_run(run.id).message
    return run.id


@pytest.fixture(scope="module")
def classification_run(store, sentiment_csv, tiny_model_dir) -> str:
    return train_in_store(store, tiny_config("tiny-sentiment", "classification", sentiment_csv, tiny_model_dir))


@pytest.fixture(scope="module")
def ner_run(store, ner_conll) -> str:
    """The offline MiniLM, trained until it tags the fixture's people and places (entity F1 1.0 on its test split)."""
    config = tiny_config("minilm-ner", "ner", ner_conll, "minilm")
    config.train.learning_rate, config.train.max_steps, config.train.train_batch_size = None, 60, 8
    return train_in_store(store, config)


def app(page: str = "", **query) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.query_params.update(query)
    if page:
        at.run()
        at.switch_page(page)
    return at.run()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def plotly_specs(at: AppTest) -> dict[str, dict]:
    """Plotly figures on the page by title (Streamlit's theme may wrap titles in <b>)."""
    specs = [json.loads(element.proto.spec) for element in at.get("plotly_chart")]
    return {spec["layout"]["title"]["text"].replace("<b>", "").replace("</b>", ""): spec for spec in specs}


def wait_until_ended(store: RunStore, run_id: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while store.get_run(run_id).is_active and time.monotonic() < deadline:
        time.sleep(0.2)
    return store.get_run(run_id).status


def widget(widgets, label: str):
    return next(w for w in widgets if w.label == label)


def newest_run(store: RunStore):
    return store.list_runs(limit=1)[0]


# ---- Home ------------------------------------------------------------------------------------------
def test_home_shows_one_click_cards_offline_substitute_and_recent_runs(classification_run):
    at = app()
    no_exception(at)
    assert [b.label for b in at.button] == ["Start IMDB sentiment", "Start CoNLL-2003 NER"]
    # Tests run offline, so the CoNLL card says it trains WNUT-16 instead.
    assert any("WNUT-16" in caption.value for caption in at.caption)
    assert any(classification_run in caption.value for caption in at.caption)


def test_one_click_launches_a_small_frequently_evaluated_run(store, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("LAB_ONE_CLICK_MODEL", tiny_model_dir)
    monkeypatch.setenv("LAB_ONE_CLICK_SET", "train.max_steps=3;data.train_subset=48;data.eval_subset=16")
    at = app()
    widget(at.button, "Start CoNLL-2003 NER").click().run()
    no_exception(at)
    run = newest_run(store)
    config = store.load_config(run.id)
    assert (config.task, config.data.dataset, config.model.name_or_path) == ("ner", "wnut16", tiny_model_dir)
    assert config.train.eval_steps == 25 and config.train.logging_steps == 5
    assert at.query_params["run"] == run.id  # the app went to the run's live view
    assert wait_until_ended(store, run.id) == "completed", store.get_run(run.id).message


# ---- New run ---------------------------------------------------------------------------------------
def fill_form(at: AppTest, train_file: Path, model: str) -> AppTest:
    widget(at.text_input, "Run name").input("form-run")
    widget(at.radio, "Source").set_value("Your files").run()
    widget(at.text_input, "Train file").input(str(train_file))
    widget(at.selectbox, "Model").set_value("other").run()
    widget(at.text_input, "Hub id or local folder").input(model)
    widget(at.selectbox, "Method").set_value("lora").run()
    widget(at.number_input, "Rank r").set_value(4)
    widget(at.number_input, "Learning rate").set_value(0.002)
    widget(at.number_input, "Batch size").set_value(8)
    widget(at.number_input, "Epochs").set_value(1.0)
    widget(at.number_input, "Evaluate every N steps (0 = each epoch)").set_value(3)
    widget(at.number_input, "Seed").set_value(7)
    return at.run()


def expected_form_config(train_file: Path, model: str) -> RunConfig:
    config = RunConfig(task="classification", name="form-run")
    config.data.dataset, config.data.train_file = "", str(train_file)
    config.data.train_subset, config.data.eval_subset = 0, 0  # a user's file: all of it, not IMDB's sample sizes
    config.model.name_or_path = model
    config.peft.r = 4
    config.train.learning_rate, config.train.train_batch_size, config.train.epochs = 0.002, 8, 1.0
    config.train.eval_steps, config.train.seed = 3, 7
    return config


def test_new_run_form_builds_shows_and_launches_the_config(store, sentiment_csv, tiny_model_dir):
    at = fill_form(app("pages/2_New_run.py"), sentiment_csv, tiny_model_dir)
    no_exception(at)
    expected = expected_form_config(sentiment_csv, tiny_model_dir)
    shown_yaml = next(code.value for code in at.code if code.language == "yaml")
    assert RunConfig.from_yaml(shown_yaml) == expected
    command = next(code.value for code in at.code if code.language == "bash")
    assert "--train-file" in command and "--lr 0.002" in command and "--set train.eval_steps=3" in command
    # The parameter count is shown before launch, for the model and method chosen.
    count = widget(at.metric, "Trainable parameters")
    assert int(count.value.replace(",", "")) > 0 and "% of" in count.delta
    widget(at.button, "Launch").click().run()
    no_exception(at)
    run = newest_run(store)
    assert run.name == "form-run" and store.load_config(run.id) == expected
    assert wait_until_ended(store, run.id) == "completed", store.get_run(run.id).message


def test_new_run_maps_columns_with_the_data_pages_widgets(tmp_path):
    """A file with its own column names: New run offers them as choices, as the Data page does."""
    path = tmp_path / "reviews.csv"
    path.write_text(
        "review,stars\n" + "".join(f"film {i} was {'good' if i % 2 else 'bad'},{i % 2}\n" for i in range(40))
    )
    pages = {"pages/1_Data.py": None, "pages/2_New_run.py": None}
    at = app("pages/2_New_run.py")
    widget(at.radio, "Source").set_value("Your files").run()
    widget(at.text_input, "Train file").input(str(path)).run()
    pages["pages/2_New_run.py"] = widget(at.selectbox, "Text column").options
    widget(at.selectbox, "Text column").set_value("review").run()
    widget(at.selectbox, "Label column").set_value("stars").run()
    no_exception(at)
    shown = RunConfig.from_yaml(next(code.value for code in at.code if code.language == "yaml"))
    assert (shown.data.text_column, shown.data.label_column) == ("review", "stars")
    at = app("pages/1_Data.py")
    widget(at.radio, "Source").set_value("Upload a file").run()
    at.file_uploader[0].set_value(("reviews.csv", path.read_bytes(), "text/csv")).run()
    pages["pages/1_Data.py"] = widget(at.selectbox, "Text column").options
    assert pages["pages/1_Data.py"] == pages["pages/2_New_run.py"] == ["review", "stars"]


def test_new_run_shows_a_config_error_as_a_message(store, tiny_model_dir):
    at = app("pages/2_New_run.py")
    widget(at.radio, "Source").set_value("Your files").run()
    widget(at.text_input, "Train file").input("/no/such/train.csv").run()
    runs_before = len(store.list_runs())
    widget(at.button, "Launch").click().run()
    no_exception(at)
    assert any("train_file '/no/such/train.csv' does not exist" in error.value for error in at.error)
    assert len(store.list_runs()) == runs_before


def test_new_run_estimates_time_and_memory_before_launch(store):
    at = app("pages/2_New_run.py")  # the default: offline IMDB, 2,000 examples, LoRA on MiniLM
    widget(at.button, "Estimate").click().run()
    no_exception(at)
    shown = "\n".join(text.value for text in at.text)
    assert "Estimate on cpu" in shown and "125 steps per epoch" in shown
    assert "Memory: about" in shown


def test_new_run_offers_the_ray_cluster_once_one_is_named(monkeypatch):
    at = app("pages/2_New_run.py")
    assert not [radio for radio in at.radio if radio.label == "Where it trains"]  # no cluster, no choice
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
    at = app("pages/2_New_run.py")
    where = widget(at.radio, "Where it trains")
    assert where.options == ["This machine", "Ray cluster at http://127.0.0.1:8265"]
    where.set_value("ray").run()
    no_exception(at)
    shown = RunConfig.from_yaml(next(code.value for code in at.code if code.language == "yaml"))
    assert shown.train.executor == "ray"
    assert "--set train.executor=ray" in next(code.value for code in at.code if code.language == "bash")


def test_new_run_form_fills_from_an_uploaded_yaml(tiny_model_dir):
    config = RunConfig(task="ner", name="from-yaml")
    config.data.dataset = "wnut16"
    config.peft.method, config.peft.num_virtual_tokens = "prompt", 12
    config.train.learning_rate, config.train.warmup_ratio = 0.02, 0.2
    at = app("pages/2_New_run.py")
    at.file_uploader(key="yaml-upload").set_value(("run.yaml", config.to_yaml().encode(), "application/x-yaml"))
    at.run()
    no_exception(at)
    assert widget(at.text_input, "Run name").value == "from-yaml"
    assert widget(at.number_input, "Virtual tokens").value == 12  # the method's own parameters appear
    shown_yaml = next(code.value for code in at.code if code.language == "yaml")
    assert RunConfig.from_yaml(shown_yaml) == config


# ---- Live run --------------------------------------------------------------------------------------
def test_live_page_shows_a_finished_runs_curves_and_tables(store, classification_run):
    at = app("pages/3_Live_run.py", run=classification_run)
    no_exception(at)
    steps = [e for _, e in store.events_since(classification_run) if e.kind == "step"]
    figures = plotly_specs(at)
    loss = figures["Training loss"]["data"][0]
    assert loss["x"] == [e.step for e in steps] and loss["y"] == pytest.approx([e.loss for e in steps])
    assert "Validation metrics" in figures and "F1 per label across evaluations" in figures
    assert figures["Training loss"]["data"][-1]["name"] == "validation"  # validation loss on the same axes
    assert "Confusion matrix" in figures
    tables = [table.value for table in at.table]
    validation, test = tables[0], tables[1]
    assert {"neg", "pos", "macro avg"} <= set(validation.index)
    assert list(validation.columns) == ["precision", "recall", "f1", "support"]
    report = json.loads((store.run_dir(classification_run) / "report.json").read_text())
    assert test.loc["macro avg", "f1"] == pytest.approx(report["per_label"][-2]["f1"])
    assert any("Finished" in success.value for success in at.success)
    assert at.query_params["run"] == classification_run  # a reload finds the same run
    assert not any(b.label == "Cancel run" for b in at.button)  # nothing to cancel once it ended


def test_live_page_for_a_failed_run_shows_its_message_not_a_traceback(store):
    run = store.create_run(RunConfig(name="doomed"))
    store.mark_running(run.id)
    store.append_event(run.id, StepEvent(step=3, max_steps=10, loss=0.5))
    store.finish(
        run.id, "failed", "Out of memory. Lower train.train_batch_size.", "Traceback (most recent call last): ..."
    )
    at = app("pages/3_Live_run.py", run=run.id)
    no_exception(at)
    assert at.error[0].value == "Out of memory. Lower train.train_batch_size."
    assert widget(at.button, "Resume")  # it trained before it failed: resuming can help


def test_live_page_offers_no_resume_for_a_run_that_failed_before_its_first_step(store):
    run = store.create_run(RunConfig(name="never-started"))
    store.mark_running(run.id)
    store.finish(run.id, "failed", "Cannot load model 'x': the Hugging Face hub is unreachable (offline mode).")
    at = app("pages/3_Live_run.py", run=run.id)
    no_exception(at)
    assert "hub is unreachable" in at.error[0].value
    assert not any(b.label == "Resume" for b in at.button)


def test_live_page_names_an_unknown_run(classification_run):
    at = app("pages/3_Live_run.py", run="no-such-run")
    no_exception(at)
    assert "There is no run 'no-such-run'" in at.error[0].value


def test_live_page_opens_a_run_older_than_the_newest_200_from_its_url(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path / "many-runs"))
    many = RunStore(tmp_path / "many-runs")
    oldest = many.create_run(RunConfig(name="the oldest run")).id
    many.finish(oldest, "completed", "Finished long ago.")
    for index in range(201):
        many.finish(many.create_run(RunConfig(name=f"later run {index}")).id, "completed", "Finished.")
    at = app("pages/3_Live_run.py", run=oldest)
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert any("the oldest run" in m.value for m in at.markdown)
    assert at.query_params["run"] == oldest


def test_live_page_cancels_a_running_run(store, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("LAB_ONE_CLICK_MODEL", tiny_model_dir)
    monkeypatch.setenv("LAB_ONE_CLICK_SET", "train.max_steps=100000;data.train_subset=200;data.eval_subset=16")
    at = app()
    widget(at.button, "Start IMDB sentiment").click().run()
    run_id = at.query_params["run"]
    assert store.get_run(run_id).is_active
    # While it trains, the New run page says that another launch would wait in the queue.
    form = app("pages/2_New_run.py")
    assert any(run_id in info.value and "waits in the queue" in info.value for info in form.info)
    widget(at.button, "Cancel run").click().run()
    no_exception(at)
    assert wait_until_ended(store, run_id) == "cancelled"
    at.run()
    assert any(warning.value.startswith("Cancel") for warning in at.warning)


# ---- Data ------------------------------------------------------------------------------------------
def test_data_page_previews_an_uploaded_file(sentiment_csv, tiny_model_dir):
    at = app("pages/1_Data.py")
    widget(at.radio, "Source").set_value("Upload a file").run()
    at.file_uploader[0].set_value(("reviews.csv", sentiment_csv.read_bytes(), "text/csv")).run()
    widget(at.text_input, "Model (its tokenizer)").input(tiny_model_dir).run()
    no_exception(at)
    assert widget(at.selectbox, "Label column").value == "label"
    preview = at.dataframe[0].value
    assert list(preview.columns) == ["text", "label"] and set(preview["label"]) == {"neg", "pos"}
    figures = plotly_specs(at)
    assert "Examples per label" in figures
    histogram = next(spec for title, spec in figures.items() if title.startswith("Sub-word tokens per example"))
    assert len(histogram["data"][0]["x"]) > 0
    assert any("get truncated" in markdown.value for markdown in at.markdown)


def test_data_page_shows_the_line_of_a_broken_file(tmp_path):
    at = app("pages/1_Data.py")
    widget(at.radio, "Source").set_value("Upload a file").run()
    at.file_uploader[0].set_value(("bad.csv", b"text,label\ngood film,pos\nbad film,\n", "text/csv")).run()
    no_exception(at)
    assert "row 3" in at.error[0].value and "blank" in at.error[0].value


def test_data_page_shows_how_ner_tags_land_on_sub_words(ner_conll, tiny_model_dir):
    at = app("pages/1_Data.py")
    widget(at.radio, "Task").set_value("ner").run()
    widget(at.radio, "Source").set_value("Upload a file").run()
    at.file_uploader[0].set_value(("ner.conll", ner_conll.read_bytes(), "text/plain")).run()
    widget(at.text_input, "Model (its tokenizer)").input(tiny_model_dir).run()
    no_exception(at)
    alignment = at.dataframe[-1].value
    assert alignment["token"].iloc[0] == "[CLS]" and alignment["label"].iloc[0] == "-100"
    first_train_sentence = at.dataframe[0].value.iloc[0]
    # Every word's tag appears once, on its first piece, in order; everything else is -100.
    assert alignment.loc[alignment["label"] != "-100", "label"].tolist() == first_train_sentence["tags"].split()
    assert alignment.loc[alignment["label"] != "-100", "word"].tolist() == first_train_sentence["words"].split()


# ---- Runs ------------------------------------------------------------------------------------------
def test_runs_page_compares_runs_side_by_side(store, classification_run, ner_run):
    at = app("pages/4_Runs.py")
    no_exception(at)
    widget(at.multiselect, "Runs to compare").set_value([classification_run, ner_run]).run()
    no_exception(at)
    table = at.table[0].value
    assert "trainable parameters" in table.index and table.shape[1] == 2
    trainable = store.get_run(classification_run).summary["trainable_params"]
    assert f"{trainable:,}" in table.loc["trainable parameters"].tolist()
    figures = plotly_specs(at)
    assert len(figures["Training loss (smoothed)"]["data"]) == 2
    widget(at.multiselect, "Runs to compare").set_value([classification_run]).run()  # one run alone, too
    no_exception(at)
    assert at.table[0].value.loc["Status"].tolist() == ["completed"]
    widget(at.selectbox, "Run").set_value(classification_run).run()
    labels = [button.label for button in at.get("download_button")]
    assert {"config.yaml", "report.json", "adapter (.zip)"} <= set(labels)


def test_a_cli_run_with_its_own_output_folder_downloads_and_plays_in_the_app(
    store, sentiment_csv, tiny_model_dir, tmp_path
):
    """`python -m lab train ... --output DIR` keeps its model in DIR: the app finds it there."""
    from lab.launch.worker import run_in_foreground

    config = tiny_config("cli-output", "classification", sentiment_csv, tiny_model_dir)
    run_id, code = run_in_foreground(config, output_dir=tmp_path / "elsewhere", store=store)
    assert code == 0 and (tmp_path / "elsewhere" / "model").is_dir()
    assert not (store.run_dir(run_id) / "model").exists()
    at = app("pages/4_Runs.py")
    widget(at.selectbox, "Run").set_value(run_id).run()
    no_exception(at)
    assert {"report.json", "adapter (.zip)"} <= {button.label for button in at.get("download_button")}
    at = app("pages/5_Playground.py", run=run_id)
    no_exception(at)
    assert at.query_params["run"] == run_id
    assert widget(at.metric, "Prediction").value in ("neg", "pos")


def test_runs_page_exports_a_run_to_onnx_and_offers_it(store, classification_run):
    at = app("pages/4_Runs.py")
    widget(at.selectbox, "Run").set_value(classification_run).run()
    widget(at.button, "Export to ONNX").click().run()
    no_exception(at)
    message = next(s.value for s in at.success if "ONNX model in" in s.value)
    assert float(message.rsplit("max logit difference ", 1)[1].rstrip(".")) < 1e-3
    assert "ONNX (.zip)" in {button.label for button in at.get("download_button")}
    assert (store.output_dir(store.get_run(classification_run)) / "onnx" / "model.onnx").is_file()
    # Offline, a push says so on the page, in one message, and the page goes on.
    widget(at.text_input, "Repository (OWNER/NAME)").input("someone/tiny").run()
    at.button(key="push-confirm").click().run()
    no_exception(at)
    assert any("offline mode is on" in error.value for error in at.error)


def test_runs_page_refuses_to_delete_an_active_run(store):
    run = store.create_run(RunConfig(name="still-queued"))
    at = app("pages/4_Runs.py")
    widget(at.selectbox, "Run").set_value(run.id).run()
    at.button(key="delete-confirm").click().run()
    no_exception(at)
    assert any("cancel it first" in error.value for error in at.error)
    store.finish(run.id, "cancelled", "test cleanup")


# ---- Playground ------------------------------------------------------------------------------------
def test_playground_classifies_text_with_probabilities(classification_run):
    at = app("pages/5_Playground.py", run=classification_run)
    no_exception(at)
    prediction = widget(at.metric, "Prediction")
    assert prediction.value in ("neg", "pos")
    bars = plotly_specs(at)["Label probabilities"]["data"][0]
    assert sorted(bars["y"]) == ["neg", "pos"] and sum(bars["x"]) == pytest.approx(1.0)
    widget(at.toggle, "Why this answer?").set_value(True).run()
    no_exception(at)
    assert any('title="' in m.value for m in at.markdown) and any("Green words push" in c.value for c in at.caption)
    widget(at.toggle, "Show them").set_value(True).run()
    no_exception(at)
    assert list(at.dataframe[-1].value.columns) == ["true label", "predicted", "confidence", "text"]


def test_playground_highlights_entities_for_ner(ner_run):
    at = app("pages/5_Playground.py", run=ner_run)
    no_exception(at)
    text_box = next(t for t in at.text_area if t.label.startswith("Text"))
    text_box.input("Dr Kenji Okafor lives in Nairobi.").run()  # a sentence of the training data
    no_exception(at)
    rendered = [m.value for m in at.markdown if "line-height" in m.value][0]
    # The trained tagger finds the place: a highlighted span holding "Nairobi", labelled LOC.
    assert re.search(r'class="lab-entity"[^>]*>Nairobi <b[^>]*>LOC</b>', rendered), rendered
    tags = at.dataframe[0].value
    assert list(tags["word"]) == ["Dr", "Kenji", "Okafor", "lives", "in", "Nairobi", "."]  # punctuation apart
    # Why LOC? Explained for the word chosen, Nairobi itself carries the tag most.
    widget(at.toggle, "Why this answer?").set_value(True).run()
    widget(at.selectbox, "Explain the tag of").set_value(5).run()
    no_exception(at)
    shaded = [m.value for m in at.markdown if 'title="' in m.value][0]
    numbers = [(float(number), word) for number, word in re.findall(r'title="([-+\d.]+)"[^>]*>([^<]*)<', shaded)]
    assert len(numbers) == 7 and max(numbers)[1] == "Nairobi", numbers


# ---- Compare methods -------------------------------------------------------------------------------
def test_compare_page_queues_one_run_per_method_and_lines_them_up(store, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("LAB_ONE_CLICK_MODEL", tiny_model_dir)
    monkeypatch.setenv("LAB_ONE_CLICK_SET", "train.max_steps=4;data.train_subset=48;data.eval_subset=16")
    at = app("pages/6_Compare.py")
    no_exception(at)
    widget(at.radio, "Task").set_value("ner").run()
    widget(at.multiselect, "Methods").set_value(["full", "lora"]).run()
    widget(at.button, "Queue 2 runs").click().run()
    no_exception(at)
    group = at.query_params["group"]
    group = group[0] if isinstance(group, list) else group
    runs = store.list_runs(group=group)
    assert sorted(run.peft_method for run in runs) == ["full", "lora"]
    assert {store.load_config(run.id).data.dataset for run in runs} == {"wnut16"}
    # Each method at its own default rate: the comparison does not carry one method's rate to another.
    assert all(store.load_config(run.id).train.learning_rate is None for run in runs)
    assert [wait_until_ended(store, run.id) for run in runs] == ["completed", "completed"]

    at = app("pages/6_Compare.py", group=group)
    no_exception(at)
    rows = at.dataframe[0].value
    assert list(rows["method"]) == ["full fine-tuning", "LoRA"]
    assert rows["test"].notna().all() and rows["trainable share"].iloc[0] == "100%"
    assert float(rows["trainable share"].iloc[1].rstrip("%")) < 20
    figures = plotly_specs(at)
    assert [trace["name"] for trace in figures["Test entity F1 against the share trained"]["data"]] == [
        "full fine-tuning",
        "LoRA",
    ]
    assert len(figures["Test F1 per label, by method"]["data"]) == 2

    at = app("pages/4_Runs.py")  # the group is a filter there, and compares its runs by default
    widget(at.multiselect, "Group").set_value([group]).run()
    no_exception(at)
    assert at.table[0].value.shape[1] == 2


# ---- a click as an estimate lands -------------------------------------------------------------------
class HeldEstimates(EstimateCache):
    """An estimate cache whose estimates land only when the test says so, as if the background worker
    finished at that moment."""

    def __init__(self) -> None:
        super().__init__()
        self.landed = False

    def get(self, config: RunConfig):
        with self._lock:
            if self.landed:
                self._done.setdefault(config_key(config), SimpleNamespace(total_seconds=60.0, device="cpu"))
            return self._done.get(config_key(config))


def hold_estimates(monkeypatch) -> HeldEstimates:
    import ui.estimates

    held = HeldEstimates()
    monkeypatch.setattr(ui.estimates, "estimate_cache", lambda: held)
    return held


def land_as_the_line_draws(monkeypatch, line_name: str, held: HeldEstimates) -> None:
    """The estimates land after the page looked at them and before its estimate line draws: the moment
    a click on the button below that line used to be lost to the line's rerun."""
    import ui.estimates

    line = getattr(ui.estimates, line_name)

    def landing_line(*args):
        held.landed = True
        return line(*args)

    monkeypatch.setattr(ui.estimates, line_name, landing_line)


def test_a_click_on_start_as_the_sweeps_estimate_lands_starts_the_sweep(ner_conll, tiny_model_dir, monkeypatch):
    import lab.groups.sweep

    held = hold_estimates(monkeypatch)
    started = []
    monkeypatch.setattr(lab.groups.sweep, "start_in_background", lambda runner, store, setup: started.append(setup))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.session_state["form"] = tiny_config("sweep-base", "ner", ner_conll, tiny_model_dir).to_dict()
    at.run()
    at.switch_page("pages/7_Sweeps.py")
    at.run()
    assert any("Estimating the time of 8 run(s)" in caption.value for caption in at.caption)
    widget(at.text_input, "Sweep name").input("clicked as it landed").run()
    land_as_the_line_draws(monkeypatch, "_group_line", held)
    widget(at.button, "Start 8 trials").click().run()
    no_exception(at)
    assert [setup.name for setup in started] == ["clicked as it landed"]


def test_a_click_on_a_card_as_its_estimate_lands_starts_the_run(classification_run, monkeypatch):
    import ui.common

    held = hold_estimates(monkeypatch)
    launched = []
    monkeypatch.setattr(ui.common, "launch", lambda config: launched.append(config) or classification_run)
    at = app()
    assert sum("Estimating the time on this machine" in caption.value for caption in at.caption) == 2
    land_as_the_line_draws(monkeypatch, "_card_line", held)
    at.button[0].click().run()
    no_exception(at)
    assert [config.task for config in launched] == ["classification"]


# ---- Sweeps ----------------------------------------------------------------------------------------
def test_sweeps_page_starts_a_sweep_from_the_form_and_shows_its_trials(store, ner_conll, tiny_model_dir):
    from lab.groups.sweep import load_study

    config = tiny_config("sweep-base", "ner", ner_conll, tiny_model_dir)
    config.train.max_steps, config.train.eval_steps, config.train.train_batch_size = 24, 6, 8
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.session_state["form"] = config.to_dict()  # what the New run form holds
    at.run()
    at.switch_page("pages/7_Sweeps.py")
    at.run()
    no_exception(at)
    widget(at.text_input, "train.learning_rate").input("choice:0.005,0.000001")
    widget(at.number_input, "Trials").set_value(3)
    widget(at.text_input, "Sweep name").input("page sweep").run()
    widget(at.button, "Start 3 trials").click().run()
    no_exception(at)
    assert not at.error, [error.value for error in at.error]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        study, _ = load_study(store, "page sweep")
        if len([t for t in study.get_trials() if t.state.is_finished()]) >= 3:
            break
        time.sleep(0.5)
    assert sum(run.status in ("completed", "pruned") for run in store.list_runs(group="sweep page sweep")) == 3
    at = app("pages/7_Sweeps.py", sweep="page sweep")
    no_exception(at)
    trials = at.dataframe[0].value
    assert len(trials) == 3 and set(trials["state"]) <= {"complete", "pruned"}
    assert any("Best so far" in success.value for success in at.success)
    assert "Each trial's value, and the best so far" in plotly_specs(at)
    at = app("pages/7_Sweeps.py", sweep="page sweep", lang="zh")  # Optuna's figures and states, in Chinese
    no_exception(at)
    assert set(at.dataframe[0].value["state"]) <= {"完成", "已剪枝"}
    specs = plotly_specs(at)
    assert "每次试验的取值与目前最佳" in specs
    drawn = json.dumps(specs, ensure_ascii=False)
    assert not [words for words in ("Optimization History", "Objective Value", "Best Value", "Trial") if words in drawn]


# ---- 中文 (Chinese) ---------------------------------------------------------------------------------
def page_text(at: AppTest) -> str:
    """What a reader sees on the page in words: text elements, widget labels, metrics; not code blocks
    (YAML, logs and commands stay as the library writes them)."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error", "success"):
        parts += [str(element.value) for element in getattr(at, kind)]
    for kind in (
        "button",
        "selectbox",
        "multiselect",
        "text_input",
        "text_area",
        "number_input",
        "radio",
        "checkbox",
        "toggle",
        "slider",
        "metric",
        "expander",
        "tabs",
    ):
        parts += [str(getattr(element, "label", "")) for element in at.get(kind)]
    return "\n".join(parts)


def english_sentences() -> list[str]:
    """Every English catalogue phrase of three words or more that its Chinese twin does not repeat."""
    from ui.i18n import catalogue

    english, chinese = catalogue("en"), catalogue("zh")
    sentences = []
    for key, text in english.items():
        if key.startswith("messages.") or text == chinese[key]:
            continue
        for fragment in re.split(r"\{\w+\}", text):
            fragment = fragment.strip(" .:;,()·")
            if len(fragment.split()) >= 3 and fragment not in chinese[key]:
                sentences.append(fragment)
    return sentences


@pytest.mark.parametrize(
    "page",
    [
        "",
        "pages/1_Data.py",
        "pages/2_New_run.py",
        "pages/3_Live_run.py",
        "pages/4_Runs.py",
        "pages/5_Playground.py",
        "pages/6_Compare.py",
        "pages/7_Sweeps.py",
    ],
)
def test_every_page_in_chinese_shows_no_english_sentence(page, classification_run, ner_run):
    at = app(page, lang="zh", run=classification_run)
    no_exception(at)
    text = page_text(at)
    assert re.search(r"[\u4e00-\u9fff]", text)
    leftovers = [sentence for sentence in english_sentences() if sentence in text]
    assert not leftovers, leftovers
    assert at.query_params["lang"] == ["zh"] or at.query_params["lang"] == "zh"  # a shared link keeps it


def test_the_language_switch_changes_the_page_and_the_url():
    at = app()
    assert at.title[0].value == "Fine-Tuning Lab"
    at.get("button_group")[0].set_value("zh").run()
    no_exception(at)
    assert at.title[0].value == "微调实验室"
