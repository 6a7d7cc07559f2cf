"""Adapting a loaded model with a PEFT method.

What each method does is its record in the method registry (lab.methods.registry): peft builds most;
head-only and the bottleneck adapters are the lab's own. Every method keeps the classification head
trainable: peft's SEQ_CLS / TOKEN_CLS task types add the head to `modules_to_save`; head-only and the
adapters train it by name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from lab.config import PeftSettings, RunConfig
from lab.errors import ModelError
from lab.methods.registry import method_spec
from lab.model.anatomy import attention_targets, encoder_linear_layers, head_parameter_names, pooler_parameter_names
from lab.model.pooling import resolve_pooling, use_pooling


def build_peft_config(settings: PeftSettings, task: str, model: nn.Module, total_steps: int):
    """The peft config for `settings.method` (its registry record's builder), or None for a method peft
    does not build (full, head-only, bottleneck adapters)."""
    import peft

    spec = method_spec(settings.method)
    if spec.peft_config is None:
        return None
    task_type = peft.TaskType.TOKEN_CLS if task == "ner" else peft.TaskType.SEQ_CLS
    targets = (
        encoder_linear_layers(model) if settings.target_modules == ["all-linear"] else (settings.target_modules or None)
    )
    if targets is None and spec.attention_targets:
        targets = attention_targets(model)
    return spec.peft_config(settings, task_type, targets, total_steps)


def check_prefix_tuning(model: nn.Module) -> None:
    """Prefix tuning hands its virtual keys and values to the encoder as `past_key_values`; peft (0.21)
    refuses the method mid-run when the encoder's forward takes no such argument, as BERT's does not
    from transformers 5.24 on (it was renamed `cache`). Refuse it before any data is tokenised."""
    import inspect

    import peft
    import transformers

    backbone = getattr(model, getattr(model, "base_model_prefix", ""), model)
    if "past_key_values" not in inspect.signature(backbone.forward).parameters:
        raise ModelError(
            f"Prefix tuning cannot run on {type(backbone).__name__} with transformers {transformers.__version__} "
            f"and peft {peft.__version__}: the model's forward takes no past_key_values. Install the tested "
            "versions (pip install -r requirements.txt: transformers 5.23.0) or choose prompt tuning or lora."
        )


def apply_peft(model: nn.Module, settings: PeftSettings, task: str, total_steps: int, pooling: str = "") -> nn.Module:
    """Freeze and wrap `model` for the chosen method; the head always stays trainable, and the pooler
    too with `pooling="pooler-trained"` (see `use_pooling`)."""
    spec = method_spec(settings.method)
    if settings.method == "prefix":
        check_prefix_tuning(model)
    if spec.builds == "model":
        return model
    if spec.builds in ("head", "adapter"):
        trained = head_parameter_names(model) | (
            pooler_parameter_names(model) if pooling == "pooler-trained" else set()
        )
        if spec.builds == "adapter":
            return add_bottleneck_adapters(model, settings, trained)
        for name, param in model.named_parameters():
            param.requires_grad = name in trained
        return model
    import peft

    peft_config = build_peft_config(settings, task, model, total_steps)
    if pooling == "pooler-trained":
        # Trained next to the head and saved with the adapter, like the classifier peft adds itself.
        peft_config.modules_to_save = ["pooler"]
    try:
        return peft.get_peft_model(model, peft_config)
    except ValueError as exc:
        if settings.target_modules:
            raise ModelError(
                f"PEFT method {settings.method} could not adapt {settings.target_modules}: {exc}"
            ) from None
        if "target_modules" not in str(exc):
            raise ModelError(f"PEFT method {settings.method} does not fit this model: {exc}") from None
        # An architecture peft has no table for: adapt every linear layer except the head.
        peft_config.target_modules = encoder_linear_layers(model)
        return peft.get_peft_model(model, peft_config)


def add_bottleneck_adapters(model: nn.Module, settings: PeftSettings, trained: set[str]) -> nn.Module:
    """lab.methods.adapter's adapters in every layer, the head (and a trained pooler) trained beside them;
    a model whose layer outputs the adapter cannot find is refused in one line naming its type."""
    from lab.methods.adapter import add_adapters

    try:
        return add_adapters(
            model, settings.adapter_layout, settings.bottleneck, settings.adapter_nonlinearity, trained.__contains__
        )
    except ValueError as exc:
        raise ModelError(str(exc)) from None


def adapt(model: nn.Module, config: RunConfig, total_steps: int) -> tuple[nn.Module, str]:
    """What a run does to a freshly loaded model: its pooling, then its PEFT method. Returns the model
    to train and the pooling it uses ('' where there is none to choose)."""
    pooling = resolve_pooling(model, config.task, config.peft.method, config.model.pooling)
    return apply_peft(use_pooling(model, pooling), config.peft, config.task, total_steps, pooling), pooling


def restore_adalora_ranks(model: nn.Module, checkpoint: str | Path) -> None:
    """Before resuming AdaLoRA: peft saved the checkpoint's adapter already pruned to its rank pattern,
    so the fresh model takes that pattern first (peft then resizes its modules as it loads the weights)."""
    adapter_config = Path(checkpoint) / "adapter_config.json"
    if adapter_config.is_file():
        pattern = json.loads(adapter_config.read_text(encoding="utf-8")).get("rank_pattern")
        if pattern:
            peft_configs: Any = model.peft_config  # a PeftModel's, by adapter name
            peft_configs["default"].rank_pattern = pattern
