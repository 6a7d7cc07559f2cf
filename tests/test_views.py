"""lab.views: what the app's pages compute, checked without Streamlit."""

from __future__ import annotations

import argparse
import json
import shlex

import pandas as pd
import pytest

from lab.cli.flags import cli_command
from lab.config import RunConfig, default_config
from lab.errors import DataError
from lab.events import EvalEvent, LogEvent, ResultEvent, RunStartedEvent, StatusEvent, StepEvent
from lab.groups.one_click import one_click_runs
from lab.views.data_view import save_upload, truncated_share
from lab.views.formatting import format_duration, format_share, smooth
from lab.views.playground import entities_html, entity_spans
from lab.views.run_view import run_view


def parse_cli(command: str) -> RunConfig:
    """What `python -m lab train ...` builds from the command (its own config_from_args)."""
    from lab.cli.flags import FLAG_TO_KEY, config_from_args

    tokens = shlex.split(command.replace("\\\n", " "))
    assert tokens[:4] == ["python", "-m", "lab", "train"]
    args = argparse.Namespace(config=None, set=[], **dict.fromkeys(FLAG_TO_KEY))
    for flag, value in zip(tokens[4::2], tokens[5::2]):
        name = flag.removeprefix("--").replace("-", "_")
        if name == "set":
            args.set.append(value)
        else:
            setattr(args, name, value)
    return config_from_args(args)


def custom_config(train_file: str) -> RunConfig:
    config = default_config("ner")
    config.name = "true"  # a name YAML would read as a boolean
    config.data.dataset, config.data.train_file = "", train_file
    config.peft.method, config.peft.target_modules = "loha", ["query", "value"]
    config.model.dropout, config.train.learning_rate, config.train.warmup_ratio = 0.2, 1e-5, 0.15
    return config


@pytest.mark.parametrize(
    "make",
    [
        lambda files: one_click_runs(offline=True)[0].config,
        lambda files: one_click_runs(offline=True)[1].config,
        lambda files: one_click_runs(offline=False)[1].config,
        lambda files: default_config("classification"),
        lambda files: custom_config(str(files / "ner.conll")),
    ],
)
def test_cli_command_rebuilds_the_same_config(make, fixtures_dir):
    config = make(fixtures_dir)
    assert parse_cli(cli_command(config)) == config


def test_one_click_runs_evaluate_early_and_go_offline(monkeypatch):
    monkeypatch.delenv("LAB_ONE_CLICK_MODEL", raising=False)
    monkeypatch.delenv("LAB_ONE_CLICK_SET", raising=False)
    imdb, ner = one_click_runs(offline=True)
    for card in (imdb, ner):
        card.config.validate()
        assert card.config.model.name_or_path == "minilm"
        assert card.config.train.eval_steps <= 30 and card.config.train.logging_steps <= 5
        assert 0 < card.config.data.eval_subset <= 200
    assert ner.config.data.dataset == "wnut16" and ner.offline_substitute and not imdb.offline_substitute
    assert one_click_runs(offline=False)[1].config.data.dataset == "conll2003"


def test_with_the_hub_and_a_gpu_the_one_click_cards_train_the_published_recipes(monkeypatch, tiny_model_dir, tmp_path):
    """The hub path, with the hub replaced at its boundary: `load_dataset` returns a CoNLL-2003-shaped
    dataset, and a hub id resolves to the tiny model's folder (what a download would have made)."""
    import datasets
    from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

    from lab.training.engine import train

    monkeypatch.delenv("LAB_ONE_CLICK_MODEL", raising=False)
    monkeypatch.delenv("LAB_ONE_CLICK_SET", raising=False)
    imdb, ner = one_click_runs(offline=False, gpu=True)
    assert (imdb.config.model.name_or_path, ner.config.model.name_or_path) == (
        "distilbert-base-uncased",
        "bert-base-cased",
    )
    recipe = (ner.config.data.dataset, ner.config.data.train_subset, ner.config.train.learning_rate)
    assert recipe == ("conll2003", 0, 5e-5)
    assert all(card.config.model.name_or_path == "minilm" for card in one_click_runs(offline=False, gpu=False))
    assert all(card.config.model.name_or_path == "minilm" for card in one_click_runs(offline=True, gpu=True))

    names = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    features = Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=names))})
    split = Dataset.from_dict(
        {
            "tokens": [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]] * 8,
            "ner_tags": [[3, 0, 7, 0], [1, 2]] * 8,
        },
        features=features,
    )
    asked = []
    monkeypatch.setattr(
        datasets,
        "load_dataset",
        lambda repo, revision=None: asked.append(repo) or DatasetDict(train=split, validation=split, test=split),
    )
    monkeypatch.setattr("lab.data.builtin.is_offline", lambda: False)
    monkeypatch.setattr("lab.model.loading.resolve_model_path", lambda name: asked.append(name) or tiny_model_dir)
    config = ner.config.with_overrides(["train.max_steps=2", "train.eval_steps=0", "train.device=cpu"])
    result = train(config, tmp_path / "ner")
    assert result.status == "completed"
    assert {"bert-base-cased", "eriktks/conll2003"} <= set(asked)
    report = json.loads((tmp_path / "ner" / "report.json").read_text())
    assert report["data_source"] == "Hugging Face hub: eriktks/conll2003 (refs/convert/parquet)"
    assert report["run"]["model"]["name_or_path"] == "bert-base-cased"


