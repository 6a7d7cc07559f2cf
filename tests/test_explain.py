"""Why this label: integrated gradients per word, on a model trained to key on one word."""

import json

import pytest
from conftest import KEYWORD, write_keyword_csv

from lab.config import DataConfig, ModelConfig, PeftSettings, RunConfig, TrainConfig
from lab.inference.explain import explain
from lab.inference.predict import Predictor
from lab.training.engine import train


@pytest.fixture(scope="module")
def keyword_model(tmp_path_factory) -> str:
    """MiniLM with LoRA, trained on texts that are positive exactly when they hold KEYWORD."""
    folder = tmp_path_factory.mktemp("keyword")
    path = folder / "keyword.csv"
    write_keyword_csv(path, seed=0)
    config = RunConfig(
        task="classification",
        data=DataConfig(dataset="", train_file=str(path)),
        model=ModelConfig(name_or_path="minilm"),
        peft=PeftSettings(method="lora"),
        train=TrainConfig(max_steps=30, train_batch_size=8, max_length=32, eval_steps=30),
    )
    result = train(config, output_dir=folder / "out")
    assert result.metrics["accuracy"] >= 0.95  # it did learn the rule
    return str(folder / "out")


def test_the_word_the_model_keys_on_gets_the_largest_attribution(keyword_model):
    predictor = Predictor(keyword_model)
    for text in ("the music was wonderful in the city at night", "wonderful story about people"):
        found = explain(predictor, text)
        assert found.target == "pos" and len(found.attributions) == len(text.split())
        strongest = max(range(len(found.words)), key=lambda i: found.attributions[i])
        assert found.words[strongest] == KEYWORD, list(zip(found.words, found.attributions))
        # Completeness: the words together account for the probability gained over the all-pad baseline.
        assert abs(found.delta) < 0.05


def test_predict_explain_prints_and_returns_one_number_per_word(keyword_model):
    from test_cli import lab

    text = "long scenes and a wonderful city"
    result = lab("predict", keyword_model, "--text", text, "--explain", "--json")
    assert result.returncode == 0, result.stderr
    (item,) = json.loads(result.stdout)
    assert len(item["attributions"]) == len(text.split()) and item["explained"]["target"] == item["label"]
    assert max(zip(item["attributions"], text.split()))[1] == KEYWORD
    printed = lab("predict", keyword_model, "--text", text, "--explain")
    assert "why the label pos" in printed.stdout and f"{KEYWORD} +" in printed.stdout
