"""The rank each AdaLoRA matrix keeps, read at each evaluation (RankEvent)."""

from __future__ import annotations

import torch


def adalora_ranks(model: torch.nn.Module) -> dict[str, int]:
    """Module path -> singular values AdaLoRA keeps (the pruned ones are zeroed in `lora_E`)."""
    ranks = {}
    for name, module in model.named_modules():
        values = getattr(module, "lora_E", None)
        if isinstance(values, torch.nn.ParameterDict) and "default" in values:
            ranks[name.removeprefix("base_model.model.")] = int(torch.count_nonzero(values["default"]).item())
    return ranks
