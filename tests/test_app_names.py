"""Names users typed (a run's, a comparison's, a data file's) show as typed on every page: never as
Markdown, so a name like `![x](http://...)` draws no remote image and `**x**` no bold."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.config import RunConfig
from lab.events import EvalEvent, ResultEvent, StepEvent
from lab.runs.store import RunStore
from lab.views.formatting import plain_text

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NAME = "![x](http://127.0.0.1:9/beacon.png) **loud** :red[red]"
RAW = ("![x](", "**loud**", ":red[")  # what Markdown would act on
PER_LABEL = [{"label": "neg", "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    import lab.publish.standalone  # noqa: F401 - the training stack loaded, as after a run (the Live page shows its script)

    folder = tmp_path_factory.mktemp("names")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAB_RUNS_DIR", str(folder))
        store = RunStore(folder)
        for method in ("full", "lora"):
            config = RunConfig(name=NAME)
            config.peft.method = method
            run = store.create_run(config, group=f"compare {NAME}")
            store.mark_running(run.id)
            store.append_events(
                run.id,
                [
                    StepEvent(step=1, max_steps=2, loss=0.7),
                    EvalEvent(step=2, metrics={"accuracy": 0.5}, per_label=PER_LABEL),
                    EvalEvent(split="test", step=2, metrics={"accuracy": 0.5}, per_label=PER_LABEL),
                    ResultEvent(metrics={"accuracy": 0.5}, per_label=PER_LABEL, trainable_params=10, total_params=100),
                ],
            )
            store.finish(
                run.id,
                "completed",
                metrics={"accuracy": 0.5},
                per_label=PER_LABEL,
                summary={"trainable_params": 10, "total_params": 100},
            )
        yield store


def page(name: str, **query) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.query_params.update(query)
    at.run()
    if name:
        at.switch_page(name)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def markdown_texts(at: AppTest) -> list[str]:
    """Every text on the page that Streamlit renders as Markdown (widget options and dataframes it does not)."""
    texts = [
        element.value
        for kind in ("markdown", "caption", "title", "header", "subheader", "info", "warning", "error", "success")
        for element in getattr(at, kind)
    ]
    texts += [link.proto.label for link in at.get("page_link")]
    for table in at.table:
        texts += [str(column) for column in table.value.columns] + [str(cell) for cell in table.value.values.ravel()]
    return texts


def assert_shown_as_typed(texts: list[str]) -> None:
    assert not [text for text in texts if any(raw in text for raw in RAW)]
    assert any(plain_text(NAME) in text for text in texts)  # the name is there, escaped


def test_the_live_page_heads_a_run_with_its_name_as_typed(store):
    run = store.list_runs()[0]
    assert_shown_as_typed(markdown_texts(page("pages/3_Live_run.py", run=run.id)))


def test_the_runs_page_compares_and_deletes_runs_named_as_typed(store):
    at = page("pages/4_Runs.py")
    at.multiselect[-1].set_value([run.id for run in store.list_runs()]).run()
    assert_shown_as_typed(markdown_texts(at))


def test_the_home_page_lists_recent_runs_named_as_typed(store):
    assert_shown_as_typed(markdown_texts(page("")))


def test_the_compare_page_renders_no_name_as_markdown(store):
    at = page("pages/6_Compare.py", group=f"compare {NAME}")
    assert not [text for text in markdown_texts(at) if any(raw in text for raw in RAW)]
    assert len(at.dataframe[0].value) == 2  # both methods of the group are shown
