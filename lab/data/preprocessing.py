"""Tokenisation: turn standard splits (lab.data.splits) into model inputs, and map NER labels between
words and sub-word tokens.

Sequences are truncated here but not padded: the collator pads each batch to its own longest
sequence, and the `length` column lets the trainer batch similar lengths together.

NER labels live on words, models predict per token. The first sub-word piece of every word carries
the word's label; other pieces and special tokens get -100, which the loss ignores. Mapping back is
one rule, `word_tags`, used by the scorer, the predictor and the playground: each word takes the
prediction of its first piece; a word past `max_length` (cut off, no piece) or one a tokenizer turns
into zero pieces (a lone zero-width space) is predicted "O", and still counts as a gold word.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, Optional

from datasets import DatasetDict

from lab.errors import ModelError

IGNORE_INDEX = -100  # label id that torch's cross-entropy skips
OUTSIDE = "O"  # the tag of a word outside every entity
NO_WORD = -1  # stands for None (special token) in the stored word_ids column
# What the model's forward() takes; everything else in a tokenised row is bookkeeping.
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "labels")
# Fast tokenizers encode a whole text before they truncate it (a 50 MB field cost minutes and GBs), so
# texts are cut first. No real text needs this many characters per token to fill max_length tokens,
# and a sentence fills max_length tokens long before twice as many words (each word makes a piece or more).
CHARACTERS_PER_TOKEN = 64
WORDS_PER_TOKEN = 2


def effective_max_length(
    tokenizer: Any, max_length: int, position_limit: Optional[int] = None, reserved: int = 0
) -> int:
    """Never longer than the model can embed (tokenizers without a limit say ~1e30), less the
    positions `reserved` for prompt or prefix tuning's virtual tokens."""
    limits = [max_length]
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and tokenizer_limit < 1_000_000:
        limits.append(tokenizer_limit - reserved)
    if position_limit:
        limits.append(position_limit - reserved)
    return max(8, min(limits))


def align_labels_with_word_ids(word_ids: Sequence[Optional[int]], word_labels: Sequence[int]) -> list[int]:
    """One label per token: the word's label on its first piece, -100 on the rest and on special tokens."""
    labels: list[int] = []
    previous: Optional[int] = None
    for word_id in word_ids:
        if word_id is None or word_id in (NO_WORD, previous):
            labels.append(IGNORE_INDEX)
        else:
            labels.append(word_labels[word_id])
        previous = word_id
    return labels


def word_predictions(
    word_ids: Sequence[Optional[int]], token_pred_ids: Sequence[int], num_words: Optional[int] = None
) -> list[Optional[int]]:
    """One prediction per word, read from its first piece; None for words with no surviving piece.

    `num_words` (the sentence's word count) gives truncated trailing words their None; without it
    the list ends at the last word that has a piece.
    """
    present = [w for w in word_ids if w is not None and w != NO_WORD]
    count = num_words if num_words is not None else (max(present) + 1 if present else 0)
    predictions: list[Optional[int]] = [None] * count
    previous: Optional[int] = None
    for word_id, prediction in zip(word_ids, token_pred_ids):
        if word_id is not None and word_id != NO_WORD and word_id != previous and word_id < count:
            predictions[word_id] = int(prediction)
        previous = word_id
    return predictions


def word_tags(
    word_ids: Sequence[Optional[int]], token_pred_ids: Sequence[int], num_words: int, label_names: Sequence[str]
) -> list[str]:
    """The one word-mapping rule: a tag per word, from its first piece; "O" for a word with no piece."""
    return [OUTSIDE if p is None else label_names[p] for p in word_predictions(word_ids, token_pred_ids, num_words)]


def words_cut(word_ids: Sequence[Optional[int]], num_words: int) -> int:
    """How many trailing words of a sentence truncation left without a piece."""
    present = [w for w in word_ids if w is not None and w != NO_WORD]
    return num_words - (max(present) + 1 if present else 0)


# Words as CoNLL-style data has them: punctuation apart ("Paris," is "Paris" and ","), but
# abbreviations ("U.S."), numbers ("3.5", "1,000") and inner hyphens or apostrophes kept whole; and as
# tweet data (WNUT) has them: a link (less its trailing punctuation), an @mention or a #hashtag is one word.
_WORD = re.compile(
    r"(?:https?://|www\.)\S*[^\s.,!?;:)\]'\"]|(?<!\w)[@#]\w+"
    r"|(?:[^\W\d_]\.){2,}|\d+(?:[.,:]\d+)*|\w+(?:[-'’]\w+)*|[^\w\s]"
)


def split_words(text: str) -> list[str]:
    """Typed text as the words a tagger trained on CoNLL-style tokens expects."""
    return _WORD.findall(text)


def clip_text(text: str, max_length: int) -> str:
    """The start of `text` that holds its first `max_length` tokens: what to hand a tokenizer that truncates."""
    return text[: max_length * CHARACTERS_PER_TOKEN]


def clip_words(words: Sequence[str], max_length: int) -> list[str]:
    """The first words of a sentence, each cut like `clip_text`, that hold its first `max_length` tokens."""
    return [clip_text(word, max_length) for word in words[: max_length * WORDS_PER_TOKEN]]


def _tokenize_classification(batch: dict[str, list], tokenizer: Any, max_length: int) -> dict[str, list]:
    texts = [clip_text(text, max_length) for text in batch["text"]]
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    encoded["labels"] = list(batch["label"])
    encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
    return dict(encoded)


