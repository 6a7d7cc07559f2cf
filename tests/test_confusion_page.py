"""The Live page draws a confusion matrix of many labels as its largest confusions (bars), not a heatmap."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lab.config import RunConfig
from lab.events import EvalEvent, StepEvent
from lab.runs.store import RunStore
from lab.training.metrics import TOP_CONFUSIONS, classification_report, confusion_matrix, report_to_records

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_live_page_draws_the_top_confusions_of_many_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path))
    store = RunStore(tmp_path)
    labels = [f"topic_{i}" for i in range(120)]
    generator = np.random.default_rng(1)
    y_true = generator.integers(0, 120, 3000)
    y_pred = np.where(generator.random(3000) < 0.7, y_true, generator.integers(0, 120, 3000))
    y_true[:90], y_pred[:90] = 5, 6
    confusion = confusion_matrix(y_true.tolist(), y_pred.tolist(), labels)
    run = store.create_run(RunConfig(name="many-topics"))
    store.mark_running(run.id)
    per_label = report_to_records(classification_report(y_true.tolist(), y_pred.tolist(), labels))
    store.append_events(
        run.id,
        [
            StepEvent(step=10, max_steps=10, loss=0.5),
            EvalEvent(step=10, epoch=1.0, metrics={"accuracy": 0.7}, per_label=per_label, confusion=confusion),
        ],
    )
    store.finish(run.id, "completed", "")
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.query_params["run"] = run.id
    at.run()
    at.switch_page("pages/3_Live_run.py").run()
    assert not at.exception, [e.value for e in at.exception]
    specs = [json.loads(element.proto.spec) for element in at.get("plotly_chart")]
    titles = {spec["layout"]["title"]["text"]: spec for spec in specs}
    title = next(name for name in titles if "largest confusions of 120 labels" in name)
    bars = titles[title]["data"][0]
    assert bars["type"] == "bar" and len(bars["y"]) == TOP_CONFUSIONS
    assert bars["y"][-1] == "topic_5 → topic_6" and bars["x"][-1] >= 90  # the largest on top
    assert not any(trace["type"] == "heatmap" for spec in specs for trace in spec["data"])
