"""Every saved model folder has a Hugging Face model card, as huggingface_hub itself reads it."""

import json
from pathlib import Path

import pytest

from lab.config import DataConfig, ModelConfig, PeftSettings, RunConfig, TrainConfig
from lab.model.parameters import format_share
from lab.training.engine import train


@pytest.mark.parametrize("method, library", [("lora", "peft"), ("full", "transformers")])
def test_the_model_card_carries_metadata_results_and_the_config(method, library, tiny_model_dir, ner_conll, tmp_path):
    from huggingface_hub import ModelCard

    config = RunConfig(
        task="ner",
        name="card test",
        data=DataConfig(dataset="", train_file=str(ner_conll)),
        model=ModelConfig(name_or_path=tiny_model_dir),
        peft=PeftSettings(method=method, r=4),
        train=TrainConfig(learning_rate=3e-3, max_steps=8, train_batch_size=8, max_length=32),
    )
    train(config, tmp_path)
    card = ModelCard.load(tmp_path / "model" / "README.md")
    data = card.data.to_dict()
    # The card is published: it names the local base model and the data file by their base names.
    assert data["base_model"] == Path(tiny_model_dir).name and data["library_name"] == library
    assert data["pipeline_tag"] == "token-classification" and method in data["tags"]
    report = json.loads((tmp_path / "report.json").read_text())
    (result,) = card.data.eval_results and [r for r in card.data.eval_results if r.metric_type == "f1"]
    assert result.metric_value == pytest.approx(report["test_metrics"]["f1"], abs=1e-4)
    text = card.text
    assert "| label | precision | recall | f1 | support |" in text
    assert all(f"| {row['label']} |" in text for row in report["per_label"])
    share = format_share(report["trainable_params"], report["total_params"])
    assert f"{report['trainable_params']:,} of {report['total_params']:,} ({share})" in text
    assert not [place for place in (tiny_model_dir, ner_conll, tmp_path) if str(place) in card.content]
    assert f"train_file: {Path(ner_conll).name}" in text
    assert "Hardware: cpu" in text and "```yaml" in text and f"method: {method}" in text
