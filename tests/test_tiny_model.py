"""The tiny BERT the tests train: its vocabulary is the same in every process, so a test's tokens are too."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import FIXTURES

VOCABULARY = (
    "import json, sys; from lab.model.testing import build_tiny_tokenizer, fixture_texts; "
    "vocabulary = build_tiny_tokenizer(fixture_texts(sys.argv[1])).get_vocab(); "
    "print(json.dumps(sorted(vocabulary, key=vocabulary.get)))"
)


def test_two_processes_build_the_same_vocabulary_and_rare_words_split_into_pieces():
    built = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", VOCABULARY, str(FIXTURES)], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(3)
    ]
    assert built[0] == built[1] == built[2]
    assert len(built[0]) == 300
    from lab.model.testing import build_tiny_tokenizer, fixture_texts

    tokenizer = build_tiny_tokenizer(fixture_texts(FIXTURES))
    assert tokenizer.tokenize("wonderful") == ["wonderful"]
    assert len(tokenizer.tokenize("unbelievable")) > 2  # the label-alignment tests need words of several pieces
