"""The validation examples' sentence vectors (the head's input) at each evaluation, projected to 2-D by a
PCA fitted at the first evaluation (ProjectionEvent)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Optional

import torch
from transformers import TrainerCallback

from lab.events import EventSink, ProjectionEvent

PROJECTION_POINTS = 300  # validation examples drawn per frame


def head_module(model: torch.nn.Module) -> Optional[torch.nn.Module]:
    """The task head (its input is the sentence vector), through peft's wrappers."""
    for name in ("classifier", "score"):
        for path, module in model.named_modules():  # outermost first: peft's wrapper before its copies
            if path.split(".")[-1] == name:
                return module
    return None


class ProjectionCallback(TrainerCallback):
    """Captures the head's input for a fixed sample of validation examples at every validation evaluation
    (a forward pre-hook, active only in eval mode) and emits their 2-D PCA coordinates."""

    def __init__(
        self,
        emit: EventSink,
        head: torch.nn.Module,
        labels_in_order: Sequence[str],
        split_name,
        seed: int = 0,
        points: int = PROJECTION_POINTS,
    ):
        self.emit, self.split_name = emit, split_name  # split_name(): the split being evaluated now
        count = len(labels_in_order)
        self.positions = sorted(random.Random(seed).sample(range(count), min(points, count)))
        self.labels = [labels_in_order[i] for i in self.positions]
        self.captured: list[torch.Tensor] = []
        self.mean: Optional[torch.Tensor] = None
        self.components: Optional[torch.Tensor] = None
        head.register_forward_pre_hook(self._capture)

    def _capture(self, module, inputs) -> None:
        if not module.training and inputs and isinstance(inputs[0], torch.Tensor) and inputs[0].dim() == 2:
            self.captured.append(inputs[0].detach().float().cpu())

    def on_evaluate(self, args, state, control, **kwargs):
        vectors = torch.cat(self.captured) if self.captured else None
        self.captured = []
        if vectors is None or self.split_name() != "validation" or len(vectors) <= max(self.positions, default=0):
            return
        sample = vectors[self.positions]
        if self.components is None or self.mean is None:  # fitted once, on the first frame: later frames share its axes
            self.mean = sample.mean(0)
            _, _, right = torch.linalg.svd(sample - self.mean, full_matrices=False)
            self.components = right[:2].T
        points = ((sample - self.mean) @ self.components).tolist()
        self.emit(
            ProjectionEvent(
                step=state.global_step, points=[[round(x, 4), round(y, 4)] for x, y in points], labels=list(self.labels)
            )
        )
