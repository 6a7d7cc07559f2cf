"""The code behind a run: the generated standalone script runs without the lab and reaches the lab's metric."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lab.config import RunConfig
from lab.publish.standalone import standalone_script
from lab.training.engine import train


def config_for(task, data_file, model_dir, method):
    return RunConfig.from_dict(
        {
            "task": task,
            "name": f"standalone {task}",
            "data": {"dataset": "", "train_file": str(data_file)},
            "model": {"name_or_path": model_dir},
            "peft": {"method": method},
            "train": {"max_steps": 30, "eval_steps": 0, "max_length": 48, "learning_rate": 3e-3, "device": "cpu"},
        }
    )


@pytest.mark.parametrize("task, method, metric", [("classification", "lora", "accuracy"), ("ner", "full", "f1")])
def test_the_generated_script_runs_without_the_lab_and_matches_its_run(
    task, method, metric, tiny_model_dir, sentiment_csv, ner_conll, tmp_path
):
    config = config_for(task, ner_conll if task == "ner" else sentiment_csv, tiny_model_dir, method)
    script = standalone_script(config)
    assert "import lab" not in script and "from lab" not in script
    path = tmp_path / "run.py"
    path.write_text(script, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,
        env={**env, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    scripted = json.loads(done.stdout[done.stdout.rindex("{\n") :])[f"test_{metric}"]
    lab = train(config, tmp_path / "lab").metrics[metric]
    assert abs(scripted - lab) <= 0.1, (scripted, lab)
    if task == "ner":
        assert lab >= 0.8  # both learned the fixture's entities, not both failed alike


@pytest.mark.parametrize("method", ["full", "head", "lora", "adalora", "ia3", "prompt", "prefix", "loha", "lokr"])
def test_the_scripts_model_trains_the_same_parameters_as_the_labs(method, tiny_model_dir, sentiment_csv):
    """The script's model code is a copy of lab.model (it must run without the lab): for every
    method, it wraps the model the lab's way, with the same trainable parameter count."""
    from lab.model.adapting import adapt
    from lab.model.loading import load_model
    from lab.model.parameters import count_parameters

    config = config_for("classification", sentiment_csv, tiny_model_dir, method)
    namespace: dict = {"__name__": "standalone"}  # not "__main__": define, do not train
    exec(compile(standalone_script(config), "run.py", "exec"), namespace)
    scripted = namespace["load_model"](["neg", "pos"], 100)
    lab, _ = adapt(load_model(config.model, "classification", ["neg", "pos"]), config, 100)
    assert count_parameters(scripted).trainable == count_parameters(lab).trainable > 0
