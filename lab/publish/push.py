"""Push a finished run's model (or adapter) folder, model card included, to the Hugging Face hub.

The token comes from `HF_TOKEN` or the user's `huggingface-cli login`; it is handed to huggingface_hub and
nowhere else: never logged, never in an event, the run store, a config or an error message (an error's
text is scrubbed of it before it is shown).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional

from lab.errors import LabError
from lab.model.loading import MODEL_INFO_FILE
from lab.training.model_card import CARD_FILE

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_push_folder(model_dir: Path) -> list[str]:
    """The files that would be uploaded; raises LabError when the folder lacks what a user needs to load it."""
    missing = [
        name for name in (CARD_FILE, MODEL_INFO_FILE, "tokenizer_config.json") if not (model_dir / name).is_file()
    ]
    weights = list(model_dir.glob("*.safetensors")) + list(model_dir.glob("*.bin"))
    if missing or not weights:
        raise LabError(f"{model_dir} is not a complete model folder (missing {', '.join(missing) or 'weights'}).")
    return sorted(str(path.relative_to(model_dir)) for path in model_dir.rglob("*") if path.is_file())


def push_folder(
    model_dir: Path, repo_id: str, private: bool = False, api: Optional[Any] = None, token: Optional[str] = None
) -> str:
    """Create (or reuse) the hub repository and upload the folder; returns the repository's URL."""
    if not _REPO_ID.match(repo_id):
        raise LabError(f"{repo_id!r} is not a hub repository id; use OWNER/NAME, like my-name/imdb-lora.")
    check_push_folder(model_dir)
    token = token or os.environ.get("HF_TOKEN") or None
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(
            folder_path=str(model_dir), repo_id=repo_id, repo_type="model", commit_message="Upload from Fine-Tuning Lab"
        )
    except Exception as exc:  # noqa: BLE001 - network, auth and hub errors all become one clean line
        raise LabError(f"Could not push to the Hugging Face hub: {_scrub(_reason(exc), token)}") from None
    return str(url)


def _reason(exc: Exception) -> str:
    name = type(exc).__name__
    if name == "OfflineModeIsEnabled" or os.environ.get("HF_HUB_OFFLINE") == "1":
        return "no network reaches it from here (offline mode is on). Push from a machine that has one."
    if name in ("LocalTokenNotFoundError",) or "401" in str(exc) or "403" in str(exc):
        return "the token was refused or is missing: set HF_TOKEN or run huggingface-cli login."
    return f"{name}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"


def _scrub(text: str, token: Optional[str]) -> str:
    text = re.sub(r"hf_[A-Za-z0-9]{8,}", "hf_***", text)
    return text.replace(token, "***") if token else text
