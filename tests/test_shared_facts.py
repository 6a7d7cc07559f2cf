"""Facts the lab states in several places come from one definition, so they cannot disagree: the
trainable share, a per-label row, the upload file types, when a run can be resumed, how a comparison
starts and reads; and the pages' refreshes read only what is new."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from lab.config import RunConfig, default_config
from lab.errors import LabError
from lab.events import LABEL_ROW, EvalEvent, StepEvent
from lab.runs.store import RunStore

REPO = Path(__file__).resolve().parents[1]
MINILM_TOTAL = 22_713_986  # all-MiniLM-L6-v2 with a two-label head; head-only trains 770 of them


def record(method: str, created_at: float, **fields) -> SimpleNamespace:
    """A comparison's run as lab.runs.records.RunRecord shows it, with what the table reads."""
    values = dict(id=f"run-{method}", task="classification", status="completed", metrics={}, summary={})
    values.update(fields, peft_method=method, created_at=created_at)
    values.setdefault("is_active", False)
    return SimpleNamespace(**values)


def test_head_only_share_reads_the_same_in_the_log_and_lab_compare():
    from lab.cli.train import format_comparison
    from lab.model.parameters import ParameterCount
    from lab.views.formatting import format_share

    assert ParameterCount(770, MINILM_TOTAL).describe().endswith("(0.00339%)")  # the run's log line
    head = record("head", 1, metrics={"accuracy": 0.6}, summary={"trainable_params": 770, "total_params": MINILM_TOTAL})
    assert "0.00339%" in format_comparison([head])  # lab compare's table
    assert format_share(770, MINILM_TOTAL) == "0.00339%"  # the pages'


def test_a_per_label_row_has_one_set_of_keys_everywhere():
    from lab.cli.runs import describe_run
    from lab.training.metrics import COLUMNS
    from lab.views.run_view import per_label_frame

    assert tuple(COLUMNS) == LABEL_ROW[1:]
    assert per_label_frame([dict(zip(LABEL_ROW, ("neg", 1.0, 0.5, 0.67, 2)))]).reset_index().columns.tolist() == list(
        LABEL_ROW
    )
    store = SimpleNamespace(run_dir=lambda run_id: Path("/nowhere"))
    run = SimpleNamespace(**dict.fromkeys(("id", "name", "status", "message", "task", "dataset", "model"), ""))
    run.__dict__.update(
        peft_method="lora", executor="thread", num_devices=1, attempt=1, created_at=None, started_at=None
    )
    run.__dict__.update(finished_at=None, output_dir="", metrics={}, traceback="")
    run.per_label = [dict(zip(LABEL_ROW, ("neg", 1.0, 0.5, 0.67, 2)))]
    shown = describe_run(store, run).splitlines()  # `lab show`'s table
    assert shown[shown.index("Per label (test):") + 1].split() == list(LABEL_ROW)


def test_the_pages_upload_every_file_type_the_readers_take(tmp_path):
    from lab.data.readers import UPLOAD_SUFFIXES, read_ner_file
    from lab.views.data_view import UPLOAD_TYPES

    assert {"bio", "iob", "conll", "csv", "parquet", "jsonl"} <= set(UPLOAD_TYPES)
    assert [suffix[1:] for suffix in UPLOAD_SUFFIXES] == UPLOAD_TYPES
    for page in ("pages/1_Data.py", "pages/2_New_run.py"):
        uploaders = re.findall(r"file_uploader\((.*?)\)\n", (REPO / page).read_text(), re.DOTALL)
        data = [call for call in uploaders if "yaml" not in call]
        assert data and all("type=UPLOAD_TYPES" in call for call in data), page
    bio = tmp_path / "tags.bio"
    bio.write_text("Ada B-PER\nsings O\n")
    assert read_ner_file(bio, "tokens", "tags").labels == [["B-PER", "O"]]


def test_lab_resume_and_the_live_page_agree_on_a_run_that_failed_before_its_first_step(tmp_path):
    from lab.runs.resume import prepare_resume, resume_refusal

    store = RunStore(tmp_path)
    early, late = (store.create_run(RunConfig(name=name)) for name in ("early", "late"))
    store.mark_running(early.id)
    store.finish(early.id, "failed", "Cannot load model 'x'.")
    store.mark_running(late.id)
    store.append_event(late.id, StepEvent(step=1, max_steps=4, loss=0.5))
    store.finish(late.id, "failed", "Out of memory.")

    assert resume_refusal(store.get_run(early.id), trained=False)  # the Live page offers no Resume
    with pytest.raises(LabError, match="before its first training step"):
        prepare_resume(store, early.id)  # and `lab resume` refuses it the same way
    assert not resume_refusal(store.get_run(late.id), trained=True)
    prepare_resume(store, late.id)
    assert store.get_run(late.id).status == "queued"


def test_lab_compare_and_the_compare_page_start_a_comparison_the_same_way():
    from lab.groups.compare import plan_comparison

    comparison = plan_comparison(default_config("classification"), "lora, full", "mine")
    submitted = comparison.start(lambda config, group: (config.peft.method, group, config.train.learning_rate))
    # PEFT_METHODS order, one group, each method at its own default rate.
    assert submitted == [("full", "compare mine", None), ("lora", "compare mine", None)]
    with pytest.raises(LabError, match="Unknown method 'magic'"):
        plan_comparison(default_config("classification"), "magic")


def test_a_comparison_table_has_one_row_per_method_newest_run_first_in_method_order():
    from lab.groups.compare import comparison_table

    records = [
        record("lora", 1, metrics={"accuracy": 0.7}),
        record("lora", 3, id="run-lora-again", metrics={"accuracy": 0.8}),
        record("full", 2, status="running", is_active=True),
    ]
    table = comparison_table(records, {"run-lora-again": 0.81})
    assert table["method"].tolist() == ["full", "lora"] and table["run"].tolist() == ["run-full", "run-lora-again"]
    assert table["test"].isna().tolist() == [True, False] and table["test"].iloc[1] == 0.8  # no result yet: empty
    assert table["best validation"].iloc[1] == 0.81


class CountingStore:
    """A run store that counts the events each refresh reads."""

    def __init__(self, store: RunStore):
        self.store, self.read = store, 0

    def events_since(self, run_id: str, seq: int = 0):
        events = self.store.events_since(run_id, seq)
        self.read += len(events)
        return events


def test_a_refresh_of_the_runs_and_compare_pages_reads_only_the_new_events(tmp_path):
    from lab.views.history import folded_views

    store = RunStore(tmp_path)
    run_ids = [store.create_run(RunConfig(name=f"run {n}")).id for n in range(2)]
    for run_id in run_ids:
        store.append_events(run_id, [StepEvent(step=step, max_steps=1000, loss=1 / step) for step in range(1, 501)])
    counting, folders = CountingStore(store), {}
    first = folded_views(folders, counting, run_ids)
    assert counting.read == sum(store.last_seq(run_id) for run_id in run_ids) and len(first[run_ids[0]].steps) == 500
    store.append_events(run_ids[1], [StepEvent(step=501, max_steps=1000, loss=0.1), EvalEvent(step=501)])
    counting.read = 0
    later = folded_views(folders, counting, run_ids)
    assert counting.read == 2  # not 1,002
    assert len(later[run_ids[1]].steps) == 501 and len(later[run_ids[1]].evaluations) == 1
