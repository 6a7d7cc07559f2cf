"""ONNX export: adapters merged, dynamic axes, onnxruntime's logits within 1e-3 of torch's."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.config import RunConfig
from lab.launch.worker import run_in_foreground
from lab.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[1]


def finished_run(store, task, data_file, model, method):
    config = RunConfig(task=task, name=f"export-{method}")
    config.data.dataset, config.data.train_file = "", str(data_file)
    config.model.name_or_path, config.peft.method, config.peft.r = model, method, 4
    config.train.learning_rate, config.train.max_steps, config.train.max_length = 3e-3, 8, 32
    run_id, code = run_in_foreground(config, store=store)
    assert code == 0
    return run_id


@pytest.mark.parametrize("task, method", [("classification", "lora"), ("ner", "full"), ("ner", "ia3")])
def test_export_runs_in_onnxruntime_like_torch_for_any_batch_and_length(
    task, method, tiny_model_dir, sentiment_csv, ner_conll, tmp_path
):
    import onnxruntime

    from lab.inference.predict import Predictor

    store = RunStore(tmp_path / "runs")
    run_id = finished_run(store, task, sentiment_csv if task == "classification" else ner_conll, tiny_model_dir, method)
    out = tmp_path / "onnx"
    env = dict(os.environ, PYTHONPATH=str(ROOT), LAB_RUNS_DIR=str(tmp_path / "runs"))
    result = subprocess.run(
        [sys.executable, "-m", "lab", "export", run_id, "--onnx", str(out)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    difference = float(result.stdout.rsplit("max abs logit difference ", 1)[1])
    assert difference < 1e-3
    assert json.loads((out / "labels.json").read_text())["task"] == task
    # A batch size and lengths the export never saw, tokenised by the tokenizer saved beside it.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(out))
    texts = ["one", "two words", "a much longer text with many more words than any example had"]
    encoded = (
        tokenizer([t.split() for t in texts], is_split_into_words=True, padding=True, return_tensors="np")
        if task == "ner"
        else tokenizer(texts, padding=True, return_tensors="np")
    )
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]})[
        0
    ]
    assert logits.shape[0] == 3
    predictor = Predictor(store.output_dir(store.get_run(run_id)))
    if task == "classification":
        expected = [max(p.probabilities, key=p.probabilities.get) for p in predictor.predict(texts)]
        assert [predictor.label_names[i] for i in logits.argmax(-1)] == expected


def test_prompt_tuning_is_refused_with_one_line(tiny_model_dir, sentiment_csv, tmp_path):
    store = RunStore(tmp_path / "runs")
    run_id = finished_run(store, "classification", sentiment_csv, tiny_model_dir, "prompt")
    env = dict(os.environ, PYTHONPATH=str(ROOT), LAB_RUNS_DIR=str(tmp_path / "runs"))
    result = subprocess.run(
        [sys.executable, "-m", "lab", "export", run_id, "--onnx", str(tmp_path / "onnx")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "keeps its virtual tokens" in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1
