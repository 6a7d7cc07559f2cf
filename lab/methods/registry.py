"""The PEFT methods the lab offers, one record each: the list of methods *is* this registry.

A record says what family the method belongs to (low-rank, virtual tokens, adapts chosen modules,
merges into the weights, saves an adapter instead of a model), the defaults an empty field picks
(learning rate and head rate per task, pooling), which PeftSettings fields it reads (the New run
form shows those) and how it builds its model. `lab.config` reads the method names and families from
here, `lab.model.defaults` the rates and pooling, `lab.model.adapting` the builders, the standalone
script and the export their rules. Adding a method: its record below, its module if peft has none
(like `lab.methods.adapter`), and its words in ui/locales (`method.NAME.name` and `.what`).

This module imports no torch, no peft and nothing of the lab outside lab.methods: lab.config imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from lab.methods import peft_configs

# How a method turns the loaded model into the one it trains: `model` trains it whole, `head` freezes all
# but the task head, `peft` wraps it with peft's config from `peft_config`, `adapter` adds the lab's
# bottleneck adapters (lab.methods.adapter).
Builder = Literal["model", "head", "peft", "adapter"]

# The rate of the freshly initialised head beside the encoder or the adapters: at their small rate the head
# lags and the first evaluations sit on the single-class or all-O plateau (README, "Default learning rates").
HEAD_LEARNING_RATES: Mapping[str, float] = {"classification": 1e-2, "ner": 1e-2}
LOW_RANK_SETTINGS = ("r", "alpha", "lora_dropout", "target_modules", "merge_adapter")


@dataclass(frozen=True)
class ShortBudget:
    """The rates an empty field picks for a run of fewer than `below_steps` optimizer steps (a small training
    set, a few epochs): the one-click rates were measured on budgets of 94 to 225 steps and do not carry over
    to 45 (README, "Defaults for small budgets"; `python -m bench.quality --small-set ner-240` measures them).
    A rate left None keeps the method's usual one."""

    below_steps: int
    learning_rate: Optional[float] = None
    head_learning_rate: Optional[float] = None


# In a short NER run a head beside a frozen encoder lags at 1e-2: 5e-2 lifted every method that freezes it on
# ner-240 and lowered full fine-tuning, which gets no band (README, "Defaults for small budgets"). The band's edge,
# 100 steps, lies between that set's 45 and the NER card's 225, which keeps 1e-2.
SHORT_BUDGETS: Mapping[str, ShortBudget] = {"ner": ShortBudget(below_steps=100, head_learning_rate=5e-2)}


@dataclass(frozen=True)
class MethodSpec:
    """One PEFT method. Rates were measured on the offline MiniLM (README, "Quality benchmark";
    `python -m bench.lr_sweep` and `python -m bench.quality` reproduce them): small models and PEFT
    methods want much larger rates than full fine-tuning of bert-base."""

    name: str
    builds: Builder
    learning_rates: Mapping[str, float]  # per task: what an empty train.learning_rate picks
    settings: tuple[str, ...] = ()  # the PeftSettings fields it reads, in the form's order
    head_learning_rates: Mapping[str, float] = field(default_factory=lambda: dict(HEAD_LEARNING_RATES))
    # Classification on a model with a BERT-style pooler: what `model.pooling: auto` picks (README, "Pooling":
    # mean pooling won for every method that freezes the encoder; MiniLM was trained with it).
    pooling: str = "mean"
    low_rank: bool = False  # learns a low-rank update of chosen weight matrices
    virtual_tokens: bool = False  # learns virtual tokens in front of the input (logits grow for NER prompts)
    targets_modules: bool = False  # reads peft.target_modules
    mergeable: bool = False  # its update folds into the base weights (merge, ONNX without peft)
    attention_targets: bool = False  # peft has no default modules for it: the lab picks the attention's
    peft_config: Optional[Callable[..., Any]] = None  # builds: peft; see lab.methods.peft_configs
    # Per task: the rates for short runs, where they differ from the ones above.
    short_budgets: Mapping[str, ShortBudget] = field(default_factory=lambda: dict(SHORT_BUDGETS))
    # Per task: about how many optimizer steps the method needs at its defaults before it scores at all on a
    # small generated set (entity F1 0.25 on NER; README, "Defaults for small budgets"). The pre-flight warns
    # a shorter run. None for classification: on topics-240 every method ended at accuracy 0.95 or more after
    # 45 steps.
    steps_needed: Mapping[str, int] = field(default_factory=dict)

    @property
    def saves_adapter(self) -> bool:
        """Saves only what it trained, to load over the base model; full and head-only save a whole model."""
        return self.builds in ("peft", "adapter")

    def short_budget(self, task: str, steps: Optional[int]) -> Optional[ShortBudget]:
        """The short-budget rates that apply to a run of `steps` optimizer steps (None: steps unknown)."""
        band = self.short_budgets.get(task)
        return band if band is not None and steps is not None and steps < band.below_steps else None

    def learning_rate(self, task: str, steps: Optional[int] = None) -> float:
        """What an empty train.learning_rate picks for a run of `steps` optimizer steps."""
        band = self.short_budget(task, steps)
        return band.learning_rate if band and band.learning_rate else self.learning_rates[task]

    def head_learning_rate(self, task: str, steps: Optional[int] = None) -> float:
        """What an empty train.head_learning_rate picks (before the floor at the method's own rate)."""
        band = self.short_budget(task, steps)
        return band.head_learning_rate if band and band.head_learning_rate else self.head_learning_rates[task]


METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    if spec.name in METHODS:
        raise ValueError(f"PEFT method {spec.name!r} is registered twice.")
    if (spec.builds == "peft") != (spec.peft_config is not None):
        raise ValueError(f"PEFT method {spec.name!r}: a peft config builder goes with builds='peft' only.")
    METHODS[spec.name] = spec
    return spec


def method_spec(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"Unknown PEFT method {name!r}; choose one of {', '.join(METHODS)}.") from None


def names_where(test: Callable[[MethodSpec], bool]) -> tuple[str, ...]:
    """The names of the registered methods that pass `test`, in registration order."""
    return tuple(name for name, spec in METHODS.items() if test(spec))


# steps_needed: the step from which validation entity F1 stays at or above 0.25 on ner-240, evaluated every 5 steps
# over 3 seeds (`python -m bench.quality --small-set ner-240 --set train.eval_steps=5`; README, "Defaults for small
# budgets").
register_method(
    MethodSpec(
        "full",
        "model",
        learning_rates={"classification": 5e-5, "ner": 3e-4},
        pooling="pooler",
        short_budgets={},
        steps_needed={"ner": 15},
    )
)
# A head on frozen features moves too little in 45 steps at 1e-2: on ner-240 (45 steps) entity F1 0.200 at 1e-2,
# 0.247 at 3e-2, 0.274 at 5e-2 (`python -m bench.lr_sweep --small-set ner-240 --methods head`). The band's edge,
# 100 steps, lies between that budget and the one-click card's 225, which keeps 1e-2.
register_method(
    MethodSpec(
        "head",
        "head",
        learning_rates={"classification": 5e-2, "ner": 1e-2},
        short_budgets={"ner": ShortBudget(below_steps=100, learning_rate=5e-2)},
        steps_needed={"ner": 15},
    )
)
register_method(
    MethodSpec(
        "lora",
        "peft",
        learning_rates={"classification": 1e-3, "ner": 5e-3},
        settings=LOW_RANK_SETTINGS,
        low_rank=True,
        targets_modules=True,
        mergeable=True,
        peft_config=peft_configs.lora,
        steps_needed={"ner": 15},
    )
)
register_method(
    MethodSpec(
        "adalora",
        "peft",
        learning_rates={"classification": 2e-3, "ner": 6e-3},
        settings=("r", "adalora_init_r", "alpha", "lora_dropout", "target_modules", "merge_adapter"),
        low_rank=True,
        targets_modules=True,
        mergeable=True,
        peft_config=peft_configs.adalora,
        steps_needed={"ner": 20},
    )
)
register_method(
    MethodSpec(
        "ia3",
        "peft",
        learning_rates={"classification": 3e-2, "ner": 1e-2},
        settings=("target_modules",),
        targets_modules=True,
        mergeable=True,
        peft_config=peft_configs.ia3,
        steps_needed={"ner": 15},
    )
)
register_method(
    MethodSpec(
        "prompt",
        "peft",
        learning_rates={"classification": 2e-2, "ner": 2e-2},
        settings=("num_virtual_tokens",),
        virtual_tokens=True,
        peft_config=peft_configs.prompt,
        steps_needed={"ner": 35},
    )
)
register_method(
    MethodSpec(
        "prefix",
        "peft",
        learning_rates={"classification": 2e-2, "ner": 1e-2},
        settings=("num_virtual_tokens",),
        virtual_tokens=True,
        peft_config=peft_configs.prefix,
        steps_needed={"ner": 30},
    )
)
register_method(
    MethodSpec(
        "loha",
        "peft",
        learning_rates={"classification": 6e-3, "ner": 6e-3},
        settings=LOW_RANK_SETTINGS,
        low_rank=True,
        targets_modules=True,
        mergeable=True,
        attention_targets=True,
        peft_config=peft_configs.loha,
        steps_needed={"ner": 15},
    )
)
register_method(
    MethodSpec(
        "lokr",
        "peft",
        learning_rates={"classification": 5e-3, "ner": 1e-2},
        settings=LOW_RANK_SETTINGS,
        low_rank=True,
        targets_modules=True,
        mergeable=True,
        attention_targets=True,
        peft_config=peft_configs.lokr,
        steps_needed={"ner": 15},
    )
)
# Bottleneck adapters sit on the residual path of every layer, so a rate that suits LoRA overwhelms them
# (README, the NER quality table: the rates tried on WNUT-16).
register_method(
    MethodSpec(
        "adapter",
        "adapter",
        learning_rates={"classification": 1e-3, "ner": 2e-3},
        settings=("adapter_layout", "bottleneck", "adapter_nonlinearity"),
        steps_needed={"ner": 15},
    )
)
