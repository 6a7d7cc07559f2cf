"""Measure a training loop from the outside, the same way for every arm of the benchmark.

Two public torch hooks see what we count, whichever loop drives the model (a hand-written loop,
a bare `Trainer`, or the lab's engine in a background thread), so no arm counts for itself:

- a global forward pre-hook finds the model: the first module called in training mode with
  gradients on is the outermost one (a PeftModel or the Hugging Face model). It then gets its own
  pre-hook that reads each training batch: real tokens from `attention_mask`, positions (real +
  padding) from `input_ids`, examples from the batch size. Evaluation forwards (eval mode or
  no_grad) are not counted;
- a global optimizer step post-hook marks the end of every optimizer step.

The timed window runs from the end of the last warm-up step to the end of the last step, so it
holds `timed_steps` whole iterations (data, forward, backward, optimizer, callbacks, event writes).
On a GPU the clock is read after a `synchronize` at those two steps only, and token counts stay on
the device until the end: the meter adds no per-step host sync.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn
from torch.nn.modules import module as torch_module
from torch.optim import optimizer as torch_optimizer


@dataclass
class StepCounts:
    """What the model saw in one optimizer step (all micro-batches)."""

    real_tokens: Any = 0  # an int, or a 0-d tensor on the device until `StepMeter.stop`
    positions: int = 0  # real + padding positions
    examples: int = 0


@dataclass
class Measurement:
    """The timed window of one arm."""

    timed_steps: int
    seconds: float
    # CPU time of the whole process in the window: steadier than wall time on a shared machine.
    cpu_seconds: float
    threads: int  # torch's intra-op threads while measuring
    examples: int
    real_tokens: int
    positions: int
    mean_real_length: float
    # For model FLOPs: parameters outside embeddings, layers and hidden size of the measured model.
    non_embedding_params: int = 0
    num_layers: int = 0
    hidden_size: int = 0

    @property
    def examples_per_second(self) -> float:
        return self.examples / self.seconds

    @property
    def real_tokens_per_second(self) -> float:
        return self.real_tokens / self.seconds

    @property
    def real_tokens_per_cpu_second(self) -> float:
        return self.real_tokens / self.cpu_seconds if self.cpu_seconds else 0.0

    @property
    def cpu_share(self) -> float:
        """CPU time the process got over what its threads could use: well below 1 when other programs
        use the CPU (or on a GPU, where the host mostly waits)."""
        return self.cpu_seconds / (self.seconds * self.threads) if self.seconds else 0.0

    @property
    def padding_share(self) -> float:
        return 1 - self.real_tokens / self.positions if self.positions else 0.0


class StepMeter:
    """Counts tokens and times optimizer steps of whatever trains in this process.

    Use it around one arm: `with StepMeter(warmup_steps=2, total_steps=22, device="cpu") as meter:`
    then `meter.measurement()`. Only one meter may be active at a time.
    """

    def __init__(self, warmup_steps: int, total_steps: int, device: str) -> None:
        # The first step is always warm-up: the model is only found during its forward.
        if not 1 <= warmup_steps < total_steps:
            raise ValueError(f"need 1 <= warmup_steps < total_steps, got {warmup_steps} and {total_steps}")
        self.warmup_steps, self.total_steps, self.device = warmup_steps, total_steps, device
        self.model: Optional[nn.Module] = None
        self.steps: list[StepCounts] = []
        self._pending = StepCounts()
        self._window_start: Optional[tuple[float, float]] = None  # (wall, process CPU) seconds
        self._window_end: Optional[tuple[float, float]] = None
        self._handles: list[Any] = []
        self._finder: Any = None

    # -- hooks --
    def __enter__(self) -> StepMeter:
        self._finder = torch_module.register_module_forward_pre_hook(self._find_model)
        self._handles.append(torch_optimizer.register_optimizer_step_post_hook(self._on_optimizer_step))
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._remove_finder()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _remove_finder(self) -> None:
        if self._finder is not None:
            self._finder.remove()
            self._finder = None

    def _find_model(self, module: nn.Module, args: tuple) -> None:
        if self.model is not None or not (module.training and torch.is_grad_enabled()):
            return
        # The outermost module of the first training forward. Its own hook runs from the next call
        # on (this batch, passed as keywords, is invisible here): the first step is warm-up anyway.
        self.model = module
        self._handles.append(module.register_forward_pre_hook(self._count_batch, with_kwargs=True))
        self._remove_finder()  # from here on every other module call is free of our hook

    def _count_batch(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is None:
            return
        mask = kwargs.get("attention_mask")
        real = mask.sum() if mask is not None else input_ids.numel()
        self._pending.real_tokens = self._pending.real_tokens + real
        self._pending.positions += input_ids.numel()
        self._pending.examples += input_ids.shape[0]

    def _on_optimizer_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.steps.append(self._pending)
        self._pending = StepCounts()
        done = len(self.steps)
        if done == self.warmup_steps:
            self._window_start = self._clock()
        if done == self.total_steps:
            self._window_end = self._clock()

    def _clock(self) -> tuple[float, float]:
        if self.device == "cuda":
            torch.cuda.synchronize()
        elif self.device == "mps":
            torch.mps.synchronize()
        return time.perf_counter(), time.process_time()

    # -- result --
    def measurement(self) -> Measurement:
        if self._window_end is None or self._window_start is None:
            raise RuntimeError(
                f"The arm made {len(self.steps)} optimizer steps; the benchmark needs "
                f"{self.total_steps}. Is the training set big enough?"
            )
        timed = self.steps[self.warmup_steps : self.total_steps]
        real = sum(int(step.real_tokens) for step in timed)
        examples = sum(step.examples for step in timed)
        (wall_start, cpu_start), (wall_end, cpu_end) = self._window_start, self._window_end
        return Measurement(
            timed_steps=len(timed),
            seconds=wall_end - wall_start,
            cpu_seconds=cpu_end - cpu_start,
            threads=torch.get_num_threads(),
            examples=examples,
            real_tokens=real,
            positions=sum(step.positions for step in timed),
            mean_real_length=real / max(1, examples),
            **_shape_of(self.model),
        )


def _shape_of(model: Optional[nn.Module]) -> dict[str, int]:
    """Non-embedding parameters, layers and hidden size, for the FLOPs of a BERT-like encoder."""
    if model is None:
        return {}
    embedding_params = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    non_embedding = sum(p.numel() for p in model.parameters() if id(p) not in embedding_params)
    config = getattr(model, "config", None)
    return {
        "non_embedding_params": non_embedding,
        "num_layers": int(getattr(config, "num_hidden_layers", 0) or 0),
        "hidden_size": int(getattr(config, "hidden_size", 0) or 0),
    }


def training_flops_per_token(
    non_embedding_params: int, num_layers: int, hidden_size: int, sequence_length: float
) -> float:
    """Forward + backward FLOPs per token of full fine-tuning: 6 N for the weights plus attention
    scores and values, 12 x layers x hidden x sequence length (as in the GPT-3 / PaLM appendices).
    BERT-base at 128 tokens: 6 x 85 M + 12 x 12 x 768 x 128 = 524 MFLOP."""
    return 6 * non_embedding_params + 12 * num_layers * hidden_size * sequence_length


# ---- memory ------------------------------------------------------------------------------------
class PeakMemory:
    """Peak memory of one arm: the CUDA allocator's peak, or on CPU the process's peak resident set
    (which includes Python, torch and the loaded data, about 1 GB with MiniLM).

    Linux lets a process reset its own peak RSS (VmHWM) by writing 5 to /proc/self/clear_refs; where
    that fails (macOS, locked-down /proc) we fall back to the process-lifetime peak.
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.peak_mb: Optional[float] = None

    def __enter__(self) -> PeakMemory:
        release_memory(self.device)
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        else:
            try:
                with open("/proc/self/clear_refs", "w") as handle:
                    handle.write("5")
            except OSError:
                pass
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self.device == "cuda":
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        elif self.device == "cpu":
            self.peak_mb = _peak_rss_mb()
        # MPS: torch reports no peak of its unified memory; leave it unknown.


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    from lab.training.memory import resident_mb

    return resident_mb()


def release_memory(device: str) -> None:
    """Free what the previous arm left, so it does not count against the next one."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    else:
        try:  # glibc keeps freed heap pages resident until asked to give them back
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
