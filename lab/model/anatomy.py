"""Where things sit inside a loaded model: the encoder, its prefix, its linear and attention layers,
the task head and the pooler. PEFT, pooling and parameter counts all ask these questions."""

from __future__ import annotations

from typing import Optional

from torch import nn

from lab.errors import ModelError


def encoder_of(model: nn.Module) -> Optional[nn.Module]:
    return getattr(model, getattr(model, "base_model_prefix", ""), None)


def pooler_parameter_names(model: nn.Module) -> set[str]:
    return {name for name, _ in model.named_parameters() if name.startswith(encoder_prefix(model) + "pooler.")}


def encoder_linear_layers(model: nn.Module) -> list[str]:
    """Full names of the encoder's linear layers. Not peft's "all-linear": that also wraps a
    classification head, which peft then refuses to train as a module to save."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name.startswith(encoder_prefix(model))
    ]


def encoder_prefix(model: nn.Module) -> str:
    """How the names of the encoder's modules start ("bert."); the task head's do not."""
    return getattr(model, "base_model_prefix", "") + "."


def head_parameter_names(model: nn.Module) -> set[str]:
    """Parameters of the task head: everything outside the base encoder (classifier, pooler is kept frozen)."""
    names = {name for name, _ in model.named_parameters() if not name.startswith(encoder_prefix(model))}
    if not names:
        raise ModelError("Could not tell the classification head apart from the encoder for head-only training.")
    return names


def attention_targets(model: nn.Module) -> list[str]:
    """Names of the attention projections, from peft's table for known architectures, else by name."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    model_type = getattr(getattr(model, "config", None), "model_type", "")
    if model_type in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING:
        return list(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING[model_type])
    known = ("query", "value", "q_proj", "v_proj", "q_lin", "v_lin", "q", "v")
    found = sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in known
        }
    )
    if not found:
        raise ModelError(
            "Could not find attention layers to adapt in this architecture; "
            "set peft.target_modules to the names of its linear layers."
        )
    return found
