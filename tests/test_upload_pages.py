"""The Data and New run pages with an upload of the user's: its own name on the page, lengths measured on
what training reads, and the whole file trained on (not the built-in IMDB default's 2,000 / 500 sample)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path / "runs"))

    def open_page(page: str) -> AppTest:
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
        at.run()
        at.switch_page(page)
        return at.run()

    return open_page


def widget(widgets, label: str):
    return next(w for w in widgets if w.label == label)


def reviews(long_text: str = "") -> bytes:
    rows = [f"review {i} of the film,{'pos' if i % 2 else 'neg'}" for i in range(40)]
    if long_text:
        rows[0] = f"{long_text},neg"
    return ("text,label\n" + "\n".join(rows) + "\n").encode()


def test_the_data_page_names_the_upload_measures_what_training_reads_and_hands_over_the_whole_file(app, tiny_model_dir):
    at = app("pages/1_Data.py")
    widget(at.radio, "Source").set_value("Upload a file").run()
    at.file_uploader[0].set_value(("my reviews.csv", reviews("wonderful " * 100_000), "text/csv")).run()
    widget(at.text_input, "Model (its tokenizer)").input(tiny_model_dir).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(caption.value == "Source: your files: train my-reviews.csv" for caption in at.caption)
    clipped = [c.value for c in at.caption if "measured on their first" in c.value]
    assert clipped == [
        "Texts longer than training reads at this max_length (1) are measured on their first 8,192 characters."
    ]
    widget(at.button, "Train on this data").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert widget(at.number_input, "Train examples (0 = all)").value == 0
    assert widget(at.number_input, "Evaluation examples (0 = all)").value == 0


def test_new_run_trains_on_the_whole_of_a_users_file(app):
    at = app("pages/2_New_run.py")
    assert widget(at.number_input, "Train examples (0 = all)").value == 2000  # the IMDB default's sample
    widget(at.radio, "Source").set_value("files").run()
    assert widget(at.number_input, "Train examples (0 = all)").value == 0
    assert widget(at.number_input, "Evaluation examples (0 = all)").value == 0
    widget(at.radio, "Source").set_value("builtin").run()
    assert widget(at.number_input, "Train examples (0 = all)").value == 2000
