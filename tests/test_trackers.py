"""TensorBoard files in every run's folder and a real local MLflow store, read back with their own readers."""

import glob

import pytest

from lab.config import DataConfig, ModelConfig, PeftSettings, RunConfig, TrackingConfig, TrainConfig
from lab.training.engine import train


@pytest.fixture(scope="module")
def tracked_run(tiny_model_dir, sentiment_csv, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tracked")
    uri = f"file:{folder / 'mlruns'}"
    config = RunConfig(
        task="classification",
        name="tracked",
        data=DataConfig(dataset="", train_file=str(sentiment_csv)),
        model=ModelConfig(name_or_path=tiny_model_dir),
        peft=PeftSettings(method="lora", r=4),
        train=TrainConfig(
            learning_rate=3e-3, max_steps=12, train_batch_size=8, eval_steps=6, logging_steps=2, max_length=32
        ),
        tracking=TrackingConfig(mlflow_uri=uri),
    )
    train(config, output_dir=folder / "out")
    return folder / "out", uri


def test_tensorboard_shows_the_curves_per_label_f1_and_the_config(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    output, _ = tracked_run
    scalars, texts = {}, set()
    for path in glob.glob(str(output / "tensorboard" / "events.out.tfevents.*")):
        events = EventAccumulator(path)
        events.Reload()
        texts |= {tag.split("/")[0] for tag in events.Tags()["tensors"]}
        scalars |= {tag: [event.step for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    assert scalars["train/loss"][:3] == [1, 2, 4]
    assert scalars["eval/accuracy"] == [6, 12] and scalars["test/accuracy"] == [12]
    assert scalars["eval_f1_per_label/neg"] == [6, 12] and "test_f1_per_label/pos" in scalars
    assert "lab_config" in texts


def test_mlflow_gets_params_metrics_per_step_per_label_results_and_artifacts(tracked_run):
    import mlflow

    output, uri = tracked_run
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("fine-tuning-lab").experiment_id])
    assert run.info.run_name == "tracked" and run.info.status == "FINISHED"
    assert run.data.params["peft.method"] == "lora" and run.data.params["train.max_steps"] == "12"
    assert [metric.step for metric in client.get_metric_history(run.info.run_id, "loss")][:3] == [1, 2, 4]
    assert {"test_f1_neg", "test_f1_pos", "test_accuracy"} <= set(run.data.metrics)
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"report.json", "model"} <= artifacts
    assert "model/lab_model.json" in {item.path for item in client.list_artifacts(run.info.run_id, "model")}


def test_a_run_that_fails_ends_its_mlflow_run_failed_not_running(tiny_model_dir, sentiment_csv, tmp_path):
    import mlflow

    from lab.events import EvalEvent

    def store_gives_up(event):  # what a full disk under the run store does at the first evaluation
        if isinstance(event, EvalEvent):
            raise OSError("No space left on device")

    uri = f"file:{tmp_path / 'mlruns'}"
    config = RunConfig(
        task="classification",
        name="doomed",
        data=DataConfig(dataset="", train_file=str(sentiment_csv)),
        model=ModelConfig(name_or_path=tiny_model_dir),
        peft=PeftSettings(method="lora", r=4),
        train=TrainConfig(learning_rate=3e-3, max_steps=12, train_batch_size=8, eval_steps=6, max_length=32),
        tracking=TrackingConfig(mlflow_uri=uri),
    )
    with pytest.raises(OSError, match="No space left"):  # the run's own error surfaces, not a tracker's
        train(config, output_dir=tmp_path / "out", sink=store_gives_up)
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("fine-tuning-lab").experiment_id])
    assert run.info.status == "FAILED"
