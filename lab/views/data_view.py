"""A dataset before training: uploads kept in the runs folder, columns, an overview of labels and
token lengths, and the parameter count of a config before its model trains."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lab.config import DataConfig, RunConfig
from lab.data.readers import UPLOAD_SUFFIXES

# The pages take the upload helpers from here, with the rest of the Data page's computations.
from lab.views.uploads import for_the_page as for_the_page
from lab.views.uploads import save_upload as save_upload

UPLOAD_TYPES = [suffix[1:] for suffix in UPLOAD_SUFFIXES]  # as st.file_uploader's `type` takes them
# Label counts of the built-in datasets, for sizing the head when counting parameters before a run.
BUILTIN_LABEL_COUNTS = {"imdb": 2, "rotten_tomatoes": 2, "conll2003": 9, "wnut16": 21}
# Models offered in the New run page besides the offline default and a free hub id / folder.
SUGGESTED_MODELS = (
    "bert-base-uncased",
    "distilbert-base-uncased",
    "bert-base-cased",
    "roberta-base",
    "microsoft/deberta-v3-small",
)


def file_columns(path: str | Path) -> list[str]:
    """Column names of a CSV / TSV / JSON(L) / Parquet file (keys for JSON), for the column mapping."""
    from lab.data.readers import (  # the readers' own parser, same errors
        CLASSIFICATION_SUFFIXES,
        _table,
    )

    path = Path(path)
    if path.suffix.lower() not in CLASSIFICATION_SUFFIXES:
        return []
    return _table(path)[0]


@dataclass
class DataOverview:
    source: str
    notes: list[str]
    label_names: list[str]
    split_sizes: dict[str, int]
    preview: pd.DataFrame  # the first train rows as people read them
    label_counts: pd.DataFrame  # split, label, count (NER: entities by type)
    examples: list[Any]  # up to `sample` train inputs (texts, or word lists for NER)
    example_tags: list[list[str]]  # NER: the tags of those word lists


def data_overview(data_cfg: DataConfig, task: str, sample: int = 2000) -> DataOverview:
    """Load the data as a run would (same checks and errors) and summarise it for the Data page."""
    from lab.data.splits import load_splits
    from lab.data.tags import split_tag

    messages: list[str] = []
    loaded = load_splits(data_cfg, task, data_cfg.split_seed, log=messages.append)
    names = loaded.label_names
    counts = []
    for split_name, split in loaded.splits.items():
        if task == "ner":
            tally: dict[str, int] = {}
            for tags in split["tags"]:
                for tag_id in tags:
                    prefix, entity_type = split_tag(names[tag_id])
                    if prefix in ("B", "S"):  # one entity starts here
                        tally[entity_type] = tally.get(entity_type, 0) + 1
        else:
            tally = pd.Series([names[i] for i in split["label"]]).value_counts().to_dict()
        counts += [{"split": split_name, "label": label, "count": count} for label, count in sorted(tally.items())]
    train = loaded.splits["train"]
    head = train.select(range(min(sample, len(train))))
    if task == "ner":
        examples = list(head["tokens"])
        example_tags = [[names[t] for t in tags] for tags in head["tags"]]
        preview = pd.DataFrame(
            {
                "words": [" ".join(words) for words in examples[:50]],
                "tags": [" ".join(tags) for tags in example_tags[:50]],
            }
        )
    else:
        examples, example_tags = list(head["text"]), []
        preview = pd.DataFrame({"text": examples[:50], "label": [names[i] for i in head["label"][:50]]})
    return DataOverview(
        loaded.source,
        loaded.notes,
        names,
        {k: len(v) for k, v in loaded.splits.items()},
        preview,
        pd.DataFrame(counts, columns=["split", "label", "count"]),
        examples,
        example_tags,
    )


@dataclass
class TokenLengths:
    lengths: list[int]  # sub-word tokens per example, special tokens included
    clipped: int  # how many examples were measured on their start only
    limit: int  # that start: characters per text, or words per sentence for NER


def token_lengths(tokenizer: Any, examples: Sequence[Any], task: str, max_length: int) -> TokenLengths:
    """Sub-word tokens per example, without truncation, of the start of each text that training reads
    (lab.data.preprocessing.clip_text): many times `max_length` tokens, never a whole 50 MB field. Whether
    an example is truncated at `max_length` is exact; a longer length counts up to that start."""
    from lab.data.preprocessing import CHARACTERS_PER_TOKEN, WORDS_PER_TOKEN, clip_text, clip_words

    if task == "ner":
        clipped = [clip_words(words, max_length) for words in examples]
        cut = sum(short != list(words) for short, words in zip(clipped, examples))
        encoded = tokenizer(clipped, is_split_into_words=True, truncation=False) if clipped else {"input_ids": []}
        limit = max_length * WORDS_PER_TOKEN
    else:
        texts = [clip_text(text, max_length) for text in examples]
        cut = sum(len(short) < len(text) for short, text in zip(texts, examples))
        encoded = tokenizer(texts, truncation=False) if texts else {"input_ids": []}
        limit = max_length * CHARACTERS_PER_TOKEN
    return TokenLengths([len(ids) for ids in encoded["input_ids"]], cut, limit)


def truncated_share(lengths: Sequence[int], max_length: int) -> float:
    return sum(length > max_length for length in lengths) / len(lengths) if lengths else 0.0


def label_count(data_cfg: DataConfig, task: str) -> int:
    """How many labels the head will have: known for built-ins, read from the train file otherwise."""
    if not data_cfg.train_file:
        return BUILTIN_LABEL_COUNTS.get(data_cfg.dataset, 2)
    from lab.data.readers import read_classification_file, read_ner_file
    from lab.data.tags import ner_label_names

    if task == "ner":
        raw = read_ner_file(data_cfg.train_file, data_cfg.tokens_column, data_cfg.tags_column)
        return len(ner_label_names(raw.labels))
    raw = read_classification_file(data_cfg.train_file, data_cfg.text_column, data_cfg.label_column)
    return len(set(raw.labels))


def parameter_count(config: RunConfig, num_labels: int) -> tuple[int, int, list[dict[str, Any]]]:
    """(trainable, total, per part) parameters of the model as this config would train it; the parts
    are lab.model.parameters.parameters_by_part's rows."""
    from lab.model.adapting import adapt
    from lab.model.loading import load_model
    from lab.model.parameters import count_parameters, parameters_by_part

    model = load_model(config.model, config.task, [f"label_{i}" for i in range(max(2, num_labels))])
    # AdaLoRA needs a step count for its schedule; any positive number gives the same parameter count.
    model, _ = adapt(model, config, total_steps=1000)
    count = count_parameters(model)
    return count.trainable, count.total, parameters_by_part(model)
