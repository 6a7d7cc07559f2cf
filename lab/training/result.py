"""What one training run returns to its caller: the engine's result, and the scripted engine's.

Its own module, free of torch, so the scripted stand-in (`lab.launch.scripted`) returns the same type
without importing the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class RunResult:
    status: str  # "completed" or "cancelled"
    output_dir: str
    metrics: dict[str, float] = field(default_factory=dict)
    per_label: list[dict[str, Any]] = field(default_factory=list)
    trainable_params: int = 0
    total_params: int = 0
    wall_seconds: float = 0.0
    peak_memory_mb: Optional[float] = None
    completed_steps: int = 0
