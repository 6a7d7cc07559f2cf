"""Shared test setup. The environment block runs before any test module imports transformers or
datasets: both read these variables at import time (see lab.hub)."""

import os
import tempfile

_TEST_HOME = tempfile.mkdtemp(prefix="lab-tests-")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["HF_HOME"] = os.path.join(_TEST_HOME, "hf-home")
os.environ["LAB_RUNS_DIR"] = os.path.join(_TEST_HOME, "runs")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def sentiment_csv() -> Path:
    """120 learnable sentences, columns text,label with labels pos / neg."""
    return FIXTURES / "sentiment.csv"


@pytest.fixture(scope="session")
def ner_conll() -> Path:
    """120 sentences, token TAB tag, IOB2 tags with PER / LOC after cue words."""
    return FIXTURES / "ner.conll"


@pytest.fixture(scope="session")
def ner_jsonl() -> Path:
    """60 of the same sentences as JSON lines {"tokens": [...], "tags": [...]}."""
    return FIXTURES / "ner.jsonl"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A tiny random BERT (hidden 32, 2 layers, WordPiece vocab of 300) built once per session."""
    from lab.model.testing import build_tiny_model, fixture_texts

    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"), fixture_texts(FIXTURES))


# A learnable rule for the attribution and data-map tests: a text is positive exactly when it holds KEYWORD.
KEYWORD = "wonderful"
FILLER = [
    "the",
    "film",
    "was",
    "a",
    "story",
    "about",
    "people",
    "in",
    "a",
    "city",
    "with",
    "music",
    "and",
    "long",
    "scenes",
    "every",
    "night",
]


def write_keyword_csv(path: Path, seed: int, numbered: bool = False, flipped: int = 0) -> set[str]:
    """240 texts of 8 filler words, every other one with KEYWORD (and labelled pos); `numbered` makes each text
    unique, `flipped` mislabels the first that many. Returns the mislabelled texts."""
    import csv
    import random

    rng = random.Random(seed)
    rows, mislabelled = [], set()
    for i in range(240):
        words = rng.sample(FILLER, 8)
        if i % 2:
            words.insert(rng.randrange(len(words)), KEYWORD)
        label = "pos" if i % 2 else "neg"
        text = " ".join(words) + (f" number {i}" if numbered else "")
        if i < flipped:
            label = "neg" if label == "pos" else "pos"
            mislabelled.add(text)
        rows.append((text, label))
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([("text", "label"), *rows])
    return mislabelled
