"""Push a finished run's model (or adapter) folder, model card included, to the Hugging Face hub.

The repository is created private unless the user asks for a public one. What goes up is a copy of the
folder that carries no pickle (`training_args.bin` and other pickled files stay here; weights go as
safetensors) and no absolute path of this machine (in JSON files and the card, a path becomes its base
name, the offline default model its hub id).

The token comes from `HF_TOKEN` or the user's `huggingface-cli login`; it is handed to huggingface_hub and
nowhere else: never logged, never in an event, the run store, a config or an error message (an error's
text is scrubbed of it before it is shown).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

from lab.errors import LabError
from lab.model.loading import MODEL_INFO_FILE
from lab.training.model_card import CARD_FILE, public_name

# Formats that unpickle (run code) when loaded: never uploaded.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# An absolute POSIX path inside text (not the `//` of a URL): replaced by its base name.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s/'\"`|,;()\[\]<>]+/)+([^\s/'\"`|,;()\[\]<>]+)")

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_push_folder(model_dir: Path) -> list[str]:
    """The files that would be uploaded (no pickle among them); raises LabError when the folder lacks what a
    user needs to load it."""
    missing = [
        name for name in (CARD_FILE, MODEL_INFO_FILE, "tokenizer_config.json") if not (model_dir / name).is_file()
    ]
    if missing or not list(model_dir.glob("*.safetensors")):
        raise LabError(
            f"{model_dir} is not a complete model folder (missing {', '.join(missing) or 'safetensors weights'})."
        )
    return sorted(
        str(path.relative_to(model_dir))
        for path in model_dir.rglob("*")
        if path.is_file() and path.suffix.lower() not in PICKLE_SUFFIXES
    )


def publishable_copy(model_dir: Path, target: Path) -> Path:
    """Copy what `check_push_folder` lists into `target`, with every absolute path in a JSON file or the
    model card replaced by its public name; returns `target`."""
    for name in check_push_folder(model_dir):
        source, copy = model_dir / name, target / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        if source.suffix.lower() == ".json":
            data = _public(json.loads(source.read_text(encoding="utf-8")))
            copy.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        elif source.suffix.lower() == ".md":
            text = source.read_text(encoding="utf-8")
            copy.write_text(_ABSOLUTE_PATH.sub(lambda match: public_name(match.group(0)), text), encoding="utf-8")
        else:
            shutil.copy2(source, copy)
    return target


def push_folder(
    model_dir: Path, repo_id: str, private: bool = True, api: Optional[Any] = None, token: Optional[str] = None
) -> str:
    """Create (or reuse) the hub repository, private unless `private=False`, and upload the publishable copy
    of the folder; returns the repository's URL."""
    if not _REPO_ID.match(repo_id):
        raise LabError(f"{repo_id!r} is not a hub repository id; use OWNER/NAME, like my-name/imdb-lora.")
    check_push_folder(model_dir)
    token = token or os.environ.get("HF_TOKEN") or None
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="lab-push-") as staging:
        folder = publishable_copy(model_dir, Path(staging) / model_dir.name)
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            api.upload_folder(
                folder_path=str(folder),
                repo_id=repo_id,
                repo_type="model",
                commit_message="Upload from Fine-Tuning Lab",
            )
        except Exception as exc:  # noqa: BLE001 - network, auth and hub errors all become one clean line
            raise LabError(f"Could not push to the Hugging Face hub: {_scrub(_reason(exc), token)}") from None
    return str(url)


def _public(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _public(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_public(item) for item in value]
    return public_name(value) if isinstance(value, str) and os.path.isabs(value) else value


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
