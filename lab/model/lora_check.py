"""LoRA from scratch, measured on the chosen model: what a low-rank method's explainer promises, checked
with the form's own model, task, label count and settings.

`check_low_rank` builds the model once, copies it, wraps the copy with the method (lab.model.adapting, as
a run would) and runs both on two fixed example sentences:

(a) the largest logit difference before any step: the update's zero-initialised factor (LoRA's B) makes
    it exactly 0, not merely small;
(b) after a few real optimizer steps on the adapter alone, the largest difference between the merged
    model (peft's `merge_and_unload`) and the unmerged one: float round-off. How far those steps moved
    the logits from the base model is reported beside it, so (b) is a check that could fail;
(c) the adapter's trainable parameters beside each adapted matrix, against the method's formula
    (LoRA: r (d_in + d_out)).

It runs on the CPU in float32 on one thread, whatever device a run would use, so it never competes
with a run training on the GPU. One thread because the app shares the CPU with training: on 2 busy cores
MiniLM's check took 18-21 s on torch's two OpenMP threads and 1.2-2.2 s on one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Optional

from lab.config import RunConfig
from lab.errors import ConfigError
from lab.methods.registry import names_where

CHECKED_METHODS = names_where(lambda spec: spec.low_rank and spec.mergeable)
# A movie review for classification, a sentence with a person and a place for NER; two lengths, so the
# batch is padded and the attention mask (and mean pooling) matter as they do in training.
EXAMPLE_SENTENCES = (
    "A quiet film that grows on you: the acting is superb and the ending stays with you for days.",
    "Ada Lovelace wrote about the engine in London.",
)
MAX_TOKENS = 32
OPTIMIZER_STEPS = 3
STEP_LEARNING_RATE = 1e-2  # large enough that three Adam steps move the logits visibly on any model
# AdaLoRA's schedule needs a step count; the check takes too few steps for it to prune anything.
SCHEDULE_STEPS = 1000


@dataclass(frozen=True)
class AdaptedMatrix:
    """One weight matrix the method adapted, W in R^(d_out x d_in), and its adapter's size."""

    name: str  # the module's path inside the encoder, e.g. encoder.layer.0.attention.self.query
    d_in: int
    d_out: int
    counted: int  # trainable parameters of its adapter, as peft built them
    expected: Optional[int]  # the method's formula (LoRA: r (d_in + d_out)); None where it has none (LoKr)


@dataclass(frozen=True)
class LowRankCheck:
    method: str
    rank: int  # the r in the formulas (AdaLoRA: its initial rank, before any pruning)
    alpha: int
    example_tokens: int  # tokens the two example sentences fill, padding excluded
    start_difference: float  # max |adapted - base| logit before any step
    optimizer_steps: int
    moved_difference: float  # max |adapted - base| logit after the steps: how far the adapter moved
    merge_difference: float  # max |merged - unmerged| logit after the steps
    matrices: tuple[AdaptedMatrix, ...]
    seconds: float

    @property
    def counted_total(self) -> int:
        return sum(matrix.counted for matrix in self.matrices)

    @property
    def expected_total(self) -> Optional[int]:
        expected = [matrix.expected for matrix in self.matrices]
        return None if None in expected else sum(e for e in expected if e is not None)


def expected_adapter_size(method: str, rank: int, d_in: int, d_out: int) -> Optional[int]:
    """Trainable parameters of one matrix's adapter by the method's formula: LoRA's A (r x d_in) and
    B (d_out x r); AdaLoRA's P, Q and r singular values; LoHa's two LoRA pairs. LoKr's Kronecker factor
    sizes depend on how d_in and d_out factorise: no formula."""
    if method == "lora":
        return rank * (d_in + d_out)
    if method == "adalora":
        return rank * (d_in + d_out + 1)
    if method == "loha":
        return 2 * rank * (d_in + d_out)
    return None


