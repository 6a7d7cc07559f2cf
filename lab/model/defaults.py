"""The defaults an empty field picks, per task and PEFT method: the learning rate, the head's rate and
the pooling, as the method registry (lab.methods.registry) records them, and what each method reached
at its defaults on the one-click budgets.

The rates depend on the run's budget: `steps`, the optimizer steps the run will take (the engine passes
the count it computed; training-set size, epochs and batch size all enter through it). Without it (a
form that has not loaded the data yet) they are the one-click rates.
"""

from __future__ import annotations

from typing import Optional

from lab.catalogue import DEFAULT_LANGUAGE, catalogue
from lab.config import RunConfig
from lab.errors import Message
from lab.methods.registry import HEAD_LEARNING_RATES, METHODS

# Read from the method registry (lab.methods.registry), where each rate's measurement is written.
DEFAULT_LEARNING_RATES: dict[str, dict[str, float]] = {
    task: {name: spec.learning_rates[task] for name, spec in METHODS.items()} for task in ("classification", "ner")
}
DEFAULT_HEAD_LEARNING_RATES: dict[str, float] = dict(HEAD_LEARNING_RATES)
DEFAULT_POOLING: dict[str, str] = {name: spec.pooling for name, spec in METHODS.items()}


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
            "adapter": (0.483, 0.018),
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
            "adapter": (0.853, 0.012),
        },
    },
}


def learning_rate_for(config: RunConfig, steps: Optional[int] = None) -> float:
    """The peak rate of a run of `steps` optimizer steps: the number the user gave, or the method's default
    for that budget."""
    given = config.train.fixed_learning_rate()
    return given or METHODS[config.peft.method].learning_rate(config.task, steps)


def head_learning_rate_for(config: RunConfig, steps: Optional[int] = None) -> float:
    """The task head's peak rate: the method's head rate for the budget, or its own rate where that is larger."""
    if config.peft.method == "head":
        return learning_rate_for(config, steps)
    if config.train.head_learning_rate:
        return config.train.head_learning_rate
    return max(learning_rate_for(config, steps), METHODS[config.peft.method].head_learning_rate(config.task, steps))


def short_budget_warning(config: RunConfig, steps: int) -> Optional[Message]:
    """A warning when a run of `steps` optimizer steps is shorter than what the method was measured to need."""
    needed = METHODS[config.peft.method].steps_needed.get(config.task)
    if needed is None or steps >= needed:
        return None
    # The English words are the catalogue's; the params carry the codes, so a page names them in its own language.
    words = catalogue(DEFAULT_LANGUAGE)
    method = words.get(f"method.{config.peft.method}.name", config.peft.method)
    task = words.get(f"task.{config.task}", config.task)
    return Message(
        f"{method[:1].upper()}{method[1:]} on {_mid_sentence(task)} needs about {needed} steps here; this run has "
        f"{steps}. Train more epochs or on more examples, or expect a weak score.",
        "short_budget",
        method=config.peft.method,
        task=config.task,
        needed=needed,
        steps=steps,
    )


def _mid_sentence(words: str) -> str:
    """A catalogue's heading words inside a sentence: "Named entities (NER)" as "named entities (NER)"; an
    acronym ("NER") keeps its capitals."""
    return words[:1].lower() + words[1:] if words[1:2].islower() else words
