"""Where a run trains and in what precision: CUDA, then MPS, then CPU; bf16 where the GPU has it."""

from __future__ import annotations

import torch

from lab.errors import ModelError


def pick_device(requested: str = "auto") -> str:
    """CUDA, then MPS, then CPU; an explicit choice that is not available is an error."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
        "cpu": True,
    }
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
