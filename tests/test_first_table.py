"""What a one-epoch demo shows: the data map over its evaluations (a within-epoch data map)."""

import json

from conftest import write_keyword_csv

from lab.config import DataConfig, ModelConfig, PeftSettings, RunConfig, TrainConfig
from lab.events import EvalEvent
from lab.insight.dynamics import DYNAMICS_FILE, EVALUATION_SAMPLE
from lab.training.engine import train
from lab.views.data_map import REGIONS, load_data_map


class Recorder(list):
    def __call__(self, event):
        self.append(event)


def keyword_config(tiny_model_dir, path, **train) -> RunConfig:
    return RunConfig(
        task="classification",
        data=DataConfig(dataset="", train_file=str(path)),
        model=ModelConfig(name_or_path=tiny_model_dir),
        peft=PeftSettings(method="full"),
        train=TrainConfig(**{"train_batch_size": 8, "max_length": 32, "learning_rate": 1e-3, **train}),
    )


def test_a_one_epoch_run_evaluated_three_times_has_a_data_map_over_its_evaluations(tiny_model_dir, tmp_path):
    path = tmp_path / "keyword.csv"
    write_keyword_csv(path, seed=1, numbered=True)
    events = Recorder()
    train(keyword_config(tiny_model_dir, path, epochs=1, eval_steps=8), tmp_path / "out", sink=events)
    evaluations = [e.step for e in events if isinstance(e, EvalEvent) and e.split == "validation"]
    assert len(evaluations) >= 3

    frame = load_data_map(tmp_path / "out")
    assert frame is not None
    assert frame.attrs["epochs"] == 1
    assert frame.attrs["evaluations"] == len(evaluations)
    # A bounded sample of the training texts, every one scored at every evaluation.
    written = json.loads((tmp_path / "out" / DYNAMICS_FILE).read_text())
    assert 0 < len(frame) <= min(EVALUATION_SAMPLE, len(written["texts"]))
    assert set(frame["text"]) <= set(written["texts"])
    assert written["evaluations"]["steps"] == evaluations
    assert frame["confidence"].between(0, 1).all() and frame["variability"].between(0, 0.5).all()
    assert set(frame["region"]) <= set(REGIONS)


def test_a_run_of_several_epochs_keeps_its_data_map_over_epochs(tiny_model_dir, tmp_path):
    path = tmp_path / "keyword.csv"
    write_keyword_csv(path, seed=1, numbered=True)
    train(keyword_config(tiny_model_dir, path, epochs=2, eval_steps=8), tmp_path / "out")
    frame = load_data_map(tmp_path / "out")
    written = json.loads((tmp_path / "out" / DYNAMICS_FILE).read_text())
    assert "evaluations" not in written  # no extra pass: the epochs give the spread
    assert frame.attrs == {"epochs": 2, "evaluations": 0}
    assert len(frame) == len(written["texts"])
