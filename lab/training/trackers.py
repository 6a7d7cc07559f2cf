"""Where a run is logged besides the run store: TensorBoard (always, in the run's folder) and MLflow (when a
tracking URI is configured), as Trainer callbacks; other trackers through the Trainer's own `report_to`.

TensorBoard is transformers' TensorBoardCallback (training loss, learning rate, validation and test
metrics), writing into `<run folder>/tensorboard`, plus the per-label F1 of each evaluation and the
lab's config as text. MLflow gets the config as flat params, the same metrics per step, the final
per-label table as metrics, and the report and the saved model as artifacts (`finish`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback

from lab.config import RunConfig
from lab.errors import ConfigError
from lab.training.metrics import is_average_row

TENSORBOARD_DIR = "tensorboard"
MLFLOW_URI_ENV = "MLFLOW_TRACKING_URI"


log = logging.getLogger(__name__)


def mlflow_uri(config: RunConfig) -> str:
    """The run's MLflow tracking URI: the config's, else the environment's; '' for no MLflow."""
    return config.tracking.mlflow_uri.strip() or os.environ.get(MLFLOW_URI_ENV, "").strip()


def tracker_callbacks(config: RunConfig, output_dir: Path, scorer, run_name: str) -> list[TrainerCallback]:
    callbacks: list[TrainerCallback] = []
    if config.tracking.tensorboard:
        callbacks.append(LabTensorBoardCallback(output_dir / TENSORBOARD_DIR, config, scorer))
    if mlflow_uri(config):
        callbacks.append(MlflowTracker(mlflow_uri(config), config, scorer, run_name))
    return callbacks


def finish_trackers(callbacks: list[TrainerCallback], output_dir: Path, status: str) -> None:
    """After the test evaluation, the save and the report: final per-label metrics and artifacts, then close.
    `status` is the run's (completed, cancelled), or failed when training raised: the trackers then only
    close (an MLflow run ends FAILED rather than staying RUNNING), and a tracker's own error is logged, so
    the run's error is the one that surfaces."""
    for callback in callbacks:
        if isinstance(callback, (LabTensorBoardCallback, MlflowTracker)):
            try:
                callback.finish(output_dir, status)
            except Exception:
                if status != "failed":
                    raise
                log.warning("Could not close %s after the run failed", type(callback).__name__, exc_info=True)


def _per_label_f1(per_label: list[dict[str, Any]]) -> Iterator[tuple[str, float]]:
    for row in per_label:
        if not is_average_row(row["label"]) and row.get("f1") is not None:
            yield row["label"], float(row["f1"])


class LabTensorBoardCallback(TensorBoardCallback):
    """transformers' TensorBoard logging into the run's folder, with per-label F1 and the lab config."""

    def __init__(self, log_dir: Path, config: RunConfig, scorer):
        super().__init__()
        self.logging_dir = str(log_dir)  # also where the writer reopens for the test evaluation after training
        self.config, self.scorer = config, scorer

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        if self.tb_writer is not None:
            self.tb_writer.add_text("lab_config", "```yaml\n" + self.config.to_yaml() + "```")

    def on_evaluate(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.tb_writer is None:
            self._init_summary_writer(args)
        prefix = "test" if self.scorer.split == "test" else "eval"
        for label, f1 in _per_label_f1(self.scorer.last_per_label):
            self.tb_writer.add_scalar(f"{prefix}_f1_per_label/{label}", f1, state.global_step)
        self.tb_writer.flush()

    def finish(self, output_dir: Path, status: str) -> None:
        if self.tb_writer is not None:
            self.tb_writer.close()
            self.tb_writer = None


class MlflowTracker(TrainerCallback):
    """One MLflow run per lab run, named after it; the config flattened into params."""

    def __init__(self, uri: str, config: RunConfig, scorer, run_name: str):
        try:
            import mlflow
        except ImportError:
            raise ConfigError(
                "tracking.mlflow_uri is set but MLflow is not installed: pip install mlflow-skinny (or clear the URI)."
            ) from None
        if uri.startswith("file:") or "://" not in uri:
            # MLflow 3 keeps its file store only on request (sqlite:///mlflow.db is what it recommends now).
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.mlflow, self.uri, self.config, self.scorer, self.run_name = mlflow, uri, config, scorer, run_name
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        self.run_id: Optional[str] = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or self.run_id is not None:
            return
        experiment = self.client.get_experiment_by_name("fine-tuning-lab")
        experiment_id = (
            experiment.experiment_id if experiment is not None else self.client.create_experiment("fine-tuning-lab")
        )
        run = self.client.create_run(
            experiment_id,
            run_name=self.run_name,
            tags={"task": self.config.task, "peft_method": self.config.peft.method},
        )
        self.run_id = run.info.run_id
        for key, value in self.config.flat().items():
            self.client.log_param(self.run_id, key, "" if value is None else str(value)[:500])

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.run_id is None:
            return
        for key, value in (logs or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.client.log_metric(self.run_id, key, float(value), step=state.global_step)

    def finish(self, output_dir: Path, status: str) -> None:
        if self.run_id is None:
            return
        if status == "failed":
            self.client.set_terminated(self.run_id, "FAILED")
            return
        for label, f1 in _per_label_f1(self.scorer.last_per_label):
            self.client.log_metric(self.run_id, f"test_f1_{label}", f1)
        for name in ("report.json",):
            if (output_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(output_dir / name))
        if (output_dir / "model").is_dir():
            self.client.log_artifacts(self.run_id, str(output_dir / "model"), artifact_path="model")
        self.client.set_terminated(self.run_id, "FINISHED" if status == "completed" else "KILLED")
