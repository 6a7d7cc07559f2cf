"""The defaults an empty field picks, per task and PEFT method: the learning rate and the pooling.

Measured on the offline MiniLM (README, "Quality benchmark"; `python -m bench.quality` and
`python -m bench.lr_sweep` reproduce them). Small models and PEFT methods want much larger rates than
full fine-tuning of bert-base.
"""

from __future__ import annotations

from lab.config import RunConfig

DEFAULT_LEARNING_RATES: dict[str, dict[str, float]] = {
    "classification": {
        "full": 5e-5,
        "head": 5e-2,
        "lora": 1e-3,
        "adalora": 2e-3,
        "ia3": 3e-2,
        "prompt": 2e-2,
        "prefix": 2e-2,
        "loha": 6e-3,
        "lokr": 5e-3,
    },
    "ner": {
        "full": 3e-4,
        "head": 1e-2,
        "lora": 5e-3,
        "adalora": 6e-3,
        "ia3": 1e-2,
        "prompt": 2e-2,
        "prefix": 1e-2,
        "loha": 6e-3,
        "lokr": 1e-2,
    },
}

# The rate of the freshly initialised head beside the encoder or the adapters (head-only training uses
# its own rate above). At the encoder's or the adapters' small rate the head lags, and the first
# evaluations sit on the single-class or all-O plateau. Measured at the one-click budgets, 50 steps
# (validation at step 25, validation at 50, test at 50): IMDB LoRA (rate 1e-3) with the head at 1e-3:
# accuracy 0.500 / 0.740 / 0.725, at 1e-2: 0.735 / 0.740 / 0.780, 3e-2: 0.730 / 0.730 / 0.765,
# 5e-2: 0.685 / 0.725 / 0.765; WNUT-16 full fine-tuning (3e-4) with the head at 3e-4: entity F1
# 0.000 / 0.000 / 0.000, at 3e-3: 0.000 / 0.016 / 0.031, at 1e-2: 0.149 / 0.345 / 0.376; WNUT-16 LoRA
# (2e-3) with the head at 2e-3: 0.000 / 0.000 / 0.000, at 1e-2: 0.190 / 0.253 / 0.289.
DEFAULT_HEAD_LEARNING_RATES: dict[str, float] = {"classification": 1e-2, "ner": 1e-2}

# Classification on a BERT-style model with a pooler: what `model.pooling: auto` means per method.
# Measured (README, "Pooling"): offline IMDB, 1,000 reviews, 1 epoch, accuracy on 300 test reviews,
# frozen pooler / trained pooler / mean: head 0.603 / 0.577 / 0.780, LoRA 0.633 / 0.677 / 0.740,
# AdaLoRA 0.503 / 0.653 / 0.747. all-MiniLM-L6-v2 was trained with mean pooling; its pooler never was.
DEFAULT_POOLING: dict[str, str] = {
    "full": "pooler",
    "head": "mean",
    "lora": "mean",
    "adalora": "mean",
    "ia3": "mean",
    "prompt": "mean",
    "prefix": "mean",
    "loha": "mean",
    "lokr": "mean",
}


# What each method reaches at its defaults on the Home cards' budgets, offline MiniLM (`python -m bench.quality
# --preset one-click`, README "Quality benchmark"): mean and spread (population std) of the held-out test
# metric over the seeds listed, all scored on one test split (data.split_seed 42). The New run page shows
# them beside the method, so nobody expects more of a short run than it gives.
ONE_CLICK_RESULTS: dict[str, dict] = {
    "ner": {
        "dataset": "WNUT-16",
        "metric": "entity F1",
        "seeds": (42, 7, 1234),
        "results": {
            "full": (0.522, 0.011),
            "head": (0.269, 0.012),
            "lora": (0.478, 0.029),
            "adalora": (0.457, 0.013),
            "ia3": (0.445, 0.012),
            "prompt": (0.345, 0.010),
            "prefix": (0.410, 0.027),
            "loha": (0.439, 0.014),
            "lokr": (0.438, 0.004),
        },
    },
    "classification": {
        "dataset": "IMDB",
        "metric": "accuracy",
        "seeds": (42, 7, 1234),
        "results": {
            "full": (0.833, 0.013),
            "head": (0.758, 0.012),
            "lora": (0.853, 0.008),
            "adalora": (0.810, 0.004),
            "ia3": (0.855, 0.000),
            "prompt": (0.765, 0.025),
            "prefix": (0.843, 0.016),
            "loha": (0.835, 0.019),
            "lokr": (0.833, 0.026),
        },
    },
}


def learning_rate_for(config: RunConfig) -> float:
    return config.train.learning_rate or DEFAULT_LEARNING_RATES[config.task][config.peft.method]


def head_learning_rate_for(config: RunConfig) -> float:
    """The task head's peak rate: DEFAULT_HEAD_LEARNING_RATES, or the method's own where that is larger."""
    if config.peft.method == "head":
        return learning_rate_for(config)
    if config.train.head_learning_rate:
        return config.train.head_learning_rate
    return max(learning_rate_for(config), DEFAULT_HEAD_LEARNING_RATES[config.task])
