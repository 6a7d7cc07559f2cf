"""What keeps a run's course the same however it is run: the order of its batches and the RNG its dropout
draws from. The lab's Trainer and the standalone script (which inlines this module) both mix it in, so a
resumed run, a run evaluated more often and the script all train on the same batches with the same masks.

This module imports nothing of the lab: the standalone script inlines its source."""

from __future__ import annotations

from typing import Any

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """The Trainer's length-grouped order, drawn from (seed, epoch) instead of the global RNG.

    The Trainer starts an epoch's iterator before it restores a checkpoint's RNG state, so a run resumed in
    its second epoch drew that epoch's order from a freshly seeded RNG and trained on other batches than
    the run it continued (tests/test_chaos.py). The Trainer calls set_epoch at each epoch's start."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class ReproducibleOrder:
    """A Trainer mix-in: length-grouped batches in a seeded order per epoch, and evaluations that leave the
    training RNG where they found it."""

    args: Any
    train_dataset: Any

    def _get_train_sampler(self, train_dataset=None):
        dataset: Any = train_dataset if train_dataset is not None else self.train_dataset
        columns = getattr(dataset, "column_names", ())
        if self.args.train_sampling_strategy != "group_by_length" or "input_ids" not in columns:
            return super()._get_train_sampler(train_dataset)  # type: ignore[misc]
        column = self.args.length_column_name  # the lab stores each example's length; the script counts them
        lengths = list(dataset[column]) if column in columns else [len(ids) for ids in dataset["input_ids"]]
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return EpochSeededLengthGroupedSampler(batch, lengths, seed)

    def evaluate(self, *args, **kwargs):
        # An evaluation's data loader draws its seed from the global RNG, which dropout uses next: without the
        # fork, evaluating more often (a first table at step 5) changed what the run learned.
        with torch.random.fork_rng(devices=[]):
            return super().evaluate(*args, **kwargs)  # type: ignore[misc]
