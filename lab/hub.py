"""Whether the Hugging Face hub answers, decided once and before transformers / datasets load.

Both libraries read `HF_HUB_OFFLINE` at import time. Without it, a hub name on a machine with no
network retries for 20-45 s before failing; with it, the failure is immediate and we can say why.
The answer goes into the environment either way, so worker processes inherit it instead of probing again.
"""

from __future__ import annotations

import os
import socket
import threading

HUB_HOST = "huggingface.co"


def hub_reachable(timeout: float = 1.5) -> bool:
    """Whether a TCP connection to the hub opens within `timeout` seconds, name lookup included: the
    socket's own timeout does not cover DNS, which can hang for much longer, so the probe runs in a
    daemon thread that is simply not waited for past the timeout."""
    answer: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((HUB_HOST, 443), timeout=timeout):
                answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=probe, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answer and answer[0])


def configure_offline_mode() -> None:
    """Turn on offline mode when the hub does not answer quickly; a value the user set wins."""
    if "HF_HUB_OFFLINE" in os.environ:
        os.environ.setdefault("HF_DATASETS_OFFLINE", os.environ["HF_HUB_OFFLINE"])
        return
    offline = "0" if hub_reachable() else "1"
    os.environ["HF_HUB_OFFLINE"] = offline
    os.environ["HF_DATASETS_OFFLINE"] = offline


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
