"""Whether the Hugging Face hub answers, decided once and before transformers / datasets load.

Both libraries read `HF_HUB_OFFLINE` at import time. Without it, a hub name on a machine with no
network retries for 20-45 s before failing; with it, the failure is immediate and we can say why.
"""
from __future__ import annotations

import os
import socket

HUB_HOST = "huggingface.co"


def hub_reachable(timeout: float = 1.5) -> bool:
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def configure_offline_mode() -> None:
    """Turn on offline mode when the hub does not answer quickly; a value the user set wins."""
    if "HF_HUB_OFFLINE" in os.environ:
        os.environ.setdefault("HF_DATASETS_OFFLINE", os.environ["HF_HUB_OFFLINE"])
        return
    if not hub_reachable():
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["HF_DATASETS_OFFLINE"] = "1"


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