def _tokenize_ner(batch: dict[str, list], tokenizer: Any, max_length: int) -> dict[str, list]:
    sentences = [clip_words(words, max_length) for words in batch["tokens"]]
    encoded = tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=max_length)
    labels, word_ids = [], []
    for index, tags in enumerate(batch["tags"]):
        ids = encoded.word_ids(index)
        labels.append(align_labels_with_word_ids(ids, tags))
        word_ids.append([NO_WORD if w is None else w for w in ids])
    encoded["labels"] = labels
    encoded["word_ids"] = word_ids  # lets evaluation and predict map token predictions back to words
    encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
    return dict(encoded)


class TokenisingStopped(Exception):
    """Tokenising stopped on request (see tokenize_splits)."""


class _StopBetweenBatches:
    """A batch function that first checks a stop event. It pickles as the function alone, so the
    datasets cache fingerprint stays the function's (an event holds a lock, which cannot be hashed)."""

    def __init__(self, function: Callable[..., dict[str, list]], should_stop: Optional[threading.Event]) -> None:
        self.function, self.should_stop = function, should_stop

    def __call__(self, batch: dict[str, list], **kwargs: Any) -> dict[str, list]:
        if self.should_stop is not None and self.should_stop.is_set():
            raise TokenisingStopped()
        return self.function(batch, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_StopBetweenBatches, (self.function, None))


def tokenize_splits(
    splits: DatasetDict,
    tokenizer: Any,
    task: str,
    max_length: int,
    names: Optional[Sequence[str]] = None,
    position_limit: Optional[int] = None,
    reserved: int = 0,
    should_stop: Optional[threading.Event] = None,
) -> DatasetDict:
    """Tokenise the splits `names` (default: every split), with truncation and no padding.

    Sequences are cut at `effective_max_length(tokenizer, max_length, position_limit, reserved)`.
    Columns: input_ids, attention_mask, token_type_ids (when the tokenizer makes them), labels,
    length; NER also gets word_ids (-1 for special tokens). Rows stay in the order of `splits`, so
    row i still pairs with the words and tags of example i. Raises TokenisingStopped before the next
    batch of rows once `should_stop` is set (a run cancelled while it tokenises a large file).
    """
    if task == "ner" and not getattr(tokenizer, "is_fast", False):
        raise ModelError(
            f"NER needs a fast (Rust) tokenizer to map sub-words back to words; {type(tokenizer).__name__} is not one."
        )
    max_length = effective_max_length(tokenizer, max_length, position_limit, reserved)
    function = _tokenize_ner if task == "ner" else _tokenize_classification
    tokenized = {}
    for name in names or list(splits):
        split = splits[name]
        tokenized[name] = split.map(
            _StopBetweenBatches(function, should_stop),
            batched=True,
            remove_columns=split.column_names,
            fn_kwargs={"tokenizer": tokenizer, "max_length": max_length},
            desc=f"Tokenising {name}",
        )
    return DatasetDict(tokenized)


# A training row's number in its split, carried through the batch for the data map (lab.insight).
EXAMPLE_INDEX = "example_index"


class BatchCollator:
    """Drops bookkeeping columns (length, word_ids), then pads with the Hugging Face collator; keeps
    `example_index` beside the model's inputs when the rows have it."""

    def __init__(self, task: str, tokenizer: Any, pad_to_multiple_of: Optional[int] = None):
        from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

        self.pad: DataCollatorForTokenClassification | DataCollatorWithPadding
        if task == "ner":
            self.pad = DataCollatorForTokenClassification(
                tokenizer, pad_to_multiple_of=pad_to_multiple_of, label_pad_token_id=IGNORE_INDEX
            )
        else:
            self.pad = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.pad([{k: v for k, v in row.items() if k in MODEL_INPUTS} for row in features])
        if features and EXAMPLE_INDEX in features[0]:  # the data map's bookkeeping; the trainer pops it
            import torch

            batch[EXAMPLE_INDEX] = torch.tensor([row[EXAMPLE_INDEX] for row in features])
        return batch


def make_collator(task: str, tokenizer: Any, pad_to_multiple_of: Optional[int] = None) -> BatchCollator:
    """A collator that pads each batch to its longest row (labels of NER padding get -100)."""
    return BatchCollator(task, tokenizer, pad_to_multiple_of)


def label_alignment_view(
    tokenizer: Any, words: Sequence[str], tags: Sequence[str], max_length: int
) -> list[dict[str, Any]]:
    """How word tags land on sub-word tokens: one row per token {token, word_index, word, label}.

    `label` is the word's tag name on its first piece and -100 on other pieces and special tokens;
    special tokens have word_index None and word "".
    """
    max_length = effective_max_length(tokenizer, max_length)
    encoding = tokenizer(
        clip_words(words, max_length), is_split_into_words=True, truncation=True, max_length=max_length
    )
    word_ids = encoding.word_ids()
    tokens = tokenizer.convert_ids_to_tokens(encoding["input_ids"])
    names = dict(enumerate(tags))
    aligned = align_labels_with_word_ids(word_ids, list(range(len(words))))
    return [
        {
            "token": token,
            "word_index": word_id,
            "word": "" if word_id is None else words[word_id],
            "label": names[position] if position != IGNORE_INDEX else IGNORE_INDEX,
        }
        for token, word_id, position in zip(tokens, word_ids, aligned)
    ]
