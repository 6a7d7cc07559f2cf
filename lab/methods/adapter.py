"""Bottleneck adapters (Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP").

A small two-layer network `h + up(act(down(h)))` sits after a sub-layer's output projection, before
the residual sum and its LayerNorm: after the attention output and after the feed-forward output
(`houlsby`), or after the feed-forward output only (`pfeiffer`). The up-projection starts at zero, so
the adapted model computes exactly what the frozen one does until the first step. The encoder is
frozen except the adapters and its LayerNorms, as in the paper; the task head trains as always.

This module imports only torch (no lab, no peft): the standalone script inlines its source as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

ADAPTER_WEIGHTS_FILE = "bottleneck_adapter.safetensors"
ADAPTER_CONFIG_FILE = "bottleneck_adapter.json"
SETTINGS_ATTRIBUTE = "bottleneck_adapter"  # an adapted model's layout, width and non-linearity
NONLINEARITIES = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "swish": nn.SiLU}
# Output projections per encoder layer, by module name: (after attention, after the feed-forward).
# BERT, RoBERTa, ELECTRA and their kin: `attention.output.dense`, `output.dense`; DistilBERT:
# `attention.out_lin`, `ffn.lin2`. Each is followed by dropout and LayerNorm(h + input).
OUTPUT_PROJECTIONS = (
    (re.compile(r"\.layer\.\d+\.attention\.output\.dense$"), re.compile(r"\.layer\.\d+\.output\.dense$")),
    (re.compile(r"\.layer\.\d+\.attention\.out_lin$"), re.compile(r"\.layer\.\d+\.ffn\.lin2$")),
)


class Bottleneck(nn.Module):
    """h + up(act(down(h))): near identity at the start, since `up` is zero."""

    def __init__(self, hidden_size: int, bottleneck: int, nonlinearity: str) -> None:
        super().__init__()
        self.down = nn.Linear(hidden_size, bottleneck)
        self.act = NONLINEARITIES[nonlinearity]()
        self.up = nn.Linear(bottleneck, hidden_size)
        nn.init.normal_(self.down.weight, std=1e-2)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states + self.up(self.act(self.down(hidden_states)))


class ProjectionWithAdapter(nn.Module):
    """An output projection followed by its adapter. It keeps the projection's `weight` and `bias`
    under their own names, so the base model's parameter names (and its checkpoints) stay valid."""

    def __init__(self, projection: nn.Linear, adapter: Bottleneck) -> None:
        super().__init__()
        self.weight = projection.weight
        self.bias = projection.bias
        self.adapter = adapter

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.adapter(nn.functional.linear(hidden_states, self.weight, self.bias))


def adapter_positions(model: nn.Module, layout: str) -> list[str]:
    """The names of the projections that get an adapter; raises ValueError naming the model type when
    its layers have none the adapter knows."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    for attention_output, feed_forward_output in OUTPUT_PROJECTIONS:
        feed_forward = [name for name in names if feed_forward_output.search(name)]
        attention = [name for name in names if attention_output.search(name)]
        if feed_forward:
            return sorted(feed_forward + (attention if layout == "houlsby" else []))
    model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
    raise ValueError(
        f"Bottleneck adapters cannot find the layer outputs of model type {model_type!r} "
        "(they fit BERT, RoBERTa, DistilBERT and their kin); choose lora or another method."
    )


def add_adapters(
    model: nn.Module,
    layout: str = "houlsby",
    bottleneck: int = 64,
    nonlinearity: str = "relu",
    train: Callable[[str], bool] = lambda name: False,
) -> nn.Module:
    """Freeze `model`, put an adapter after each output projection `layout` names, and train the
    adapters, every LayerNorm and the parameters whose names `train(name)` accepts (the task head)."""
    for param in model.parameters():
        param.requires_grad = False
    for name in adapter_positions(model, layout):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        projection = getattr(parent, child)
        adapter = Bottleneck(projection.out_features, bottleneck, nonlinearity)
        adapter.to(device=projection.weight.device, dtype=projection.weight.dtype)
        setattr(parent, child, ProjectionWithAdapter(projection, adapter))
    trained = {id(p) for module in model.modules() if isinstance(module, nn.LayerNorm) for p in module.parameters()}
    for name, param in model.named_parameters():
        if ".adapter." in name or id(param) in trained or train(name):
            param.requires_grad = True
    setattr(model, SETTINGS_ATTRIBUTE, {"layout": layout, "bottleneck": bottleneck, "nonlinearity": nonlinearity})
    return model


def has_adapters(model: nn.Module) -> bool:
    return hasattr(model, SETTINGS_ATTRIBUTE)


def save_adapters(model: nn.Module, folder: str | Path, base_model: str = "") -> None:
    """Only what training changed (adapters, LayerNorms, head) as safetensors, and the adapter's shape
    beside it; the frozen rest comes from `base_model` when it is loaded again."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = {name: p.detach().contiguous().cpu() for name, p in model.named_parameters() if p.requires_grad}
    save_file(weights, str(folder / ADAPTER_WEIGHTS_FILE), metadata={"format": "pt"})
    settings = dict(getattr(model, SETTINGS_ATTRIBUTE), base_model=base_model)
    (folder / ADAPTER_CONFIG_FILE).write_text(json.dumps(settings, indent=2), encoding="utf-8")


def load_adapters(model: nn.Module, folder: str | Path, train: Callable[[str], bool] = lambda name: False) -> nn.Module:
    """Put the adapters saved in `folder` into a freshly loaded base `model` (same head size)."""
    folder = Path(folder)
    settings = json.loads((folder / ADAPTER_CONFIG_FILE).read_text(encoding="utf-8"))
    if not has_adapters(model):
        add_adapters(model, settings["layout"], settings["bottleneck"], settings["nonlinearity"], train)
    load_adapter_weights(model, folder)
    return model


def load_adapter_weights(model: nn.Module, folder: str | Path) -> None:
    """The saved weights into a model that has its adapters already; every saved name must fit."""
    from safetensors.torch import load_file

    saved = load_file(str(Path(folder) / ADAPTER_WEIGHTS_FILE))
    unexpected = model.load_state_dict(saved, strict=False).unexpected_keys
    if unexpected:
        raise ValueError(f"{folder} holds adapter weights this model has no place for: {unexpected[:3]}")
