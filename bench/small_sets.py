"""`python -m bench.small_sets`: small generated data sets, the size users often bring, with test names unseen.

Two tasks, each at 240 and 1,000 training examples (validation 100, test 200), deterministic from a seed:

- `ner-240`, `ner-1000`: short English sentences in IOB2 with PER / LOC / ORG names (invented), written as CoNLL
  files (`train.conll`, `validation.conll`, `test.conll`). The names come from two disjoint pools, and the
  48 sentence templates are split likewise: training draws from one part, validation and test from the
  other, so a model scores only by what it learned of what a name looks like and where names sit, never
  by remembering a name or a sentence.
- `topics-240`, `topics-1000`: one-sentence texts about four topics (sport, business, science, food) as CSV
  files with `text` and `label` columns; validation and test sentences are built from topic words that
  never occur in training, so a model scores by meaning, not by a memorised keyword.

    python -m bench.small_sets --out /tmp/small            # writes every set under /tmp/small/NAME/
    python -m lab train --task ner --train-file /tmp/small/ner-240/train.conll \\
        --validation-file /tmp/small/ner-240/validation.conll --test-file /tmp/small/ner-240/test.conll

`bench.quality --small-set NAME` and `bench.lr_sweep --small-set NAME` write the set they need themselves.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

SIZES = (240, 1000)
VALIDATION_SIZE = 100
TEST_SIZE = 200
TASKS = {"ner": "ner", "topics": "classification"}
SET_NAMES = tuple(f"{kind}-{size}" for kind in TASKS for size in SIZES)


# Names are invented from these syllables, so neither the training set nor the pretrained model has seen
# them: a real "Lisbon" is a place to MiniLM before any training, and made the set too easy (full fine-tuning
# 0.95 and LoRA 0.87 entity F1 after 15 steps).
ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "st", "tr", "sh")
VOWELS = ("a", "e", "i", "o", "u", "ai", "ou", "ei")
CODAS = ("", "", "", "n", "r", "l", "s", "th", "nd", "rk")
NAMES_PER_KIND = 60  # per kind (first name, surname, place, organisation), before the split into two pools


def invented_names(count: int, rng: random.Random, taken: set[str]) -> list[str]:
    """`count` capitalised words of two or three syllables, none in `taken` (which they are added to)."""
    names: list[str] = []
    while len(names) < count:
        syllables = [rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(rng.choice((2, 2, 3)))]
        name = ("".join(syllables) + rng.choice(CODAS)).capitalize()
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


ORG_SUFFIXES = ("Group", "Bank", "Systems", "Motors", "Labs", "Foods", "Airlines", "Energy")

# {PER}, {LOC} and {ORG} are filled with a name of that kind; every other word is tagged O.
NER_TEMPLATES = (
    "{PER} flew to {LOC} on Monday .",
    "{PER} works for {ORG} in {LOC} .",
    "{ORG} opened a new office in {LOC} .",
    "Yesterday {PER} met {PER} at the station .",
    "{PER} was born in {LOC} and moved to {LOC} .",
    "Shares of {ORG} fell after the report .",
    "{ORG} hired {PER} as its new director .",
    "The mayor of {LOC} praised {ORG} .",
    "{PER} said the trip to {LOC} was long .",
    "According to {PER} , {ORG} will expand .",
    "We drove from {LOC} to {LOC} last week .",
    "{PER} and {PER} founded {ORG} in {LOC} .",
    "A spokesman for {ORG} declined to comment .",
    "{PER} lives near the old harbour of {LOC} .",
    "The concert in {LOC} was organised by {ORG} .",
    "{ORG} signed a deal with {ORG} .",
    "Police in {LOC} are looking for {PER} .",
    "{PER} won the race in {LOC} .",
    "My friend {PER} visits {LOC} every summer .",
    "{ORG} reported record profits this year .",
    "The train to {LOC} was delayed again .",
    "{PER} wrote a letter to {PER} .",
    "Workers at {ORG} went on strike .",
    "{PER} , a lawyer from {LOC} , joined {ORG} .",
    "Flights between {LOC} and {LOC} were cancelled .",
    "{PER} thanked {ORG} for the support .",
    "The team from {LOC} beat the visitors easily .",
    "Investors expect {ORG} to buy {ORG} .",
    "{PER} spoke to reporters in {LOC} on Friday .",
    "Last night {PER} cooked dinner for {PER} .",
    "Tourists in {LOC} love the food .",
    "{ORG} moved its headquarters to {LOC} .",
    "The new book by {PER} is about {LOC} .",
    "Engineers from {ORG} visited {LOC} .",
    "{PER} called {ORG} to complain .",
    "It rained all day in {LOC} .",
    "{PER} has coached the national team since March .",
    "Prices in {LOC} rose faster than anywhere else .",
    "The museum in {LOC} bought a painting from {PER} .",
    "{ORG} recalled thousands of cars last month .",
    "Students from {LOC} protested outside {ORG} .",
    "{PER} sold the house to {PER} for a fair price .",
    "Nobody at {ORG} knew where {PER} had gone .",
    "The festival returns to {LOC} in June .",
    "{PER} , who runs {ORG} , denied the rumours .",
    "Heavy snow closed the roads around {LOC} .",
    "Did {PER} really leave {ORG} ?",
    "Customers of {ORG} waited hours on the phone .",
)

# Frames every topic shares, so the topic's words are the only clue; {} is one of them.
TOPIC_FRAMES = (
    "Everyone talked about the {} yesterday .",
    "The news mentioned the {} again .",
    "I read a long article about the {} .",
    "My sister told me about the {} .",
    "There was a report on the {} this morning .",
    "Nobody expected the {} to matter so much .",
    "We argued about the {} over lunch .",
    "The radio show was all about the {} .",
    "He posted a photo of the {} online .",
    "Have you heard about the {} ?",
)
# Per topic: two disjoint halves of its words (training uses the first, validation and test the second).
TOPICS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sport": (
        (
            "football final",
            "tennis match",
            "marathon",
            "penalty kick",
            "striker",
            "league title",
            "goalkeeper",
            "relay race",
            "home team",
            "cup semi-final",
            "referee",
            "world record",
        ),
        (
            "basketball game",
            "cycling stage",
            "boxing bout",
            "free throw",
            "midfielder",
            "championship trophy",
            "sprint",
            "hockey rink",
            "swimming heat",
            "olympic medal",
            "scoreboard",
            "rugby scrum",
        ),
    ),
    "business": (
        (
            "quarterly earnings",
            "merger",
            "share price",
            "profit warning",
            "stock market",
            "dividend",
            "takeover bid",
            "interest rate",
            "annual revenue",
            "bond yield",
            "sales forecast",
            "budget deficit",
        ),
        (
            "acquisition",
            "inflation figure",
            "balance sheet",
            "investment fund",
            "trade tariff",
            "ipo",
            "bankruptcy filing",
            "export growth",
            "currency exchange",
            "retail sales",
            "pension fund",
            "tax cut",
        ),
    ),
    "science": (
        (
            "telescope image",
            "dna sequence",
            "particle collider",
            "vaccine trial",
            "chemical reaction",
            "fossil record",
            "black hole",
            "microscope",
            "climate model",
            "genome",
            "laser experiment",
            "neuron",
        ),
        (
            "quantum computer",
            "protein structure",
            "planet orbit",
            "cell membrane",
            "rocket engine",
            "bacteria sample",
            "magnetic field",
            "brain scan",
            "electron beam",
            "galaxy survey",
            "enzyme",
            "volcano",
        ),
    ),
    "food": (
        (
            "chocolate cake",
            "tomato soup",
            "pasta sauce",
            "grilled fish",
            "apple pie",
            "curry recipe",
            "fresh bread",
            "roast chicken",
            "rice pudding",
            "noodle broth",
            "cheese platter",
            "spicy stew",
        ),
        (
            "lemon tart",
            "vegetable lasagne",
            "garlic butter",
            "mushroom risotto",
            "pancake batter",
            "beef burger",
            "fruit salad",
            "onion rings",
            "potato gratin",
            "fried dumplings",
            "honey cookies",
            "bean chili",
        ),
    ),
}


@dataclass(frozen=True)
class SmallSet:
    """Where a generated set's files are, and the config fields that point a run at them."""

    name: str
    task: str  # the lab's task: ner or classification
    folder: Path

    @property
    def files(self) -> dict[str, Path]:
        suffix = "conll" if self.task == "ner" else "csv"
        return {split: self.folder / f"{split}.{suffix}" for split in ("train", "validation", "test")}

    def settings(self) -> list[str]:
        """`section.field=value` settings that make a run read this set and nothing else."""
        files = self.files
        return [
            "data.dataset=",
            f"data.train_file={files['train']}",
            f"data.validation_file={files['validation']}",
            f"data.test_file={files['test']}",
            "data.train_subset=0",
            "data.eval_subset=0",
        ]


