"""Pre-flight estimate of a run: time per epoch and memory, shown before training starts.

Nothing heavy is loaded: the model is built on torch's "meta" device (shapes, no weights), and a
sample of at most `LENGTH_SAMPLE` training texts is tokenised to learn how long examples are.

Time is a calibrated formula. Training costs about 6 N FLOPs per token for the N weights outside the
embeddings (forward 2 N, backward 2 N for activations and 2 N for weight gradients; frozen weights
skip the last part, so PEFT methods cost about 4 N and head-only about 2 N), plus
12 x layers x hidden x length for attention. A 0.1 s matrix multiplication probe measures what this
device can do now; training reaches only a share of that (`TRAINING_EFFICIENCY`, measured with
`python -m bench` on the offline MiniLM). Padding adds the positions the collator pads.

Memory counts what training keeps: weights (fp32 master copies, also under bf16 autocast),
gradients and optimizer state of the trainable share, activations for the longest possible batch
(batch x max_length), and the framework's own footprint. The figures are estimates: expect them
within a factor of about 1.5.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from lab.config import RunConfig
from lab.errors import Message

if TYPE_CHECKING:
    from lab.data.splits import LoadedData

LENGTH_SAMPLE = 256  # training texts tokenised to learn the length distribution
# Training FLOP/s (padding included) as a share of the matmul probe's FLOP/s. CPU: 0.5 to 0.66
# measured with `python -m bench` (MiniLM on WNUT-16 and IMDB-512, 2-core CPU); GPU and MPS: assumed
# (bf16 BERT-base training reaches about half of the dense matmul rate), not measured here.
TRAINING_EFFICIENCY = {"cpu": 0.5, "cuda": 0.5, "mps": 0.4}
# Bytes of activations kept per token per layer, in units of hidden size: 34 in 16-bit for a
# transformer layer (Korthikanti et al. 2022, "Reducing Activation Recomputation"), without the
# attention-score term because BERT models run scaled_dot_product_attention here.
ACTIVATION_BYTES_PER_HIDDEN = 34
# Memory the framework holds before the model: the CUDA context, or Python with torch and transformers.
FRAMEWORK_BYTES = {"cuda": 600 * 2**20, "cpu": 900 * 2**20, "mps": 900 * 2**20}
OPTIMIZER_BYTES_PER_PARAM = {"adamw": 8, "sgd": 4, "adafactor": 0}  # adafactor keeps row/column stats only
# transformers' LengthGroupedSampler sorts megabatches of min(50, examples / (4 x batch)) batches.
LENGTH_GROUP_BATCHES = 50


@dataclass
class Estimate:
    device: str
    precision: str
    train_examples: int
    validation_examples: int
    steps_per_epoch: int
    total_steps: int
    mean_tokens: float  # sub-word tokens per training example, after truncation
    padding_share: float  # expected share of padding positions in training batches
    seconds_per_step: float
    seconds_per_epoch: float
    seconds_per_validation: float  # one pass over the validation split
    total_seconds: float  # every epoch (or max_steps) plus the evaluations the config asks for
    weights_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    framework_bytes: int
    available_bytes: Optional[int]  # free memory on the device now; None when unknown
    trainable_params: int
    total_params: int
    # The method was measured to need more steps than this run has (lab.model.defaults.short_budget_warning).
    budget_warning: Optional[Message] = None

    @property
    def total_bytes(self) -> int:
        return (
            self.weights_bytes
            + self.gradients_bytes
            + self.optimizer_bytes
            + self.activations_bytes
            + self.framework_bytes
        )

    @property
    def fits(self) -> bool:
        return self.available_bytes is None or self.total_bytes <= self.available_bytes

    @property
    def warning(self) -> str:
        """'' when the run should fit; otherwise what to change."""
        if self.available_bytes is None or self.total_bytes <= 0.9 * self.available_bytes:
            return ""
        where = "GPU" if self.device == "cuda" else "machine"
        verdict = "will not fit" if not self.fits else "may not fit"
        return (
            f"This run needs about {_size(self.total_bytes)} but the {where} has {_size(self.available_bytes)} "
            f"free: it {verdict}. Lower train.train_batch_size or train.max_length, turn on "
            f"train.gradient_checkpointing, or train fewer weights (peft.method lora)."
        )

    def describe(self) -> str:
        """A few lines for the CLI before training and the app's New run page."""
        lines = [
            f"Estimate on {self.device} ({self.precision}): {self.train_examples:,} training examples, "
            f"{self.steps_per_epoch:,} steps per epoch, {self.total_steps:,} steps in all.",
            f"Time: about {format_duration(self.seconds_per_epoch)} per epoch ({self.seconds_per_step:.2f} s per step, "
            f"{self.mean_tokens:.0f} tokens per example, {self.padding_share:.0%} padding), "
            f"{format_duration(self.seconds_per_validation)} per validation pass; "
            f"about {format_duration(self.total_seconds)} for the run.",
            f"Memory: about {_size(self.total_bytes)} (weights {_size(self.weights_bytes)}, gradients "
            f"{_size(self.gradients_bytes)}, optimizer {_size(self.optimizer_bytes)}, activations "
            f"{_size(self.activations_bytes)}, framework {_size(self.framework_bytes)})"
            + (f" of {_size(self.available_bytes)} free." if self.available_bytes is not None else "."),
        ]
        if self.warning:
            lines.append("Warning: " + self.warning)
        return "\n".join(lines)


