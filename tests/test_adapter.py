"""Bottleneck adapters (peft.method adapter): step 0 is the frozen model, only adapters, LayerNorms and
the head train, the saved folder holds only those, and it reloads, resumes and exports."""

from __future__ import annotations

import threading

import pytest
import torch

from lab.config import DataConfig, ModelConfig, PeftSettings, RunConfig, TrainConfig
from lab.errors import ModelError
from lab.events import StepEvent
from lab.model.adapting import apply_peft


def tiny_encoder(model_type: str, task: str = "classification", labels: int = 3):
    """A random 2-layer encoder of `model_type` built from a config (hidden 32, feed-forward 64)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification

    sizes = {
        "distilbert": dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64),
        "gpt2": dict(n_embd=32, n_layer=2, n_head=2, pad_token_id=0),
    }.get(model_type, dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64))
    config = AutoConfig.for_model(model_type, vocab_size=100, num_labels=labels, **sizes)
    torch.manual_seed(0)
    auto = AutoModelForTokenClassification if task == "ner" else AutoModelForSequenceClassification
    return auto.from_config(config).eval()


def inputs():
    torch.manual_seed(1)
    ids = torch.randint(5, 100, (2, 7))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def adapter_settings(layout="houlsby", bottleneck=8):
    return PeftSettings(method="adapter", adapter_layout=layout, bottleneck=bottleneck)


@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert"])
@pytest.mark.parametrize("task", ["classification", "ner"])
def test_at_step_0_the_adapted_model_computes_what_the_frozen_model_does(model_type, task):
    model = tiny_encoder(model_type, task)
    with torch.no_grad():
        before = model(**inputs()).logits
        adapted = apply_peft(model, adapter_settings(), task, total_steps=10).eval()
        after = adapted(**inputs()).logits
    assert torch.equal(before, after)


@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert"])
@pytest.mark.parametrize("layout, per_layer", [("houlsby", 2), ("pfeiffer", 1)])
def test_only_the_adapters_the_layer_norms_and_the_head_train(model_type, layout, per_layer):
    model = apply_peft(tiny_encoder(model_type), adapter_settings(layout, 8), "classification", total_steps=10)
    trained = {name for name, param in model.named_parameters() if param.requires_grad}
    adapters = [name for name in trained if ".adapter." in name]
    one_adapter = 2 * 32 * 8 + 8 + 32  # down and up projections with their biases
    assert sum(p.numel() for n, p in model.named_parameters() if n in adapters) == 2 * per_layer * one_adapter
    others = trained - set(adapters)
    assert all("norm" in name.lower() or "classifier" in name for name in others), others
    assert any("classifier" in name for name in others)
    assert not any(name.endswith("dense.weight") for name in others if "classifier" not in name)


def test_the_parameter_view_shows_the_adapters_in_every_layer():
    from lab.model.parameters import parameters_by_part

    model = apply_peft(tiny_encoder("bert"), adapter_settings(), "classification", total_steps=10)
    parts = {row["part"]: row for row in parameters_by_part(model)}
    assert parts["layer 0"]["trainable"] == parts["layer 1"]["trainable"] > 2 * (2 * 32 * 8 + 8 + 32)
    assert parts["head"]["trainable"] == parts["head"]["total"]


def test_an_encoder_without_layer_outputs_it_knows_is_refused_in_one_line_naming_its_type():
    with pytest.raises(ModelError) as refused:
        apply_peft(tiny_encoder("gpt2"), adapter_settings(), "classification", total_steps=10)
    assert "'gpt2'" in str(refused.value) and "\n" not in str(refused.value)


def tiny_run(task, model_dir, data_file, **train):
    settings = dict(
        learning_rate=1e-2,
        train_batch_size=8,
        max_steps=8,
        logging_steps=1,
        eval_steps=4,
        lr_scheduler="linear",
        warmup_ratio=0.25,
        max_length=48,
        seed=0,
    )
    settings.update(train)
    return RunConfig(
        task=task,
        data=DataConfig(dataset="", train_file=str(data_file)),
        model=ModelConfig(name_or_path=model_dir),
        peft=PeftSettings(method="adapter", bottleneck=8),
        train=TrainConfig(**settings),
    )


@pytest.mark.parametrize("task", ["classification", "ner"])
def test_it_saves_only_its_own_weights_and_reloads_for_prediction(
    task, tiny_model_dir, sentiment_csv, ner_conll, tmp_path
):
    from safetensors.torch import load_file

    from lab.inference.predict import Predictor
    from lab.methods.adapter import ADAPTER_WEIGHTS_FILE
    from lab.training.engine import train

    config = tiny_run(task, tiny_model_dir, ner_conll if task == "ner" else sentiment_csv, max_steps=12)
    assert train(config, tmp_path).status == "completed"
    saved = tmp_path / "model"
    assert not (saved / "model.safetensors").exists()
    weights = load_file(saved / ADAPTER_WEIGHTS_FILE)
    assert any(".adapter." in name for name in weights) and any("classifier" in name for name in weights)
    assert not any(name.endswith("attention.self.query.weight") for name in weights)
    predictor = Predictor(tmp_path)
    text = "Anna lives in Paris" if task == "ner" else "a wonderful film"
    reloaded = predictor.predict([text])[0]
    assert reloaded.tags if task == "ner" else reloaded.label
    if task == "classification":  # "Why this answer?" reads the reloaded adapters too
        from lab.inference.explain import explain

        explained = explain(predictor, text, steps=4)
        assert explained.target == reloaded.label and len(explained.attributions) == len(text.split())
    up = next(name for name in weights if name.endswith("adapter.up.weight"))
    assert torch.equal(predictor.model.get_parameter(up).detach(), weights[up])  # trained, not zero-initialised
    assert weights[up].abs().sum() > 0


def test_a_resumed_adapter_run_ends_with_the_weights_of_one_left_alone(tiny_model_dir, sentiment_csv, tmp_path):
    from safetensors.torch import load_file

    from lab.methods.adapter import ADAPTER_WEIGHTS_FILE
    from lab.training.engine import train

    train(tiny_run("classification", tiny_model_dir, sentiment_csv), tmp_path / "straight")
    stop = threading.Event()

    def cancel_after_step_4(event):
        if isinstance(event, StepEvent) and event.step == 4:
            stop.set()

    config = tiny_run("classification", tiny_model_dir, sentiment_csv)
    assert train(config, tmp_path / "resumed", sink=cancel_after_step_4, should_stop=stop).status == "cancelled"
    checkpoint = tmp_path / "resumed" / "checkpoints" / "checkpoint-4"
    assert not (checkpoint / "model.safetensors").exists() and (checkpoint / ADAPTER_WEIGHTS_FILE).is_file()
    assert train(config, tmp_path / "resumed", resume_from_checkpoint=str(checkpoint)).status == "completed"
    weights = [load_file(tmp_path / name / "model" / ADAPTER_WEIGHTS_FILE) for name in ("straight", "resumed")]
    assert weights[0].keys() == weights[1].keys()
    assert max((weights[0][k] - weights[1][k]).abs().max().item() for k in weights[0]) < 1e-5


def test_it_exports_to_onnx_without_merging(tiny_model_dir, sentiment_csv, tmp_path):
    pytest.importorskip("onnxruntime")
    from lab.publish.export import export_onnx
    from lab.training.engine import train

    train(tiny_run("classification", tiny_model_dir, sentiment_csv, max_steps=4), tmp_path)
    result = export_onnx(tmp_path, tmp_path / "onnx", ["a wonderful film", "a dull and boring story here"])
    assert result.path.is_file() and result.max_abs_difference < 1e-3


def test_the_new_run_page_shows_the_adapters_own_settings_and_puts_them_in_the_config(tmp_path, monkeypatch):
    pytest.importorskip("streamlit")
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/2_New_run.py").run()
    next(w for w in at.selectbox if w.label == "Method").set_value("adapter").run()
    labels = {w.label for w in [*at.number_input, *at.selectbox]}
    assert {"Bottleneck width", "Adapter layout", "Non-linearity"} <= labels and "Rank r" not in labels
    next(w for w in at.number_input if w.label == "Bottleneck width").set_value(16)
    next(w for w in at.selectbox if w.label == "Adapter layout").set_value("pfeiffer").run()
    assert not at.exception, [e.value for e in at.exception]
    shown = RunConfig.from_yaml(next(code.value for code in at.code if code.language == "yaml"))
    assert (shown.peft.method, shown.peft.bottleneck, shown.peft.adapter_layout) == ("adapter", 16, "pfeiffer")
    assert any("cannot be merged" in c.value or "no merged copy" in c.value for c in at.caption)