def parse_name(name: str) -> tuple[str, int]:
    kind, _, size = name.partition("-")
    if kind not in TASKS or not size.isdigit() or int(size) < 1:
        raise ValueError(f"Unknown small set {name!r}; choose from {', '.join(SET_NAMES)} (or KIND-SIZE).")
    return kind, int(size)


def _halves(words: Sequence[str], rng: random.Random) -> tuple[list[str], list[str]]:
    shuffled = list(words)
    rng.shuffle(shuffled)
    middle = len(shuffled) // 2
    return shuffled[:middle], shuffled[middle:]


@dataclass(frozen=True)
class NamePool:
    first: list[str]
    last: list[str]
    places: list[str]
    org_stems: list[str]

    def name(self, kind: str, rng: random.Random) -> list[str]:
        if kind == "PER":
            return [rng.choice(self.first), rng.choice(self.last)] if rng.random() < 0.7 else [rng.choice(self.first)]
        if kind == "LOC":
            return [rng.choice(self.places)]
        return (
            [rng.choice(self.org_stems), rng.choice(ORG_SUFFIXES)]
            if rng.random() < 0.8
            else [rng.choice(self.org_stems)]
        )


def name_pools(seed: int) -> tuple[NamePool, NamePool]:
    """Two pools with no first name, surname, place or organisation stem in common: training's, evaluation's."""
    rng = random.Random(seed)
    taken: set[str] = set()
    halves = [_halves(invented_names(NAMES_PER_KIND, rng, taken), rng) for _ in range(4)]
    return NamePool(*(half[0] for half in halves)), NamePool(*(half[1] for half in halves))


