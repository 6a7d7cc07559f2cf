"""How a classification model turns its token vectors into one sentence vector: BERT's pooler
(frozen or trained) or the mean of the tokens, with `auto` read from the method's default."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from lab.errors import ModelError
from lab.model.anatomy import encoder_of
from lab.model.defaults import DEFAULT_POOLING


class MeanPooler(nn.Module):
    """Stands in for BERT's pooler: the mean of the token vectors where the attention mask is 1.

    The pooler's forward only gets the hidden states, so a hook on the encoder hands it the mask.
    Prompt tuning's mask covers its virtual tokens too; prefix tuning's covers the prefix, which has
    no hidden state: the last `sequence length` columns are the ones that match.
    """

    def __init__(self) -> None:
        super().__init__()
        self.attention_mask: Optional[torch.Tensor] = None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        mask = self.attention_mask
        if mask is None or mask.shape[0] != hidden_states.shape[0]:
            mask = torch.ones(hidden_states.shape[:2], device=hidden_states.device)
        weights = mask[:, -hidden_states.shape[1] :].to(hidden_states.dtype).unsqueeze(-1)
        return (hidden_states * weights).sum(1) / weights.sum(1).clamp(min=1)


def resolve_pooling(model: nn.Module, task: str, method: str, requested: str) -> str:
    """The pooling a run uses: '' when there is nothing to choose (NER; a model without a BERT-style
    pooler, when `requested` is auto), else `requested`, with auto read from DEFAULT_POOLING."""
    if task != "classification":
        return ""
    encoder = encoder_of(model)
    if encoder is None or getattr(encoder, "pooler", None) is None:
        if requested == "auto":
            return ""
        raise ModelError(
            f"model.pooling {requested} needs a BERT-style model with a pooler; "
            f"{type(model).__name__} has none: leave model.pooling on auto."
        )
    return DEFAULT_POOLING[method] if requested == "auto" else requested


def use_pooling(model: nn.Module, pooling: str) -> nn.Module:
    """Put mean pooling in place of the pooler (before PEFT wraps the model); every other choice is
    the model's own pooler, trained or not by `apply_peft`."""
    if pooling != "mean":
        return model
    encoder = encoder_of(model)
    if encoder is None:  # resolve_pooling chose mean, so there is an encoder with a pooler
        raise ModelError(f"{type(model).__name__} has no encoder to pool.")
    pooler = MeanPooler()
    encoder.pooler = pooler

    def hand_over_mask(module, args, kwargs):
        pooler.attention_mask = kwargs.get("attention_mask")

    encoder.register_forward_pre_hook(hand_over_mask, with_kwargs=True)
    return model