def test_one_click_environment_overrides_apply_per_card(monkeypatch):
    monkeypatch.setenv("LAB_ONE_CLICK_MODEL", "/models/tiny")
    monkeypatch.setenv("LAB_ONE_CLICK_SET", "train.max_steps=7; conll:train.max_steps=9 ;data.eval_subset=8")
    imdb, ner = one_click_runs(offline=True)
    assert imdb.config.model.name_or_path == ner.config.model.name_or_path == "/models/tiny"
    assert (imdb.config.train.max_steps, ner.config.train.max_steps) == (7, 9)
    assert imdb.config.data.eval_subset == ner.config.data.eval_subset == 8


def test_run_view_folds_events_into_tables():
    per_label = [
        {"label": "neg", "precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2},
        {"label": "pos", "precision": 0.5, "recall": 1.0, "f1": 0.6667, "support": 1},
        {"label": "macro avg", "precision": 0.75, "recall": 0.75, "f1": 0.6667, "support": 3},
    ]
    events = [
        StatusEvent(status="running"),
        RunStartedEvent(device="cpu", precision="fp32", learning_rate=0.001, max_steps=4),
        LogEvent(message="lora: 10 of 100 parameters trainable"),
        StepEvent(step=1, max_steps=4, loss=0.9),
        StepEvent(step=2, max_steps=4, loss=0.7),
        EvalEvent(step=2, loss=0.8, metrics={"accuracy": 0.5}, per_label=per_label),
        StepEvent(step=4, max_steps=4, loss=0.5),
        EvalEvent(step=4, loss=0.6, metrics={"accuracy": 0.75}, per_label=per_label),
        EvalEvent(split="test", step=4, metrics={"accuracy": 0.7}, per_label=per_label),
        ResultEvent(metrics={"accuracy": 0.7}, trainable_params=10, total_params=100),
    ]
    view = run_view(events)
    assert view.steps["loss"].tolist() == [0.9, 0.7, 0.5] and view.last_step.step == 4
    assert view.evaluations[["step", "loss", "accuracy"]].values.tolist() == [[2, 0.8, 0.5], [4, 0.6, 0.75]]
    assert view.metric_names == ["accuracy"]
    # Averages stay out of the per-label history; each evaluation adds one row per label.
    assert view.per_label_history[["step", "label"]].values.tolist() == [[2, "neg"], [2, "pos"], [4, "neg"], [4, "pos"]]
    assert view.latest_eval.step == 4 and view.test_eval.metrics == {"accuracy": 0.7}
    assert view.result.trainable_params == 10 and view.device == "cpu (fp32)"
    assert len(view.log) == 1 and view.log[0].endswith("lora: 10 of 100 parameters trainable")


def test_smooth_is_a_debiased_moving_average():
    assert smooth([1.0, 2.0, 3.0], 0.0) == [1.0, 2.0, 3.0]
    smoothed = smooth([2.0, 2.0, 2.0], 0.9)
    assert smoothed == pytest.approx([2.0, 2.0, 2.0])  # no pull towards 0 at the start
    assert smooth([0.0, 10.0], 0.5)[1] == pytest.approx((0.5 * 0.5 * 0 + 0.5 * 10) / (1 - 0.25))


def test_save_upload_keeps_a_safe_name_inside_the_runs_dir(tmp_path):
    path = save_upload("../../etc/evil name.CSV", b"text,label\nok,pos\n", tmp_path)
    assert path.parent.parent == tmp_path / "uploads" and path.suffix == ".csv" and ".." not in path.name
    assert path.read_bytes() == b"text,label\nok,pos\n"
    assert save_upload("../../etc/evil name.CSV", b"text,label\nok,pos\n", tmp_path) == path  # stored once
    with pytest.raises(DataError, match="unsupported file type .exe"):
        save_upload("model.exe", b"MZ", tmp_path)
    with pytest.raises(DataError, match="empty"):
        save_upload("empty.csv", b"", tmp_path)


def test_entity_spans_group_words_by_entity():
    words = ["Ada", "Lovelace", "met", "Charles", "Babbage", "in", "London"]
    tags = ["B-PER", "I-PER", "O", "B-PER", "I-PER", "O", "B-LOC"]
    assert entity_spans(words, tags) == [
        ("Ada Lovelace", "PER"),
        ("met", None),
        ("Charles Babbage", "PER"),
        ("in", None),
        ("London", "LOC"),
    ]


def test_small_formatters():
    assert format_duration(59.6) == "1 min 00 s" and format_duration(3725) == "1 h 02 min"
    assert format_duration(None) == "–"
    assert format_duration(143, ("小时", "分", "秒")) == "2 分 23 秒"  # the app passes its language's units
    assert truncated_share([10, 129, 200, 128], 128) == 0.5 and truncated_share([], 128) == 0.0
    # Head-only trains 770 of MiniLM's 22.7 M parameters: a share that must not read as 0%.
    assert [format_share(770, 22_713_986), format_share(74_498, 22_713_986), format_share(1.0)] == [
        "0.00339%",
        "0.328%",
        "100%",
    ]
    assert format_share(None, 10) == format_share(float("nan")) == "–"


def test_plain_text_shows_a_name_as_typed_where_markdown_renders():
    from lab.views.formatting import plain_text

    name = "![x](http://e.com/a.png) **b** :red[c] $x$ a\nb"
    shown = plain_text(name)
    assert "![" not in shown and "**" not in shown and ":red[" not in shown and "\n" not in shown
    assert shown.replace("\\", "") == name.replace("\n", " ")  # Markdown drops the escapes: the text as typed


def test_entities_html_highlights_by_type_and_escapes_text():
    rendered = entities_html(["<b>Ada</b>", "met", "Paris"], ["B-PER", "O", "B-LOC"])
    assert rendered.count('class="lab-entity"') == 2
    assert "&lt;b&gt;Ada&lt;/b&gt;" in rendered and "<b>Ada</b>" not in rendered
    assert ">PER</b>" in rendered and ">LOC</b>" in rendered


def test_a_folder_fed_in_pieces_builds_the_same_view_as_the_whole_log():
    """The Live page's per-session cursor: events arrive a few at a time, the tables are the same."""
    from lab.events import EvalEvent, StepEvent
    from lab.views.run_view import RunViewFolder, run_view

    events: list = [RunStartedEvent(device="cpu", precision="fp32", learning_rate=0.001, max_steps=3000)]
    for step in range(1, 3001):
        events.append(StepEvent(step=step, max_steps=3000, loss=1 / step, grad_norm=None if step % 7 else 0.5))
        if step % 500 == 0:
            events.append(
                EvalEvent(
                    split="validation",
                    step=step,
                    metrics={"f1": step / 3000},
                    per_label=[{"label": "PER", "precision": 1, "recall": 1, "f1": 1, "support": 2}],
                )
            )
    whole = run_view(events)
    folder = RunViewFolder()
    numbered = list(enumerate(events, start=1))
    for start in range(0, len(numbered), 37):
        folder.add(numbered[start : start + 37]).view()
    pieces = folder.view()
    assert folder.seq == len(events)
    pd.testing.assert_frame_equal(pieces.steps, whole.steps)
    pd.testing.assert_frame_equal(pieces.evaluations, whole.evaluations)
    assert pieces.device == whole.device == "cpu (fp32)" and pieces.last_step.step == 3000
    assert len(pieces.steps) == 3000 and pieces.steps["grad_norm"].isna().sum() == 3000 - 3000 // 7


def test_a_long_curve_is_drawn_with_at_most_two_thousand_points_ending_at_the_last():
    from lab.views.formatting import thinned

    values = list(range(100_001))
    drawn = thinned(values)
    assert len(drawn) <= 2001 and drawn[0] == 0 and drawn[-1] == 100_000
    assert thinned(values[:50]) == values[:50]


def test_the_parameter_chart_shows_where_each_method_trains(tiny_model_dir):
    """LoRA and IA3 add trainable parameters in every encoder layer (IA3 far fewer), none in the
    embeddings; prompt tuning trains only its virtual tokens and the head; full trains everything."""
    from lab.views.data_view import parameter_count

    def parts(method):
        config = default_config("classification").with_overrides(
            [f"model.name_or_path={tiny_model_dir}", f"peft.method={method}"]
        )
        trainable, total, rows = parameter_count(config, 2)
        assert sum(row["trainable"] for row in rows) == trainable and sum(row["total"] for row in rows) == total
        return {row["part"]: row["trainable"] for row in rows}

    lora, ia3, prompt, full = parts("lora"), parts("ia3"), parts("prompt"), parts("full")
    layers = ["layer 0", "layer 1"]  # the tiny BERT has two
    assert all(lora[layer] > ia3[layer] > 0 for layer in layers)
    assert lora["embeddings"] == ia3["embeddings"] == prompt["embeddings"] == 0 < full["embeddings"]
    assert prompt["virtual tokens"] > 0 and all(prompt[layer] == 0 for layer in layers)
    assert all(counts["head"] > 0 for counts in (lora, ia3, prompt, full))


def _luminance(colour: str, background: str = "#ffffff") -> float:
    """WCAG relative luminance of a CSS colour (#rrggbb, rgb(), rgba() blended over `background`)."""
    import re

    def channels(text: str) -> tuple[list[float], float]:
        if text.startswith("#"):
            return [int(text[i : i + 2], 16) for i in (1, 3, 5)], 1.0
        numbers = [float(n) for n in re.findall(r"[\d.]+", text)]
        return numbers[:3], numbers[3] if len(numbers) > 3 else 1.0

    rgb, alpha = channels(colour)
    under, _ = channels(background)
    mixed = [alpha * c + (1 - alpha) * u for c, u in zip(rgb, under)]
    linear = [(c / 255 / 12.92) if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in mixed]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(first: float, second: float) -> float:
    return (max(first, second) + 0.05) / (min(first, second) + 0.05)


@pytest.mark.parametrize("theme, text", [("light", "#31333f"), ("dark", "#fafafa")])
def test_chart_colours_read_on_their_theme(theme, text):
    """Training loss (raw and smoothed), validation loss and bars keep 3:1 contrast with the page, and the
    F1 bars behind the per-label table's numbers keep 4.5:1 with the text (WCAG's figures)."""
    from ui.charts import PALETTES

    colours = PALETTES[theme]
    page = _luminance(colours["background"])
    for name in ("raw", "line", "validation", "bar"):
        assert _contrast(_luminance(colours[name], colours["background"]), page) >= 3, name
    assert _contrast(_luminance(colours["table_bar"]), _luminance(text)) >= 4.5


def test_a_method_keeps_its_colour_on_every_chart_of_a_comparison():
    """The Compare page's trade-off points, per-label bars and curves: one colour per method, a legend
    entry each (the names no longer crowd beside the points), and a method without a test result drawn
    nowhere on the trade-off chart but in its own colour on the curves."""
    from ui.charts import compare_curves, method_tradeoff, per_label_by_method, series_colours

    colours = series_colours(["full", "lora", "ia3"])
    assert len(set(colours.values())) == 3
    rows = pd.DataFrame(
        {"method": ["full", "lora", "ia3"], "test": [0.83, 0.85, None], "trainable share": [1.0, 0.0033, 0.0007]}
    )
    tradeoff = method_tradeoff(rows, "accuracy", colours)
    assert [(trace.name, trace.marker.color, trace.x[0], trace.y[0]) for trace in tradeoff.data] == [
        ("full", colours["full"], 100.0, 0.83),
        ("lora", colours["lora"], pytest.approx(0.33), 0.85),
    ]
    bars = per_label_by_method(pd.DataFrame({"lora": [0.8, 0.9], "ia3": [0.7, 0.6]}, index=["neg", "pos"]), colours)
    assert [(trace.name, trace.marker.color) for trace in bars.data] == [
        ("lora", colours["lora"]),
        ("ia3", colours["ia3"]),
    ]
    views = {
        name: run_view([StepEvent(step=1, loss=0.7), EvalEvent(step=1, metrics={"accuracy": 0.5})])
        for name in ("ia3", "full")
    }
    loss, scores = compare_curves(views, 0.0, "accuracy", colours)
    assert [(trace.name, trace.line.color) for trace in loss.data + scores.data] == [
        ("ia3", colours["ia3"]),
        ("full", colours["full"]),
    ] * 2