def template_pools(seed: int) -> tuple[list[str], list[str]]:
    """The sentence templates, two thirds for training and the rest for validation and test: a model has to
    find names in sentences it never saw, not remember which slot of a known sentence holds one."""
    shuffled = list(NER_TEMPLATES)
    random.Random(f"{seed}-templates").shuffle(shuffled)
    cut = len(shuffled) * 2 // 3
    return shuffled[:cut], shuffled[cut:]


def ner_sentences(
    count: int, pool: NamePool, templates: Sequence[str], rng: random.Random
) -> list[list[tuple[str, str]]]:
    """`count` sentences as (word, IOB2 tag) pairs from `templates`, names drawn from `pool`."""
    sentences = []
    for _ in range(count):
        words: list[tuple[str, str]] = []
        for piece in rng.choice(templates).split():
            kind = piece[1:-1] if piece in ("{PER}", "{LOC}", "{ORG}") else None
            if kind is None:
                words.append((piece, "O"))
                continue
            name = pool.name(kind, rng)
            words += [(word, f"{'B' if i == 0 else 'I'}-{kind}") for i, word in enumerate(name)]
        sentences.append(words)
    return sentences


def topic_sentences(count: int, evaluation: bool, rng: random.Random) -> list[tuple[str, str]]:
    """`count` (text, topic) pairs, balanced over the topics; evaluation sentences use the held-out words."""
    labels = list(TOPICS)
    rows = []
    for index in range(count):
        label = labels[index % len(labels)]
        training_words, evaluation_words = TOPICS[label]
        rows.append(
            (rng.choice(TOPIC_FRAMES).format(rng.choice(evaluation_words if evaluation else training_words)), label)
        )
    rng.shuffle(rows)
    return rows


def write_conll(path: Path, sentences: list[list[tuple[str, str]]]) -> None:
    path.write_text("".join("".join(f"{w} {t}\n" for w, t in s) + "\n" for s in sentences), encoding="utf-8")


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def write_set(name: str, root: Path, seed: int = 42) -> SmallSet:
    """Writes the set `name` (e.g. ner-240) under root/name/ (same files for the same seed) and returns it."""
    kind, size = parse_name(name)
    small = SmallSet(name, TASKS[kind], Path(root) / name)
    small.folder.mkdir(parents=True, exist_ok=True)
    files = small.files
    rng = random.Random(f"{seed}-{name}")
    if kind == "ner":
        training_pool, evaluation_pool = name_pools(seed)
        training_templates, evaluation_templates = template_pools(seed)
        write_conll(files["train"], ner_sentences(size, training_pool, training_templates, rng))
        write_conll(files["validation"], ner_sentences(VALIDATION_SIZE, evaluation_pool, evaluation_templates, rng))
        write_conll(files["test"], ner_sentences(TEST_SIZE, evaluation_pool, evaluation_templates, rng))
    else:
        write_csv(files["train"], topic_sentences(size, False, rng))
        write_csv(files["validation"], topic_sentences(VALIDATION_SIZE, True, rng))
        write_csv(files["test"], topic_sentences(TEST_SIZE, True, rng))
    return small


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.small_sets", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Folder to write the sets into (one folder each).")
    parser.add_argument("--sets", default=",".join(SET_NAMES), help="Comma-separated set names (KIND-SIZE).")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    for name in [n.strip() for n in args.sets.split(",") if n.strip()]:
        try:
            small = write_set(name, args.out, args.seed)
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
        print(f"{name}: {small.task}, {', '.join(str(p) for p in small.files.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
