"""Memory of one run, not of the process that happens to run it.

The app trains many runs in one long-lived process, so the process's lifetime peak (`ru_maxrss`,
or CUDA's unreset `max_memory_allocated`) would give every later run the largest earlier peak. A
`RunMemory` measures from the start of its run: on CUDA it resets the allocator's peak and reads it
back; elsewhere a background thread samples the process's resident memory (RSS) every
`interval` seconds and keeps the largest sample, so the figure is "peak RSS while this run
trained", which includes what the process held before it started (say which in the UI).
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from typing import Optional

import torch

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_mb() -> float:
    """This process's resident memory now (Linux /proc), else its peak so far (other systems)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * PAGE_BYTES / 2**20
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class RunMemory:
    """Start with the run, read `current_mb` any time and `peak_mb` at the end; `stop()` ends sampling."""

    def __init__(self, device: str, interval: float = 0.2) -> None:
        self.device = device
        self.kind = "GPU memory allocated" if device == "cuda" else "peak RSS of the training process"
        self._peak = 0.0
        self._done = threading.Event()
        self._thread: Optional[threading.Thread] = None
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        else:
            self._peak = resident_mb()
            self._thread = threading.Thread(target=self._sample, args=(interval,), name="lab-memory", daemon=True)
            self._thread.start()

    def _sample(self, interval: float) -> None:
        while not self._done.wait(interval):
            self._peak = max(self._peak, resident_mb())

    def current_mb(self) -> float:
        return torch.cuda.memory_allocated() / 2**20 if self.device == "cuda" else resident_mb()

    def peak_mb(self) -> float:
        if self.device == "cuda":
            return torch.cuda.max_memory_allocated() / 2**20
        self._peak = max(self._peak, resident_mb())
        return self._peak

    def stop(self) -> float:
        """End sampling and return the peak."""
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        return self.peak_mb()
