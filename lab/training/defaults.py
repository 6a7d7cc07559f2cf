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
DEFAULT_POOLING: dict[str, str] = {
    "full": "pooler", "head": "pooler", "lora": "pooler-trained", "adalora": "pooler-trained",
    "ia3": "pooler-trained", "prompt": "pooler-trained", "prefix": "pooler-trained", "loha": "pooler-trained",
    "lokr": "pooler-trained",
}


def learning_rate_for(config: RunConfig) -> float:
    return config.train.learning_rate or DEFAULT_LEARNING_RATES[config.task][config.peft.method]