def check_low_rank(config: RunConfig, num_labels: int, seed: int = 0) -> LowRankCheck:
    """Measure (a), (b) and (c) of the module docstring for `config`'s model, task and PEFT settings,
    with a head of `num_labels` labels. A model that cannot load raises its `ModelError` line."""
    import torch

    from lab.model.loading import load_model, load_tokenizer

    method = config.peft.method
    if method not in CHECKED_METHODS:
        raise ConfigError(
            f"The low-rank check runs for {', '.join(CHECKED_METHODS)}; {method} is not a low-rank method."
        )
    started = time.perf_counter()
    tokenizer = load_tokenizer(config.model, pre_split_words=config.task == "ner")
    inputs = example_batch(tokenizer, config.task)
    mask = inputs["attention_mask"]
    labels = [f"label_{i}" for i in range(max(2, num_labels))]
    # Seeded, with the caller's random state left as it was. The global generator is shared by threads: a
    # page loading another model at the same time draws from it too, and only how far the steps move changes.
    with one_cpu_thread(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        base = load_model(config.model, config.task, labels, tokenizer.pad_token_id).float().eval()
        base, adapted = both_models(base, config)
        with torch.no_grad():
            base_logits = base(**inputs).logits
            start_difference = largest_difference(adapted(**inputs).logits, base_logits, mask)
        matrices = adapted_matrices(adapted, config)
        move_adapter(adapted, inputs)
        with torch.no_grad():
            unmerged_logits = adapted(**inputs).logits
            merged = adapted.merge_and_unload()  # in place: the unmerged logits are all the check still needs
            merge_difference = largest_difference(merged(**inputs).logits, unmerged_logits, mask)
    return LowRankCheck(
        method=method,
        rank=formula_rank(config),
        alpha=config.peft.alpha,
        example_tokens=int(mask.sum()),
        start_difference=start_difference,
        optimizer_steps=OPTIMIZER_STEPS,
        moved_difference=largest_difference(unmerged_logits, base_logits, mask),
        merge_difference=merge_difference,
        matrices=tuple(matrices),
        seconds=time.perf_counter() - started,
    )


def formula_rank(config: RunConfig) -> int:
    """The rank every matrix starts with: AdaLoRA's initial rank (it prunes towards r while it trains)."""
    return config.peft.adalora_init_r if config.peft.method == "adalora" else config.peft.r


@contextmanager
def one_cpu_thread() -> Iterator[None]:
    """torch's kernels on one thread (libgomp keeps the setting per calling thread), restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def example_batch(tokenizer: Any, task: str) -> dict[str, Any]:
    """The two sentences tokenised as a run would: NER models read words, classifiers the text."""
    words = task == "ner"
    texts = [sentence.split() for sentence in EXAMPLE_SENTENCES] if words else list(EXAMPLE_SENTENCES)
    encoded = tokenizer(
        texts, is_split_into_words=words, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
    )
    return dict(encoded)


def both_models(base: Any, config: RunConfig) -> tuple[Any, Any]:
    """The base model and the adapted one, from the same weights and with the run's pooling. The copy is
    taken before pooling: mean pooling hooks the encoder, and a copied hook would feed the original's pooler."""
    import copy

    from lab.model.adapting import apply_peft
    from lab.model.pooling import resolve_pooling, use_pooling

    pooling = resolve_pooling(base, config.task, config.peft.method, config.model.pooling)
    adapted = copy.deepcopy(base)
    base = use_pooling(base, pooling)
    adapted = apply_peft(use_pooling(adapted, pooling), config.peft, config.task, SCHEDULE_STEPS, pooling)
    return base, adapted.eval()  # eval: no dropout, so both see the same computation


def largest_difference(left: Any, right: Any, attention_mask: Any) -> float:
    """The largest |left - right| over the logits of real tokens (NER's padded positions say nothing)."""
    if left.dim() == 3:
        left, right = left[attention_mask.bool()], right[attention_mask.bool()]
    return float((left - right).abs().max())


def tuner_layers(model: Any) -> Iterator[tuple[str, Any]]:
    """(name, layer) of every peft tuner layer: the adapted matrices."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in model.named_modules():
        if isinstance(module, BaseTunerLayer):
            yield name, module


def adapter_parameters(layer: Any) -> list[Any]:
    """The trainable parameters of a tuner layer's own adapter (LoRA's A and B), not its frozen base weight."""
    return [
        parameter
        for name, parameter in layer.named_parameters()
        if name.split(".")[0] in layer.adapter_layer_names and parameter.requires_grad
    ]


def adapted_matrices(model: Any, config: RunConfig) -> list[AdaptedMatrix]:
    method, rank = config.peft.method, formula_rank(config)
    backbone = getattr(model.get_base_model(), "base_model_prefix", "")
    matrices = []
    for name, layer in tuner_layers(model):
        short = name.removeprefix("base_model.model.").removeprefix(f"{backbone}.")
        d_in, d_out = int(layer.in_features), int(layer.out_features)
        counted = sum(parameter.numel() for parameter in adapter_parameters(layer))
        matrices.append(AdaptedMatrix(short, d_in, d_out, counted, expected_adapter_size(method, rank, d_in, d_out)))
    return matrices


def move_adapter(model: Any, inputs: dict[str, Any]) -> None:
    """A few real Adam steps on the adapter alone (the head stays as it was), pulling every prediction
    towards the first label: the update leaves zero, as it does in the first steps of a run."""
    import torch

    parameters = [parameter for _, layer in tuner_layers(model) for parameter in adapter_parameters(layer)]
    optimizer = torch.optim.Adam(parameters, lr=STEP_LEARNING_RATE)
    for _ in range(OPTIMIZER_STEPS):
        optimizer.zero_grad()
        logits = model(**inputs).logits
        loss = -torch.log_softmax(logits, dim=-1)[..., 0].mean()
        loss.backward()
        optimizer.step()
