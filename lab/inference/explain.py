"""Why this label? Integrated gradients over the embedding layer (captum's LayerIntegratedGradients),
summed per whitespace-separated word.

For a text and a target (the predicted label; for NER, the tag predicted for one chosen word), each word
gets the share of the target's probability its sub-word embeddings account for, measured along a
straight path from a baseline in which every word is the pad token (the special tokens stay). Positive
numbers push towards the target, negative ones away; together they add up to about the probability
gained over the baseline (`delta` says how far off that sum is). Works for full fine-tuning and for
adapter models alike: the gradients flow through whatever the model trains.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import torch

from lab.data.preprocessing import word_predictions
from lab.errors import LabError

if TYPE_CHECKING:
    from lab.inference.predict import Predictor

DEFAULT_STEPS = 32  # points on the integration path: the sum is within a few % of the probability gained


@dataclass
class Explanation:
    words: list[str]  # the text split on whitespace
    attributions: list[float]  # one per word; positive pushes towards `target`
    target: str  # the label explained (NER: the chosen word's tag)
    probability: float  # the model's probability of `target`
    delta: float  # sum of attributions minus the probability gained over the baseline
    word: Optional[int] = None  # NER: the index of the word whose tag is explained

    def to_dict(self) -> dict[str, Any]:
        explained: dict[str, Any] = {"target": self.target, "probability": round(self.probability, 4)}
        if self.word is not None:
            explained["word"] = self.word
        return {"attributions": [round(a, 4) for a in self.attributions], "explained": explained}


def explain(predictor: Predictor, text: str, word: Optional[int] = None, steps: int = DEFAULT_STEPS) -> Explanation:
    """Attributions of each whitespace-separated word of `text` to the predicted label, or for NER to the
    tag predicted for word number `word` (default: the first word tagged as part of an entity, else the
    first word)."""
    words = text.split()
    if not words:
        raise LabError("Nothing to explain: the text is empty.")
    if predictor.task == "ner":
        encoded = predictor.tokenizer(
            words, is_split_into_words=True, truncation=True, max_length=predictor.max_length, return_tensors="pt"
        )
        token_words = encoded.word_ids(0)
    elif predictor.tokenizer.is_fast:
        encoded = predictor.tokenizer(
            text, truncation=True, max_length=predictor.max_length, return_offsets_mapping=True, return_tensors="pt"
        )
        token_words = _words_of_tokens(text, encoded.pop("offset_mapping")[0].tolist())
    else:  # no character offsets: the words pre-split, as a WordPiece tokenizer would split them anyway
        encoded = predictor.tokenizer(
            words, is_split_into_words=True, truncation=True, max_length=predictor.max_length, return_tensors="pt"
        )
        token_words = encoded.word_ids(0)
    model, device = predictor.model, predictor.device
    input_ids = encoded["input_ids"].to(device)
    attention_mask = encoded["attention_mask"].to(device)
    with torch.no_grad():
        probabilities = model(input_ids=input_ids, attention_mask=attention_mask).logits.float().softmax(-1)
    if predictor.task == "ner":
        first_piece = word_predictions(token_words, list(range(len(token_words))), len(words))
        tags = probabilities[0, predictor.virtual_tokens :].argmax(-1)
        if word is None:
            tagged = [
                i for i, p in enumerate(first_piece) if p is not None and predictor.label_names[int(tags[p])] != "O"
            ]
            word = tagged[0] if tagged else 0
        if not 0 <= word < len(words) or first_piece[word] is None:
            raise LabError(
                f"Word {word} is not in the text the model sees (it has {len(words)} words, "
                f"{predictor.max_length} sub-word tokens at most)."
            )
        piece = first_piece[word]
        assert piece is not None  # checked above
        position = predictor.virtual_tokens + piece
        target = int(tags[piece])
        select: tuple[slice | int, ...] = (slice(None), position, target)
    else:
        target = int(probabilities[0].argmax())
        select = (slice(None), target)

    def target_probability(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return model(input_ids=ids, attention_mask=mask).logits.float().softmax(-1)[select]

    limit = sys.getrecursionlimit()
    from captum.attr import LayerIntegratedGradients

    sys.setrecursionlimit(limit)  # captum's import pulls in jedi, which raises it for the whole process

    special = torch.tensor([w is None for w in token_words], device=device)
    pad = predictor.tokenizer.pad_token_id if predictor.tokenizer.pad_token_id is not None else 0
    baseline = torch.where(special, input_ids[0], torch.full_like(input_ids[0], pad)).unsqueeze(0)
    integrated = LayerIntegratedGradients(target_probability, model.get_input_embeddings())
    with torch.inference_mode(False), torch.enable_grad():
        per_token, delta = integrated.attribute(
            input_ids,
            baselines=baseline,
            additional_forward_args=(attention_mask,),
            n_steps=steps,
            return_convergence_delta=True,
        )
    per_token = per_token.sum(-1)[0].tolist()
    scores = [0.0] * len(words)
    for token, word_index in enumerate(token_words):
        if word_index is not None and word_index < len(words):
            scores[word_index] += per_token[token]
    label = predictor.label_names[target]
    probability = float(probabilities[select][0])
    return Explanation(
        words=words,
        attributions=scores,
        target=label,
        probability=probability,
        delta=float(delta[0]),
        word=word if predictor.task == "ner" else None,
    )


def _words_of_tokens(text: str, offsets: list[list[int]]) -> list[Optional[int]]:
    """The whitespace-separated word each token came from (None for special tokens), from the fast
    tokenizer's character offsets: right whatever the tokenizer does inside a word."""
    spans = [match.span() for match in re.finditer(r"\S+", text)]
    owners: list[Optional[int]] = []
    for start, end in offsets:
        if start == end:  # [CLS], [SEP] and padding have an empty span
            owners.append(None)
            continue
        owners.append(next((i for i, (left, right) in enumerate(spans) if left <= start < right), None))
    return owners
