"""The Home page's one-click runs: small configs that show learning within minutes on a laptop CPU.

Two environment variables make them smaller for demos and tests:
- `LAB_ONE_CLICK_MODEL`: train this model (hub id or local folder) instead of the offline MiniLM.
- `LAB_ONE_CLICK_SET`: `;`-separated `section.field=value` overrides (like the CLI's --set),
  e.g. `train.max_steps=300;data.train_subset=400`; prefix one with a card key (`imdb:` or
  `conll:`) to change only that card, e.g. `conll:train.max_steps=100000`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from lab.config import DataConfig, ModelConfig, PeftSettings, RunConfig, TrainConfig

ONE_CLICK_MODEL_ENV = "LAB_ONE_CLICK_MODEL"
ONE_CLICK_SET_ENV = "LAB_ONE_CLICK_SET"


@dataclass(frozen=True)
class OneClick:
    """A card: its run, and the names under which the app's catalogue has its words
    (`one_click.KEY.PLAN.title`, `.description`, and `.offline` when `offline_substitute`)."""

    key: str  # imdb or conll
    plan: str  # laptop (the shipped MiniLM, minutes on a CPU) or recipe (the published recipe, on a GPU)
    config: RunConfig
    offline_substitute: bool = False  # the card runs other data than its title says (no CoNLL-2003 offline)


def one_click_runs(offline: bool, gpu: bool = False) -> list[OneClick]:
    """The Home page's cards, chosen here and nowhere else: with the hub and a GPU, the published
    recipes (a cased BERT on the whole CoNLL-2003, DistilBERT on the whole IMDB); otherwise the shipped
    MiniLM on budgets that finish within minutes on a laptop CPU (CoNLL-2003 from the hub when it
    answers, else WNUT-16), evaluated early and often so the first per-label table comes soon."""
    cards = _recipe_cards() if gpu and not offline else _laptop_cards(offline)
    return [OneClick(c.key, c.plan, _with_env_overrides(c.key, c.config), c.offline_substitute) for c in cards]


def _laptop_cards(offline: bool) -> list[OneClick]:
    imdb = RunConfig(
        task="classification",
        name="IMDB sentiment (one click)",
        data=DataConfig(dataset="imdb", train_subset=1500, eval_subset=200),
        peft=PeftSettings(method="lora", r=8, alpha=16),
        # 256 tokens: reviews are long, and at 128 the best method stayed at 0.832 over 3 seeds (README).
        train=TrainConfig(epochs=1.0, max_length=256, train_batch_size=16, eval_steps=25, logging_steps=5),
    )
    ner = RunConfig(
        task="ner",
        name="CoNLL-2003 NER (one click)" if not offline else "WNUT-16 NER (one click)",
        data=DataConfig(dataset="wnut16" if offline else "conll2003", train_subset=1200, eval_subset=200),
        peft=PeftSettings(method="full"),
        # No warm-up: with the default 6% (13 steps) the first table, at step 25, read entity F1 0.000 (every
        # word O); straight at the peak rate it read 0.226 and stayed ahead after (python -m bench.first_step's
        # notes in the README, "What the one-click cards show first").
        train=TrainConfig(
            epochs=3.0, max_length=64, train_batch_size=16, eval_steps=25, logging_steps=5, warmup_ratio=0.0
        ),
    )
    return [OneClick("imdb", "laptop", imdb), OneClick("conll", "laptop", ner, offline_substitute=offline)]


def _recipe_cards() -> list[OneClick]:
    """The settings of the recipes behind the published figures (HF's text-classification tutorial
    for DistilBERT on IMDB, the token-classification example for bert-base-cased on CoNLL-2003)."""
    imdb = RunConfig(
        task="classification",
        name="IMDB sentiment (one click, DistilBERT)",
        data=DataConfig(dataset="imdb", train_subset=0, eval_subset=0),
        model=ModelConfig(name_or_path="distilbert-base-uncased"),
        peft=PeftSettings(method="full"),
        train=TrainConfig(
            learning_rate=2e-5,
            epochs=2.0,
            max_length=512,
            train_batch_size=32,
            eval_steps=200,
            logging_steps=20,
            warmup_ratio=0.0,
            weight_decay=0.01,
        ),
    )
    ner = RunConfig(
        task="ner",
        name="CoNLL-2003 NER (one click, BERT cased)",
        data=DataConfig(dataset="conll2003", train_subset=0, eval_subset=0),
        model=ModelConfig(name_or_path="bert-base-cased"),
        peft=PeftSettings(method="full"),
        train=TrainConfig(
            learning_rate=5e-5,
            epochs=3.0,
            max_length=128,
            train_batch_size=32,
            eval_steps=200,
            logging_steps=20,
            warmup_ratio=0.0,
            weight_decay=0.0,
        ),
    )
    return [OneClick("imdb", "recipe", imdb), OneClick("conll", "recipe", ner)]


def cuda_present() -> bool:
    """Whether this machine has an NVIDIA GPU, without importing torch (10-30 s on a small CPU) when
    nothing has yet: the driver lists its GPUs under /proc."""
    if "torch" in sys.modules:
        return sys.modules["torch"].cuda.is_available()
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


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