def estimate(
    config: RunConfig, loaded: Optional[LoadedData] = None, log: Callable[[str], None] = lambda message: None
) -> Estimate:
    """Estimate time and memory of `config` without training; pass the splits if they are loaded
    already. Raises the LabError training would raise for a missing file or model."""
    from lab.data.splits import load_splits
    from lab.model.defaults import short_budget_warning
    from lab.model.device import pick_device, pick_precision
    from lab.model.loading import load_tokenizer

    config.validate()
    t = config.train
    device = pick_device(t.device)
    precision = pick_precision(t.precision, device)
    tokenizer = load_tokenizer(config.model, pre_split_words=config.task == "ner")
    loaded = loaded or load_splits(config.data, config.task, config.data.split_seed, log=log)
    train_examples, validation_examples = len(loaded.splits["train"]), len(loaded.splits["validation"])
    lengths = sample_lengths(loaded.splits["train"], tokenizer, config.task, t.max_length)
    shape = model_shape(config, len(loaded.label_names))

    world = max(1, t.num_devices)
    examples_per_step = t.train_batch_size * t.gradient_accumulation_steps * world
    steps_per_epoch = max(1, math.ceil(train_examples / examples_per_step))
    total_steps = t.max_steps or max(1, math.ceil(steps_per_epoch * t.epochs))
    mean_tokens = sum(lengths) / len(lengths)
    megabatch = max(1, min(LENGTH_GROUP_BATCHES, train_examples // (4 * t.train_batch_size)))
    padding = padding_share(lengths, t.train_batch_size, t.group_by_length, t.seed, megabatch)

    speed = device_flops(device, precision) * TRAINING_EFFICIENCY.get(device, 0.35) * world
    attention = 12 * shape["layers"] * shape["hidden"] * mean_tokens
    train_flops_per_position = shape["backward_factor"] * 2 * shape["non_embedding"] + attention
    positions_per_step = examples_per_step * mean_tokens / (1 - padding)
    seconds_per_step = positions_per_step * train_flops_per_position / speed
    # Evaluation: forward only, in eval batches (padding much like training without grouping).
    eval_padding = padding_share(lengths, t.eval_batch_size, False, t.seed)
    eval_positions = validation_examples * mean_tokens / (1 - eval_padding)
    seconds_per_validation = eval_positions * (2 * shape["non_embedding"] + attention / 3) / speed
    evaluations = (total_steps // t.eval_steps) if t.eval_steps else max(1, math.ceil(total_steps / steps_per_epoch))

    return Estimate(
        device=device,
        precision=precision,
        train_examples=train_examples,
        validation_examples=validation_examples,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        mean_tokens=mean_tokens,
        padding_share=padding,
        seconds_per_step=seconds_per_step,
        seconds_per_epoch=seconds_per_step * steps_per_epoch,
        seconds_per_validation=seconds_per_validation,
        total_seconds=seconds_per_step * total_steps + seconds_per_validation * (evaluations + 1),  # + test
        weights_bytes=4 * shape["total"],
        gradients_bytes=4 * shape["trainable"],
        optimizer_bytes=OPTIMIZER_BYTES_PER_PARAM.get(t.optimizer, 8) * shape["trainable"],
        activations_bytes=activation_bytes(config, shape, precision),
        framework_bytes=FRAMEWORK_BYTES.get(device, FRAMEWORK_BYTES["cpu"]),
        available_bytes=available_memory(device),
        trainable_params=shape["trainable"],
        total_params=shape["total"],
        budget_warning=short_budget_warning(config, total_steps),
    )


# ---- pieces ------------------------------------------------------------------------------------
def sample_lengths(train: Any, tokenizer: Any, task: str, max_length: int) -> list[int]:
    """Token counts (with special tokens, after truncation) of a seeded sample of training examples."""
    count = min(len(train), LENGTH_SAMPLE)
    sample = train.shuffle(seed=0).select(range(count)) if len(train) > count else train
    from lab.data.preprocessing import clip_text, clip_words

    if task == "ner":
        sentences = [clip_words(words, max_length) for words in sample["tokens"]]
        encoded = tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=max_length)
    else:
        texts = [clip_text(text, max_length) for text in sample["text"]]
        encoded = tokenizer(texts, truncation=True, max_length=max_length)
    return [len(ids) for ids in encoded["input_ids"]] or [1]


def padding_share(
    lengths: list[int], batch_size: int, group_by_length: bool, seed: int, megabatch_batches: int = LENGTH_GROUP_BATCHES
) -> float:
    """Share of padding when batches pad to their longest example: simulated on the sampled lengths,
    in random order or sorted within megabatches like the length-grouped sampler."""
    import random

    order = list(lengths)
    random.Random(seed).shuffle(order)
    if group_by_length:
        mega = batch_size * megabatch_batches
        order = [n for start in range(0, len(order), mega) for n in sorted(order[start : start + mega], reverse=True)]
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    positions = sum(max(batch) * len(batch) for batch in batches)
    return 1 - sum(order) / positions


def model_shape(config: RunConfig, num_labels: int) -> dict[str, int]:
    """Parameter counts, layers and hidden size, from the model built on the meta device (no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification

    from lab.errors import ModelError
    from lab.model.adapting import adapt
    from lab.model.loading import resolve_model_path
    from lab.model.parameters import count_parameters

    path = resolve_model_path(config.model.name_or_path)
    auto_class = AutoModelForTokenClassification if config.task == "ner" else AutoModelForSequenceClassification
    try:
        hf_config = AutoConfig.from_pretrained(
            path, num_labels=num_labels, trust_remote_code=config.model.trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise ModelError(f"Cannot read the configuration of model {config.model.name_or_path!r}: {exc}") from None
    with torch.device("meta"):
        model = auto_class.from_config(hf_config, trust_remote_code=config.model.trust_remote_code)
        embedding = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters())
        model, _ = adapt(model, config, max(1, config.train.max_steps or 100))
    params = count_parameters(model)
    # Backward through the encoder is needed unless only the head trains; weight gradients only for full.
    backward_factor = {"full": 3, "head": 1}.get(config.peft.method, 2)
    return {
        "total": params.total,
        "trainable": params.trainable,
        "non_embedding": params.total - embedding,
        "layers": int(getattr(hf_config, "num_hidden_layers", 12)),
        "hidden": int(getattr(hf_config, "hidden_size", 768)),
        "backward_factor": backward_factor,
    }


def activation_bytes(config: RunConfig, shape: dict[str, int], precision: str) -> int:
    """Activations kept for the backward pass of the longest possible batch (batch x max_length)."""
    t = config.train
    if config.peft.method == "head":
        return 0  # no backward through the encoder: nothing of it is kept
    tokens = t.train_batch_size * t.max_length
    bytes_per_value = 4 if precision == "fp32" else 2
    per_layer = ACTIVATION_BYTES_PER_HIDDEN * tokens * shape["hidden"] * bytes_per_value // 2
    if t.gradient_checkpointing:  # keep each layer's input, recompute one layer at a time
        return shape["layers"] * tokens * shape["hidden"] * bytes_per_value + per_layer
    return shape["layers"] * per_layer


@functools.cache
def device_flops(device: str, precision: str) -> float:
    """Dense matmul FLOP/s this device reaches now (best of a few 0.1 s probes), in the training dtype."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    size = 4096 if device == "cuda" else 1024
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = math.inf
    for _ in range(5):
        _synchronize(device)
        started = time.perf_counter()
        for _ in range(3):
            a @ b
        _synchronize(device)
        best = min(best, (time.perf_counter() - started) / 3)
    return 2 * size**3 / best


def _synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def available_memory(device: str) -> Optional[int]:
    """Free bytes on the GPU, or the memory the OS can give this process (MemAvailable) on CPU / MPS."""
    if device == "cuda":
        import torch

        return int(torch.cuda.mem_get_info()[0])
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _size(count: float) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count / 2**10:.0f} KB"


DURATION_UNITS = ("h", "min", "s")


def format_duration(seconds: Optional[float], units: Sequence[str] = DURATION_UNITS) -> str:
    """'1 h 02 min', '2 min 05 s', '7 s': the two largest units, as every duration the lab shows reads;
    `units` names hours, minutes and seconds (the app passes its language's)."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "–"
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    hour, minute, second = units
    if hours:
        return f"{hours} {hour} {minutes:02d} {minute}"
    if minutes:
        return f"{minutes} {minute} {secs:02d} {second}"
    return f"{secs} {second}"
