"""Using a finished run's saved model: labels with probabilities, or one tag per word."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lab.config import NO_ADAPTER_METHODS, ModelConfig
from lab.data.preprocessing import split_words, word_predictions, word_tags
from lab.errors import LabError, ModelError
from lab.methods.registry import method_spec
from lab.model.loading import MODEL_INFO_FILE, load_model, resolve_model_path
from lab.model.pooling import use_pooling


@dataclass
class Prediction:
    text: str
    label: str = ""
    score: float = 0.0
    probabilities: dict[str, float] = field(default_factory=dict)
    words: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    tag_scores: list[float] = field(default_factory=list)

    def to_dict(self, task: str) -> dict[str, Any]:
        if task == "ner":
            return {
                "text": self.text,
                "words": self.words,
                "tags": self.tags,
                "scores": [round(s, 4) for s in self.tag_scores],
            }
        return {
            "text": self.text,
            "label": self.label,
            "score": round(self.score, 4),
            "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
        }


def find_model_dir(path: str | Path) -> Path:
    """Accept a run's output folder or its `model/` folder."""
    path = Path(path)
    for candidate in (path, path / "model"):
        if (candidate / MODEL_INFO_FILE).is_file():
            return candidate
    raise LabError(
        f"{path} holds no saved model: give the --output folder of a finished run "
        f"(it contains model/{MODEL_INFO_FILE})."
    )


class Predictor:
    """Loads a saved model (full weights or a PEFT adapter over its base model) for inference."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        from transformers import AutoTokenizer

        self.model_dir = find_model_dir(path)
        self.info = json.loads((self.model_dir / MODEL_INFO_FILE).read_text(encoding="utf-8"))
        self.task: str = self.info["task"]
        self.label_names: list[str] = self.info["label_names"]
        self.max_length: int = self.info["max_length"]
        self.virtual_tokens: int = self.info.get("num_virtual_tokens", 0)
        trust = bool(self.info.get("trust_remote_code", False))
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), trust_remote_code=trust)
        self.model = self._load_model(trust).to(device).eval()
        self.device = device

    def _load_model(self, trust: bool):
        from transformers.utils import logging as hf_logging

        pooling = self.info.get("pooling", "")
        # A new head (or, with mean pooling, an unused pooler) is replaced by what was saved:
        # transformers' load report ("MISSING ... newly initialized, consider training") would mislead.
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # "Loading weights" bars: a terminal user sees only the answer
        try:
            if self.info["peft_method"] in NO_ADAPTER_METHODS:
                from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

                auto_class = (
                    AutoModelForTokenClassification if self.task == "ner" else AutoModelForSequenceClassification
                )
                return use_pooling(auto_class.from_pretrained(str(self.model_dir), trust_remote_code=trust), pooling)
            base = load_model(
                ModelConfig(name_or_path=self.info["base_model"], trust_remote_code=trust),
                self.task,
                self.label_names,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        finally:
            hf_logging.set_verbosity(verbosity)
        if method_spec(self.info["peft_method"]).builds == "adapter":  # the lab's own adapters, not peft's
            from lab.methods.adapter import load_adapters

            return load_adapters(use_pooling(base, pooling), self.model_dir)
        from peft import PeftModel

        try:
            return PeftModel.from_pretrained(use_pooling(base, pooling), str(self.model_dir))
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"Could not load the adapter in {self.model_dir} over "
                f"{resolve_model_path(self.info['base_model'])}: {exc}"
            ) from None

    @torch.inference_mode()
    def predict(self, texts: list[str], split_punctuation: bool = False) -> list[Prediction]:
        """One prediction per text. For NER each whitespace-separated word gets one tag; with
        `split_punctuation`, punctuation is split from words first, as CoNLL-style data has it."""
        if self.task != "ner":
            return [self._predict_text(t) for t in texts]
        return [self._predict_words(t, split_words(t) if split_punctuation else t.split()) for t in texts]

    def _predict_text(self, text: str) -> Prediction:
        encoded = self.tokenizer(text, truncation=True, max_length=self.max_length, return_tensors="pt").to(self.device)
        probabilities = self.model(**encoded).logits[0].float().softmax(-1).tolist()
        best = max(range(len(probabilities)), key=probabilities.__getitem__)
        return Prediction(
            text=text,
            label=self.label_names[best],
            score=probabilities[best],
            probabilities=dict(zip(self.label_names, probabilities)),
        )

    def _predict_words(self, text: str, words: list[str]) -> Prediction:
        if not words:
            return Prediction(text=text)
        encoded = self.tokenizer(
            words, is_split_into_words=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        word_ids = encoded.word_ids(0)
        logits = self.model(**encoded.to(self.device)).logits[0, self.virtual_tokens :]
        scores, best = logits.float().softmax(-1).max(-1)
        # The engine's scorer maps tokens to words with the same rule: a word cut by max_length is "O".
        tags = word_tags(word_ids, best.tolist(), len(words), self.label_names)
        first_piece = word_predictions(word_ids, list(range(len(word_ids))), len(words))
        tag_scores = [0.0 if position is None else float(scores[position]) for position in first_piece]
        return Prediction(text=text, words=words, tags=tags, tag_scores=tag_scores)
