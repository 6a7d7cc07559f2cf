"""Counting a model's parameters: trainable and total, and per part of the model."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:  # the pages format shares without loading torch
    from torch import nn


def format_share(part: Optional[float], whole: Optional[float] = 1) -> str:
    """part / whole as '100%', '0.328%', '0.00339%': three significant digits, so head-only's few
    thousandths of a percent do not read as 0%; '–' when either is missing."""
    if part is None or not whole or (isinstance(part, float) and math.isnan(part)):  # pandas: a missing share is NaN
        return "–"
    percent = 100 * part / whole
    if percent == 0:
        return "0%"
    return f"{percent:.{max(0, 2 - math.floor(math.log10(abs(percent))))}f}%"


@dataclass
class ParameterCount:
    trainable: int
    total: int

    @property
    def share(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def describe(self) -> str:
        share = format_share(self.trainable, self.total)
        return f"trainable parameters: {self.trainable:,} of {self.total:,} ({share})"


def parameters_by_part(model: nn.Module) -> list[dict[str, Any]]:
    """Trainable and total parameters per part of the model, in model order: embeddings, each encoder
    layer, the pooler, the task head, and prompt / prefix tuning's virtual tokens; what a student looks
    at to see where LoRA adds its matrices and IA3 its vectors."""
    parts: dict[str, dict[str, Any]] = {}
    for name, param in model.named_parameters():
        part = _part_of(name)
        row = parts.setdefault(part, {"part": part, "trainable": 0, "total": 0})
        row["total"] += param.numel()
        row["trainable"] += param.numel() if param.requires_grad else 0
    return list(parts.values())


def _part_of(name: str) -> str:
    if "prompt_encoder" in name:
        return "virtual tokens"
    layer = re.search(r"\.layers?\.(\d+)\.", name)
    if layer:
        return f"layer {layer.group(1)}"
    if ".embeddings." in f".{name}":
        return "embeddings"
    if ".pooler." in f".{name}":
        return "pooler"
    return "head"


def count_parameters(model: nn.Module) -> ParameterCount:
    trainable = total = 0
    for param in model.parameters():
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return ParameterCount(trainable=trainable, total=total)
