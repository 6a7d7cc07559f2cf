"""Each training example's probability of its gold label (a NER sentence's: of its least believed word's
gold tag) every time training sees it, for the data map (Swayamdipta et al., 2020, "Dataset
Cartography"); written to `training_dynamics.json` beside the report.

A run of under two passes over the data has no spread over epochs, so it also scores a fixed sample of
training examples at each validation evaluation (`EvaluationDynamicsCallback`): the within-epoch map.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from lab.config import RunConfig
from lab.data.preprocessing import EXAMPLE_INDEX, IGNORE_INDEX
from lab.data.splits import LoadedData
from lab.data.tags import split_tag

DYNAMICS_FILE = "training_dynamics.json"
_TEXT_CHARACTERS = 300  # of each training text kept for the data map's table
# Training examples re-scored at each evaluation of a short run: a pass the size of the one-click cards'
# validation split (200), so each of their evaluations takes about twice as long.
EVALUATION_SAMPLE = 200


class TrainingDynamics:
    """Each training example's gold-label probability at each pass over the data (its epoch), as the
    training forward pass computed it; LabTrainer.compute_loss records, the engine writes the file.
    A NER sentence's probability is that of its least believed word's gold tag: one slipped tag makes a
    sentence suspect, which a mean over its many easy `O` words would hide (measured on a fixture with
    names left untagged, 3 epochs of LoRA: median 0.12 for those sentences against 0.65 for the others,
    where the mean gave 0.66 against 0.86). Its correctness is the share of its words tagged right."""

    def __init__(self, texts: Sequence[str], labels: Sequence[str]):
        self.texts = [text[:_TEXT_CHARACTERS] for text in texts]
        self.labels = list(labels)  # what the table shows as each example's gold: its label, or its entity types
        self.by_epoch: dict[int, dict[int, tuple[float, float]]] = {}
        self.by_evaluation: dict[int, dict[int, tuple[float, float]]] = {}  # step -> the evaluation sample's

    def record(self, epoch: int, indices: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        _store(self.by_epoch.setdefault(epoch, {}), indices, logits, labels)

    def record_evaluation(self, step: int, indices: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        _store(self.by_evaluation.setdefault(step, {}), indices, logits, labels)

    def to_dict(self) -> dict[str, Any]:
        epochs = sorted(self.by_epoch)
        written: dict[str, Any] = {
            "texts": self.texts,
            "labels": self.labels,
            "epochs": [[self.by_epoch[e].get(i, (None, None))[0] for i in range(len(self.texts))] for e in epochs],
            "correct": [[self.by_epoch[e].get(i, (None, None))[1] for i in range(len(self.texts))] for e in epochs],
        }
        if self.by_evaluation:
            steps = sorted(self.by_evaluation)
            sample = sorted(set().union(*(self.by_evaluation[s] for s in steps)))
            written["evaluations"] = {
                "steps": steps,
                "examples": sample,  # rows of texts / labels
                "probabilities": [[self.by_evaluation[s].get(i, (None, None))[0] for i in sample] for s in steps],
                "correct": [[self.by_evaluation[s].get(i, (None, None))[1] for i in sample] for s in steps],
            }
        return written

    def write(self, folder: Path) -> None:
        (folder / DYNAMICS_FILE).write_text(json.dumps(self.to_dict()), encoding="utf-8")


def _store(
    seen: dict[int, tuple[float, float]], indices: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor
) -> None:
    probabilities = logits.detach().float().softmax(-1)
    if labels.dim() == 1:  # one label per text
        gold = probabilities.gather(1, labels.view(-1, 1)).squeeze(1)
        right = probabilities.argmax(-1).eq(labels).float()
    else:  # one per word (its first sub-word; the others and the padding are ignored)
        counted = labels.ne(IGNORE_INDEX)
        safe = labels.clamp(min=0)
        words = counted.sum(1).clamp(min=1)
        word_gold = probabilities.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
        gold = word_gold.masked_fill(~counted, 1.0).min(1).values
        right = (probabilities.argmax(-1).eq(safe) & counted).sum(1) / words
    for index, probability, correct in zip(indices.tolist(), gold.tolist(), right.tolist()):
        seen[index] = (probability, correct)


class EvaluationDynamicsCallback(TrainerCallback):
    """At each validation evaluation, the gold-label probability of a fixed, seeded sample of training
    examples (`rows`: the tokenised training split with its `example_index`), in eval mode: no dropout and
    no random draw, so the run trains exactly as it would without it.

    Put it before the ProjectionCallback: that one reads the head's inputs captured during the evaluation
    by position and then forgets them, so this pass's inputs, captured after, must not outlive it."""

    def __init__(
        self,
        dynamics: TrainingDynamics,
        rows: Any,
        collate: Callable[[list[dict[str, Any]]], dict[str, Any]],
        split_name: Callable[[], str],
        batch_size: int,
        virtual_tokens: int = 0,
        seed: int = 0,
        size: int = EVALUATION_SAMPLE,
    ):
        self.dynamics, self.collate, self.split_name = dynamics, collate, split_name
        self.batch_size, self.virtual_tokens = batch_size, virtual_tokens
        chosen = random.Random(seed).sample(range(len(rows)), min(size, len(rows)))
        lengths = rows["length"]
        self.rows = rows.select(sorted(chosen, key=lambda row: -lengths[row]))  # longest first: less padding

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        if model is None or self.split_name() != "validation":
            return
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        with torch.no_grad():
            for start in range(0, len(self.rows), self.batch_size):
                batch = self.collate(list(self.rows.select(range(start, min(start + self.batch_size, len(self.rows))))))
                indices, labels = batch.pop(EXAMPLE_INDEX), batch.pop("labels")
                logits = model(**{name: value.to(device) for name, value in batch.items()}).logits
                logits = logits[:, self.virtual_tokens :, :] if self.virtual_tokens else logits
                self.dynamics.record_evaluation(state.global_step, indices, logits, labels.to(device))
        model.train(was_training)


def needs_evaluation_sample(config: RunConfig, total_steps: int, train_examples: int) -> bool:
    """Whether a run's data map must come from its evaluations: under two passes over the data (no spread
    over epochs) but evaluated at least twice by steps."""
    t = config.train
    examples_seen = total_steps * t.train_batch_size * t.gradient_accumulation_steps * max(1, t.num_devices)
    evaluations = math.ceil(total_steps / t.eval_steps) if t.eval_steps else 0
    return examples_seen < 2 * train_examples and evaluations >= 2


def training_dynamics(task: str, loaded: LoadedData) -> TrainingDynamics:
    """The data map's recorder for a run's training split: each text with its label, or each sentence
    with the entity types it holds ("O" when none)."""
    train, names = loaded.splits["train"], loaded.label_names
    if task == "classification":
        return TrainingDynamics(train["text"], [names[label] for label in train["label"]])
    types = [sorted({split_tag(names[tag])[1] for tag in tags} - {""}) for tags in train["tags"]]
    return TrainingDynamics([" ".join(tokens) for tokens in train["tokens"]], [", ".join(t) or "O" for t in types])
