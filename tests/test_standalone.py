"""The code behind a run: the generated standalone script is the template module with the run's settings,
runs without the lab, and trains exactly what the lab trains (same parameters, same first losses)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest

from lab.config import PEFT_METHODS, PeftSettings, RunConfig, TrainConfig
from lab.events import RunStartedEvent, StepEvent
from lab.publish import script_template
from lab.publish.standalone import INLINE_MARK, TEMPLATE, standalone_script
from lab.training.engine import train


def config_for(task, data_file, model_dir, method, **train_settings):
    settings = {"max_steps": 30, "eval_steps": 0, "max_length": 48, "learning_rate": 3e-3, "device": "cpu"}
    settings.update(train_settings)
    return RunConfig.from_dict(
        {
            "task": task,
            "name": f"standalone {task}",
            "data": {"dataset": "", "train_file": str(data_file)},
            "model": {"name_or_path": model_dir},
            "peft": {"method": method, "r": 4, "alpha": 8, "num_virtual_tokens": 4, "bottleneck": 8},
            "train": settings,
        }
    )


def test_the_template_is_a_module_whose_only_lab_imports_are_the_ones_inlined():
    assert script_template.build_trainer and script_template.PEFT_CONFIGS  # importable like any module
    lab_imports = [line for line in TEMPLATE.read_text().splitlines() if line.startswith(("from lab", "import lab"))]
    assert lab_imports and all(line.endswith(INLINE_MARK) for line in lab_imports)


def test_user_strings_stay_strings_in_the_script(tiny_model_dir, sentiment_csv):
    config = config_for("classification", sentiment_csv, tiny_model_dir, "lora")
    config.name = 'x"""\nimport os; os.system("echo owned")  # \'\n'
    tree = ast.parse(standalone_script(config))
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "system"]
    assert not calls


@pytest.mark.parametrize(
    "task, method, metric", [("classification", "lora", "accuracy"), ("ner", "full", "f1"), ("ner", "adapter", "f1")]
)
def test_the_generated_script_runs_without_the_lab_and_matches_its_run(
    task, method, metric, tiny_model_dir, sentiment_csv, ner_conll, tmp_path
):
    config = config_for(task, ner_conll if task == "ner" else sentiment_csv, tiny_model_dir, method)
    if method == "adapter":
        config.train.learning_rate = 1e-2
    steps = Steps()
    lab = train(config, tmp_path / "lab", sink=steps).metrics[metric]
    script = standalone_script(config, steps.started.learning_rate, steps.started.head_learning_rate)
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
    assert abs(scripted - lab) <= 0.1, (scripted, lab)
    if task == "ner" and method == "full":
        assert lab >= 0.8  # both learned the fixture's entities, not both failed alike


class Steps(list):
    """The run's training steps, and the rates it started with (a short run picks its budget's rates)."""

    started = None

    def __call__(self, event):
        if isinstance(event, StepEvent):
            self.append(event)
        elif isinstance(event, RunStartedEvent):
            self.started = event


@pytest.mark.parametrize("task", ["classification", "ner"])
@pytest.mark.parametrize("method", PEFT_METHODS)
def test_the_script_trains_the_same_parameters_to_the_same_first_losses_as_the_lab(
    method, task, tiny_model_dir, sentiment_csv, ner_conll, tmp_path, monkeypatch
):
    """Every method, both tasks: the same tiny run, three steps, in the lab and in the generated script."""
    from lab.model.parameters import count_parameters

    config = config_for(
        task,
        ner_conll if task == "ner" else sentiment_csv,
        tiny_model_dir,
        method,
        max_steps=3,
        logging_steps=1,
        train_batch_size=8,
        eval_batch_size=64,
        warmup_ratio=0.0,
    )
    config.data.eval_subset = 8
    monkeypatch.chdir(tmp_path)
    steps = Steps()
    lab = train(config, tmp_path / "lab", sink=steps)
    namespace: dict = {"__name__": "standalone"}  # not "__main__": define, do not run
    # The run's script, as a run's handout writes it: with the rates the run trained at.
    rates = steps.started.learning_rate, steps.started.head_learning_rate
    exec(compile(standalone_script(config, *rates), "run.py", "exec"), namespace)
    trainer, _ = namespace["build_trainer"]()
    assert count_parameters(trainer.model).trainable == lab.trainable_params > 0
    trainer.train()
    scripted = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert scripted == pytest.approx([step.loss for step in steps], rel=1e-3, abs=1e-4)


def test_a_script_states_where_its_learning_rates_come_from():
    head_ner = RunConfig(task="ner", peft=PeftSettings(method="head"))
    trained = standalone_script(head_ner, learning_rate=0.05)  # what the run's RunStartedEvent says it used
    assert "LEARNING_RATE = 0.05\n" in trained and "HEAD_LEARNING_RATE = 0.05\n" in trained
    assert "# LEARNING_RATE and HEAD_LEARNING_RATE: the rates the run trained at." in trained
    from_config = standalone_script(head_ner)  # `lab config --script`: the run's steps are unknown
    assert "LEARNING_RATE = 0.01\n" in from_config
    assert "defaults for a run as long as the one-click budget" in from_config
    assert "# A run of fewer than 100 steps trains at 0.05 (head 0.05) in the lab." in from_config
    typed = RunConfig(task="ner", peft=PeftSettings(method="head"), train=TrainConfig(learning_rate=2e-2))
    assert "one-click budget" not in standalone_script(typed)  # a rate the user typed is the rate
