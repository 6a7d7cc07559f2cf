"""Bounded work per data file: caps on bytes, rows and cells (a Parquet file's from its metadata), files
parsed once per content, and uploads that are written whole or not at all, named as the user named them,
and pruned when no run uses them."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lab.config import DataConfig
from lab.data import budget
from lab.data.readers import read_classification_file, read_ner_file
from lab.data.splits import load_splits
from lab.errors import DataError

HEADER = "text,label\n"


def csv_rows(count: int) -> str:
    return HEADER + "".join(f"review {i} of the film,{'pos' if i % 2 else 'neg'}\n" for i in range(count))


# ---- caps ----------------------------------------------------------------------------------------
def test_a_tiny_parquet_file_of_three_million_rows_is_refused_from_its_metadata(tmp_path):
    path = tmp_path / "bomb.parquet"
    rows = 3_000_000
    texts = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)), pa.array(["a fine film"]))
    labels = pa.DictionaryArray.from_arrays(pa.array(np.arange(rows, dtype=np.int32) % 2), pa.array(["neg", "pos"]))
    pq.write_table(pa.table({"text": texts, "label": labels}), path, compression="zstd")
    assert path.stat().st_size < 100_000
    started = time.perf_counter()
    with pytest.raises(DataError) as error:
        read_classification_file(path, "text", "label")
    assert time.perf_counter() - started < 2.0
    message = str(error.value)
    assert str(path) in message and f"{budget.MAX_ROWS:,} rows" in message and "\n" not in message


@pytest.mark.parametrize(
    "name, content, task, unit",
    [
        ("many.csv", csv_rows(60), "classification", "rows"),
        ("many.tsv", csv_rows(60).replace(",", "\t"), "classification", "rows"),
        (
            "many.jsonl",
            "".join(json.dumps({"text": f"t{i}", "label": "ab"[i % 2]}) + "\n" for i in range(60)),
            "classification",
            "lines",
        ),
        (
            "many.json",
            json.dumps([{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(60)]),
            "classification",
            "records",
        ),
        ("many.conll", "".join(f"Ann{i}\tB-PER\nsat\tO\n\n" for i in range(60)), "ner", "sentences"),
        (
            "many-ner.jsonl",
            "".join(json.dumps({"tokens": ["Ann", "sat"], "tags": ["B-PER", "O"]}) + "\n" for i in range(60)),
            "ner",
            "lines",
        ),
    ],
)
def test_every_format_refuses_more_rows_than_the_cap(tmp_path, monkeypatch, name, content, task, unit):
    monkeypatch.setattr(budget, "MAX_ROWS", 50)
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=f"{path.name} holds more than 50 {unit}, the most the lab reads"):
        load_splits(DataConfig(dataset="", train_file=str(path)), task, 0, log=lambda message: None)


def test_cells_and_bytes_are_capped_too(tmp_path, monkeypatch):
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"c{i}" for i in range(30)) + ",text,label\n" + ("x," * 30 + "good,pos\n") * 20)
    monkeypatch.setattr(budget, "MAX_CELLS", 500)
    with pytest.raises(DataError, match="wide.csv holds more than 500 cells"):
        read_classification_file(wide, "text", "label")
    words = tmp_path / "long.conll"
    words.write_text("".join(f"w{i}\tO\n" for i in range(600)) + "Ann\tB-PER\n")
    with pytest.raises(DataError, match="long.conll holds more than 500 words"):
        read_ner_file(words, "tokens", "tags")
    monkeypatch.setattr(budget, "MAX_FILE_BYTES", 2**20)
    big = tmp_path / "big.csv"
    big.write_text(csv_rows(40_000))
    with pytest.raises(DataError, match=r"big.csv is \d MB, more than the 1 MB the lab reads from one file"):
        read_classification_file(big, "text", "label")


# ---- parsed once ---------------------------------------------------------------------------------
def test_a_file_is_parsed_once_until_its_content_changes(tmp_path, monkeypatch):
    import pandas as pd

    calls = []
    original = pd.read_csv
    monkeypatch.setattr(pd, "read_csv", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    path = tmp_path / "reviews.csv"
    path.write_text(csv_rows(10))
    first = read_classification_file(path, "text", "label")
    first.labels[0] = "changed by a caller"
    again = read_classification_file(path, "text", "label")
    assert len(calls) == 1 and again.labels[0] == "neg"
    path.write_text(csv_rows(12))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert len(read_classification_file(path, "text", "label").inputs) == 12 and len(calls) == 2


def test_iob1_conversion_does_not_change_the_file_read_next_time(tmp_path):
    path = tmp_path / "iob1.conll"
    path.write_text("".join(f"Ann{i}\tI-PER\nLee\tI-PER\nsat\tO\n\n" for i in range(12)))
    for _ in range(2):
        loaded = load_splits(DataConfig(dataset="", train_file=str(path)), "ner", 0, log=lambda message: None)
        assert loaded.label_names == ["O", "B-PER", "I-PER"]
        assert any("IOB1" in note for note in loaded.notes)


# ---- column mapping ------------------------------------------------------------------------------
def test_a_file_without_a_label_column_says_so(tmp_path):
    path = tmp_path / "texts.csv"
    path.write_text("text\n" + "".join(f"review {i}\n" for i in range(10)))
    with pytest.raises(DataError) as error:
        read_classification_file(path, "text", "text")
    assert "has one column only ('text')" in str(error.value) and "both mapped" not in str(error.value)


# ---- uploads -------------------------------------------------------------------------------------
def test_an_upload_keeps_the_users_file_name_in_paths_sources_and_messages(tmp_path):
    from lab.views.data_view import for_the_page, save_upload

    path = save_upload("my reviews.csv", csv_rows(30).encode(), tmp_path)
    assert path.name == "my-reviews.csv" and path.read_text() == csv_rows(30)
    assert save_upload("my reviews.csv", csv_rows(30).encode(), tmp_path) == path  # stored once
    loaded = load_splits(DataConfig(dataset="", train_file=str(path)), "classification", 0, log=lambda m: None)
    assert loaded.source == "your files: train my-reviews.csv"
    broken = save_upload("broken.csv", b"text,label\ngood,pos\nbad,\n", tmp_path)
    with pytest.raises(DataError) as error:
        read_classification_file(broken, "text", "label")
    assert for_the_page(str(error.value)).startswith("broken.csv, row 3: the label")


def test_an_interrupted_upload_is_never_reused(tmp_path, monkeypatch):
    """The disk fills half-way through the write: the user reads one line, and the next upload of the
    same file is stored whole, not the partial bytes under the full file's name."""
    from lab.views import uploads

    data = csv_rows(2000).encode()

    def disk_full(handle):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(uploads.os, "fsync", disk_full)
    with pytest.raises(DataError, match=r"^reviews.csv could not be saved in .*: No space left on device\. Free"):
        uploads.save_upload("reviews.csv", data, tmp_path)
    assert not [p for p in (tmp_path / "uploads").rglob("*") if p.is_file()]  # no partial file left
    monkeypatch.undo()
    path = uploads.save_upload("reviews.csv", data, tmp_path)
    assert path.read_bytes() == data
    path.write_bytes(data[:1000])  # cut short by something else: the next upload rewrites it
    assert uploads.save_upload("reviews.csv", data, tmp_path).read_bytes() == data


def test_uploads_no_run_uses_are_pruned_once_old(tmp_path):
    from lab.config import RunConfig
    from lab.runs.store import RunStore
    from lab.views import uploads

    store = RunStore(tmp_path)
    used = uploads.save_upload("used.csv", csv_rows(10).encode(), tmp_path)
    store.create_run(RunConfig(data=DataConfig(dataset="", train_file=str(used))))
    deleted = uploads.save_upload("deleted.csv", csv_rows(11).encode(), tmp_path)
    gone = store.create_run(RunConfig(data=DataConfig(dataset="", train_file=str(deleted))))
    store.finish(gone.id, "cancelled")
    store.delete_run(gone.id)
    fresh = uploads.save_upload("fresh.csv", csv_rows(12).encode(), tmp_path)
    day_ago = time.time() - uploads.UNUSED_UPLOAD_SECONDS - 60
    for path in (used, deleted):
        os.utime(path, (day_ago, day_ago))
        os.utime(path.parent, (day_ago, day_ago))
    removed = uploads.prune_uploads(tmp_path)
    assert removed == [deleted.parent]
    assert used.is_file() and fresh.is_file() and not deleted.exists()
