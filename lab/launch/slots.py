"""Device slots: how many runs train at once on this machine, and which GPUs each one sees.

A job runner has one slot per visible GPU (the CPU counts as one slot) unless it is asked for `parallel`
slots: then slot i trains on GPU i modulo the GPU count (two runs share a GPU when there are more slots
than GPUs), or on the CPU, whose cores the slots' worker processes split between them. A run's
`train.devices` (GPU ids as CUDA_VISIBLE_DEVICES names them) limits the slots it may take.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from typing import Optional

from lab.config import RunConfig
from lab.errors import ConfigError


def visible_gpus() -> list[str]:
    """CUDA device ids this process may hand out, as CUDA_VISIBLE_DEVICES would name them."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return (visible or [str(i) for i in range(count)])[:count]


def device_slots(gpu_ids: Sequence[str]) -> int:
    """The slots of a machine with these GPUs: one per GPU, and the CPU counts as one."""
    return max(1, len(gpu_ids))


def gpu_of(slot: int, gpu_ids: Sequence[str]) -> Optional[str]:
    """The GPU a slot trains on (slots beyond the GPU count wrap around), or None on a CPU machine."""
    return gpu_ids[slot % len(gpu_ids)] if gpu_ids else None


def pick_slots(
    free: Collection[int], wanted: int, gpu_ids: Sequence[str], allowed: Sequence[str] = ()
) -> Optional[list[int]]:
    """`wanted` free slots on distinct GPUs, each among `allowed` when that is given; None when they are
    not free yet. On a CPU machine any free slot does, and `allowed` is not asked (there is no GPU to pick)."""
    taken: list[int] = []
    seen: set[Optional[str]] = set()
    for slot in sorted(free):
        gpu = gpu_of(slot, gpu_ids)
        if gpu_ids and ((allowed and gpu not in allowed) or gpu in seen):
            continue
        taken.append(slot)
        seen.add(gpu)
        if len(taken) == wanted:
            return taken
    return None


def gpus_for(slots: Sequence[int], gpu_ids: Sequence[str]) -> list[str]:
    """The CUDA_VISIBLE_DEVICES of a worker holding `slots`."""
    return [gpu for gpu in (gpu_of(slot, gpu_ids) for slot in slots) if gpu is not None]


def cpu_threads_per_slot(slot_count: int, gpu_ids: Sequence[str]) -> int:
    """Threads each worker may use when several share the CPU (0: leave torch's default): without it every
    worker starts one thread per core, and two runs on 2 cores fight over them."""
    if gpu_ids or slot_count < 2:
        return 0
    return max(1, (os.cpu_count() or 1) // slot_count)


def check_devices_here(config: RunConfig, gpu_ids: Sequence[str]) -> None:
    """Refuse a run whose `train.devices` names no GPU of this machine, or fewer than it trains on: it would
    wait in the queue for ever."""
    wanted = config.train.devices
    if not wanted or not gpu_ids:
        return
    present = [gpu for gpu in wanted if gpu in gpu_ids]
    if len(present) < min(config.train.num_devices, len(gpu_ids)):
        raise ConfigError(
            f"train.devices is {', '.join(wanted)}, but this machine's GPUs are {', '.join(gpu_ids)}: "
            f"name {config.train.num_devices} of them, or leave it empty for any free one."
        )
