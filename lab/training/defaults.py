"""The defaults an empty field picks, per task and PEFT method: the learning rate and the pooling.

Measured on the offline MiniLM (README, "Quality benchmark"; `python -m bench.quality` and
`python -m bench.lr_sweep` reproduce them). Small models and PEFT methods want much larger rates than
full fine-tuning of bert-base.
"""
from __future__ import annotations

from lab.config import RunConfig

DEFAULT_LEARNING_RATES: dict[str, dict[str, float]] = {
    "classification": {"full": 5e-5, "head": 5e-2, "lora": 1e-3, "adalora": 2e-3, "ia3": 3e-2,
                       "prompt": 2e-2, "prefix": 2e-2, "loha": 6e-3, "lokr": 5e-3},
    "ner": {"full": 3e-4, "head": 1e-2, "lora": 2e-3, "adalora": 6e-3, "ia3": 1e-2,
            "prompt": 2e-2, "prefix": 1e-2, "loha": 6e-3, "lokr": 1e-2},
}

# Classification on a BERT-style model with a pooler: what `model.pooling: auto` means per method.
# Measured (README, "Pooling"): offline IMDB, 1,000 reviews, 1 epoch, accuracy on 300 test reviews,
# frozen pooler / trained pooler / mean: head 0.603 / 0.577 / 0.780, LoRA 0.633 / 0.677 / 0.740,
# AdaLoRA 0.503 / 0.653 / 0.747. all-MiniLM-L6-v2 was trained with mean pooling; its pooler never was.
DEFAULT_POOLING: dict[str, str] = {
    "full": "pooler", "head": "mean", "lora": "mean", "adalora": "mean", "ia3": "mean", "prompt": "mean",
    "prefix": "mean", "loha": "mean", "lokr": "mean",
}


def learning_rate_for(config: RunConfig) -> float:
    return config.train.learning_rate or DEFAULT_LEARNING_RATES[config.task][config.peft.method]
