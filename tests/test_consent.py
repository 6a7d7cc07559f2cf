"""Remote code and remote places only after consent at launch (New run page, Streamlit AppTest).

A YAML upload that turns on trust_remote_code for a model whose config.json maps its classes into a
Python file must not run that file while the form renders, counts parameters or estimates memory;
it shows a warning at the top of the form, and Launch queues nothing until the confirmation beside
it is ticked. A tracking.mlflow_uri or train.ray_address from a file is shown and confirmed the same way.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lab.config import RunConfig, settings_needing_consent
from lab.runs.store import RunStore

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "runs"
    monkeypatch.setenv("LAB_RUNS_DIR", str(folder))
    return folder


def model_with_code(tiny_model_dir: str, folder: Path, marker: Path) -> Path:
    """The tiny model, plus an auto_map into a Python file that leaves `marker` behind when it runs."""
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "remote.RemoteConfig",
        "AutoModelForSequenceClassification": "remote.RemoteModel",
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "remote.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('the model folder ran its code')\n"
        "from transformers import BertConfig, BertForSequenceClassification\n"
        "class RemoteConfig(BertConfig):\n    pass\n"
        "class RemoteModel(BertForSequenceClassification):\n    config_class = RemoteConfig\n"
    )
    return folder


def new_run_with_upload(config: RunConfig) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/2_New_run.py")
    at.run()
    at.file_uploader(key="yaml-upload").set_value(("run.yaml", config.to_yaml().encode(), "application/x-yaml"))
    return at.run()


def launch(at: AppTest) -> AppTest:
    return next(b for b in at.button if b.label == "Launch").click().run()


def consent_box(at: AppTest):
    return next(c for c in at.checkbox if c.label.startswith("I have read this config"))


def test_an_uploaded_yaml_runs_no_model_code_until_the_launch_confirmation(tiny_model_dir, runs_dir, tmp_path):
    marker = tmp_path / "marker.txt"
    model = model_with_code(tiny_model_dir, tmp_path / "model-with-code", marker)
    config = RunConfig.from_dict(
        {
            "name": "remote-code",
            "data": {"dataset": "", "train_file": str(REPO / "tests" / "fixtures" / "sentiment.csv")},
            "model": {"name_or_path": str(model), "trust_remote_code": True},
            "train": {"max_steps": 1, "max_length": 16},
        }
    )
    at = new_run_with_upload(config)
    at.run()
    next(b for b in at.button if b.label == "Launch")  # the form is drawn in full
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not marker.exists()
    # The warning is the first thing on the form, and it names the model and the risk.
    top = at.warning[0].value
    assert str(model) in top and "Python code" in top and "confirm" in top
    assert any("wait for your confirmation" in info.value for info in at.info)
    assert not [m for m in at.metric if m.label == "Trainable parameters"]

    launch(at)
    assert any("Tick the confirmation" in error.value for error in at.error)
    assert RunStore(runs_dir).list_runs() == []
    assert not marker.exists()

    # Ticked, the form loads the model, its code included: the count is what the person agreed to.
    assert str(model) in consent_box(at).label
    consent_box(at).check().run()
    assert marker.exists()


def test_a_yaml_that_sends_the_run_elsewhere_is_shown_and_confirmed(runs_dir):
    config = RunConfig(name="elsewhere")
    config.tracking.mlflow_uri = "http://127.0.0.1:9/mlflow"
    config.train.ray_address = "http://127.0.0.1:9/ray"
    assert [item.setting for item in settings_needing_consent(config)] == ["mlflow_uri", "ray_address"]
    at = new_run_with_upload(config)
    assert not at.exception, [e.value for e in at.exception]
    top = at.warning[0].value
    assert "MLflow" in top and "http://127.0.0.1:9/mlflow" in top and "http://127.0.0.1:9/ray" in top
    # The form keeps what the file asked (it is launched as shown), and Launch waits for the confirmation.
    shown = RunConfig.from_yaml(next(code.value for code in at.code if code.language == "yaml"))
    assert (shown.tracking.mlflow_uri, shown.train.ray_address) == (
        config.tracking.mlflow_uri,
        config.train.ray_address,
    )
    launch(at)
    assert any("Tick the confirmation" in error.value for error in at.error)
    assert RunStore(runs_dir).list_runs() == []
    assert not consent_box(at).value


def test_the_default_form_asks_for_no_confirmation(runs_dir):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/2_New_run.py")
    at.run()
    assert not at.exception
    assert not [c for c in at.checkbox if c.label.startswith("I have read this config")]
    assert not at.warning
