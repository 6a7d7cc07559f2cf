"""Load a dataset into the standard shape every later step expects.

`load_splits` returns a `DatasetDict` with train / validation / test and these columns:
- classification: "text" (str) and "label" (ClassLabel: an id into `label_names`);
- ner: "tokens" (list of words) and "tags" (list of ClassLabel ids, one per word).

Label names: classification labels sorted as text, except that whole numbers keep numeric order
("2" before "10"); NER tags "O" first, then by entity type, then prefix. NER files may use IOB1,
IOB2 or BIOES; IOB1 is rewritten as IOB2 so training and scoring see IOB2 or BIOES only
(`LoadedData.tag_scheme` says which, for seqeval). A split the data lacks is carved from train
with the run's seed (stratified by label for classification), then `train_subset` /
`eval_subset` take seeded samples. Every user mistake is a DataError naming the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

from lab.config import DataConfig
from lab.data.builtin import RawBundle, load_builtin
from lab.data.readers import RawExamples, read_classification_file, read_ner_file
from lab.data.tags import check_tags, detect_scheme, iob1_to_iob2, ner_label_names
from lab.errors import DataError, Message

SPLITS = ("train", "validation", "test")
# More distinct labels than this share of the rows (and more than a handful) is a text column mapped as the label.
MAX_LABEL_SHARE = 0.5
MIN_LABELS_TO_SUSPECT = 20


@dataclass
class LoadedData:
    splits: DatasetDict
    label_names: list[str]
    source: str  # where the data came from, in words, for the run log and the app
    notes: list[str] = field(default_factory=list)  # what we did to the data that a user should know
    tag_scheme: str = ""  # NER: "IOB2" or "BIOES" (IOB1 input is converted); "" for classification


def load_splits(data_cfg: DataConfig, task: str, seed: int, log: Callable[[str], None] = print) -> LoadedData:
    """Read the configured files or built-in dataset and return train / validation / test.

    `log` hears which source was used (and a hub failure that fell back to the offline copy);
    the notes are returned, not logged, so the caller shows them once.
    """
    bundle = _read_raw(data_cfg, task, log)
    log(f"Data: {bundle.source}")
    notes = list(bundle.notes)
    if task == "ner":
        setting = data_cfg.tag_scheme if data_cfg.train_file else "auto"
        tag_scheme, label_names = _prepare_ner(bundle.splits, setting, notes)
    else:
        tag_scheme, label_names = "", _prepare_classification(bundle.splits)
    splits = {name: _encode(raw, task, label_names) for name, raw in bundle.splits.items()}
    _carve_missing(splits, data_cfg, task, seed, notes)
    _take_subsets(splits, data_cfg, task, seed, notes)
    return LoadedData(
        DatasetDict({name: splits[name] for name in SPLITS}), label_names, bundle.source, notes, tag_scheme
    )


# ---- reading -----------------------------------------------------------------------------------
def _read_raw(data_cfg: DataConfig, task: str, log: Callable[[str], None]) -> RawBundle:
    if data_cfg.train_file:
        return _read_user_files(data_cfg, task)
    if data_cfg.validation_file or data_cfg.test_file:
        raise DataError("A validation or test file needs a train_file too.")
    if not data_cfg.dataset:
        raise DataError("Choose a built-in dataset or give a train_file.")
    return load_builtin(data_cfg.dataset, task, data_cfg.source, log)


def _read_user_files(data_cfg: DataConfig, task: str) -> RawBundle:
    paths = {"train": data_cfg.train_file, "validation": data_cfg.validation_file, "test": data_cfg.test_file}
    splits: dict[str, RawExamples] = {}
    for split, path in paths.items():
        if not path:
            continue
        if task == "ner":
            splits[split] = read_ner_file(path, data_cfg.tokens_column, data_cfg.tags_column)
        else:
            splits[split] = read_classification_file(path, data_cfg.text_column, data_cfg.label_column)
    source = "your files: " + ", ".join(f"{split} {Path(path).name}" for split, path in paths.items() if path)
    return RawBundle(splits, source)


# ---- labels ------------------------------------------------------------------------------------
_WHOLE_NUMBER = re.compile(r"-?[0-9]+")


def _label_order(label: str) -> tuple[int, int, str]:
    """Whole numbers first in numeric order, then other labels alphabetically. ASCII digits only:
    "²" passes str.isdigit but int() refuses it."""
    if _WHOLE_NUMBER.fullmatch(label):
        return 0, int(label), ""
    return 1, 0, label


def _prepare_classification(splits: dict[str, RawExamples]) -> list[str]:
    train = splits["train"]
    label_names = sorted(set(train.labels), key=_label_order)
    if len(label_names) < 2:
        raise DataError(
            f"{train.origin}: every training example has the label {label_names[0]!r}; "
            "classification needs at least two classes.",
            code="single_label",
            origin=train.origin,
            label=repr(label_names[0]),
        )
    if len(label_names) > MAX_LABEL_SHARE * len(train.labels) and len(label_names) > MIN_LABELS_TO_SUSPECT:
        raise DataError(
            f"{Path(train.origin).name}: {len(label_names):,} different labels in {len(train.labels):,} "
            "rows: nearly every row is a class of its own, so the label column holds text, not classes. "
            "Choose the column that holds the class."
        )
    known = set(label_names)
    for raw in (splits[split] for split in ("validation", "test") if split in splits):
        for index, label in enumerate(raw.labels):
            if label not in known:
                raise DataError(
                    f"{raw.where(index)}: label {label!r} never appears in train "
                    f"({train.origin}); train labels are {', '.join(label_names)}.",
                    code="unknown_label",
                    where=raw.where(index),
                    label=repr(label),
                    origin=train.origin,
                    labels=", ".join(label_names),
                )
    return label_names


def _prepare_ner(splits: dict[str, RawExamples], setting: str, notes: list[str]) -> tuple[str, list[str]]:
    """Check every tag against the scheme, convert IOB1 to IOB2; return the scheme and label names."""
    train = splits["train"]
    scheme = detect_scheme(train.labels) if setting == "auto" else setting
    for raw in splits.values():
        check_tags(raw.labels, scheme, raw.where)
    if scheme == "IOB1":
        for raw in splits.values():
            raw.labels = [iob1_to_iob2(tags) for tags in raw.labels]
        notes.append("The tags are IOB1 (entities open with I-); they were converted to IOB2 for training and scoring.")
        scheme = "IOB2"
    label_names = ner_label_names(train.labels)
    if len(label_names) < 2:
        raise DataError(
            f"{train.origin}: every tag is 'O', so there is no entity to learn. Tag the entities "
            "(B-PER, I-PER, ...), or use classification for one label per text.",
            code="all_o",
            origin=train.origin,
        )
    known = set(label_names)
    for raw in (splits[split] for split in ("validation", "test") if split in splits):
        for index, tags in enumerate(raw.labels):
            for word, tag in enumerate(tags):
                if tag not in known:
                    raise DataError(
                        f"{raw.where(index, word)}: tag {tag!r} never appears in train "
                        f"({train.origin}); train tags are {', '.join(label_names)}."
                    )
    return scheme, label_names


def _encode(raw: RawExamples, task: str, label_names: list[str]) -> Dataset:
    ids = {name: index for index, name in enumerate(label_names)}
    if task == "ner":
        features = Features({"tokens": List(Value("string")), "tags": List(ClassLabel(names=label_names))})
        columns = {"tokens": raw.inputs, "tags": [[ids[tag] for tag in tags] for tags in raw.labels]}
    else:
        features = Features({"text": Value("string"), "label": ClassLabel(names=label_names)})
        columns = {"text": raw.inputs, "label": [ids[label] for label in raw.labels]}
    return Dataset.from_dict(columns, features=features)


# ---- splitting and sampling --------------------------------------------------------------------
def _split_off(dataset: Dataset, size: float | int, task: str, seed: int) -> tuple[Dataset, Dataset, bool]:
    """(rest, part) with `size` examples (a share or a count) in part; stratified when it can be.

    sklearn picks the indices: datasets' own `train_test_split(stratify_by_column=...)` reads the
    label column one row at a time and takes about 10 s on the 25,000 IMDB reviews; this takes 0.1 s.
    """
    import numpy as np
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(dataset))
    if task == "classification":
        # The arrow view reads the column in one go; plain dataset["label"] iterates rows.
        labels = np.asarray(dataset.with_format("arrow")["label"])
        try:
            rest, part = train_test_split(indices, test_size=size, random_state=seed, stratify=labels)
            return dataset.select(rest), dataset.select(part), True
        except ValueError:  # a class too rare to appear on both sides: fall back to a plain shuffle
            pass
    try:
        rest, part = train_test_split(indices, test_size=size, random_state=seed)
    except ValueError as exc:
        raise DataError(
            f"Too few training examples ({len(dataset)}) to carve validation and test splits "
            f"from ({exc}). Give more data, or a validation_file and a test_file."
        ) from None
    return dataset.select(rest), dataset.select(part), False


# The note each carving gets, by the splits carved and whether by label: one catalogue code each.
CARVED_NOTES = {
    (("validation", "test"), True): "note_carved_both_stratified",
    (("validation", "test"), False): "note_carved_both",
    (("validation",), True): "note_carved_validation_stratified",
    (("validation",), False): "note_carved_validation",
    (("test",), True): "note_carved_test_stratified",
    (("test",), False): "note_carved_test",
}


def _carve_missing(splits: dict[str, Dataset], data_cfg: DataConfig, task: str, seed: int, notes: list[str]) -> None:
    """Carve test, then validation, out of train when the data has none (shares of the original train)."""
    shares: dict[str, str] = {}  # each carved split -> its share of the original train, as the note shows it
    stratified = task == "classification"
    if "test" not in splits:
        splits["train"], splits["test"], ok = _split_off(splits["train"], data_cfg.test_share, task, seed)
        shares["test"] = f"{data_cfg.test_share:.0%}"
        stratified &= ok
    if "validation" not in splits:
        share = data_cfg.validation_share / (1 - data_cfg.test_share) if shares else data_cfg.validation_share
        splits["train"], splits["validation"], ok = _split_off(splits["train"], share, task, seed)
        shares = {"validation": f"{data_cfg.validation_share:.0%}", **shares}
        stratified &= ok
    if shares:
        carved = " and ".join(f"{name} ({share})" for name, share in shares.items())
        how = "stratified by label" if stratified else "not stratified"
        code = CARVED_NOTES[tuple(shares), stratified]
        notes.append(Message(f"{carved} carved from train (seed {seed}, {how}).", code, **shares, seed=seed))


def _sample(dataset: Dataset, count: int, task: str, seed: int) -> Dataset:
    if count >= len(dataset):
        return dataset
    return _split_off(dataset, len(dataset) - count, task, seed)[0]


def _take_subsets(splits: dict[str, Dataset], data_cfg: DataConfig, task: str, seed: int, notes: list[str]) -> None:
    if 0 < data_cfg.train_subset < len(splits["train"]):
        notes.append(
            f"Training on a seeded sample of {data_cfg.train_subset:,} of "
            f"{len(splits['train']):,} train examples (train_subset)."
        )
        splits["train"] = _sample(splits["train"], data_cfg.train_subset, task, seed)
    for split in ("validation", "test"):
        if 0 < data_cfg.eval_subset < len(splits[split]):
            notes.append(
                f"Evaluating on a seeded sample of {data_cfg.eval_subset:,} of "
                f"{len(splits[split]):,} {split} examples (eval_subset)."
            )
            splits[split] = _sample(splits[split], data_cfg.eval_subset, task, seed)
