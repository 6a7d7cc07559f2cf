"""Uploaded data files, kept in the runs folder for the runs that train on them.

An upload lives at `<runs dir>/uploads/<content hash>/<the user's file name>`: the same content is
stored once, and every name and message shows the file as the user named it. It is written to a
temporary name and renamed when whole, so a write cut short (a full disk, a killed server) never
leaves a partial file under the name a later upload or run would trust. An upload no run's config
names is pruned once it is `UNUSED_UPLOAD_SECONDS` old (deleting a run frees its upload).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import time
from pathlib import Path

from lab.accounts.uploads import OWNER_FILE, UPLOADS_FOLDER
from lab.data.readers import UPLOAD_SUFFIXES
from lab.errors import DataError

# An upload nobody trains on is kept this long after it was last uploaded (the Data page reads it meanwhile).
UNUSED_UPLOAD_SECONDS = 24 * 3600
_HASH_CHARACTERS = 16


def save_upload(file_name: str, data: bytes, runs_dir: str | Path, owner: str = "") -> Path:
    """Keep an uploaded file under `<runs dir>/uploads/<hash>/` and return its path; prune old unused ones.
    With accounts the folder is the `owner`'s alone (lab.accounts.uploads)."""
    suffix = Path(file_name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise DataError(
            f"{file_name}: unsupported file type {suffix or '(none)'}; use one of {', '.join(UPLOAD_SUFFIXES)}."
        )
    if not data:
        raise DataError(f"{file_name} is empty.")
    uploads = Path(runs_dir) / UPLOADS_FOLDER
    digest = hashlib.sha256(f"{owner}\0".encode() + data if owner else data).hexdigest()
    path = uploads / digest[:_HASH_CHARACTERS] / f"{_safe_stem(file_name)}{suffix}"
    if path.is_file() and path.stat().st_size == len(data):
        os.utime(path)  # uploaded again: recently used
        return path
    _write_whole(path, data, file_name)
    if owner:
        (path.parent / OWNER_FILE).write_text(owner, encoding="utf-8")
    prune_uploads(runs_dir, keep=path)
    return path


def _safe_stem(file_name: str) -> str:
    # Letters of any script, digits, "-", "_" and inner dots; nothing that could climb out of the folder.
    return re.sub(r"[^\w.-]+", "-", Path(file_name).stem).strip("-.")[:60] or "data"


def _write_whole(path: Path, data: bytes, file_name: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"{file_name} could not be saved in {path.parent.parent}: {exc.strerror or exc}. "
            "Free some disk space and upload it again."
        ) from None


def prune_uploads(runs_dir: str | Path, keep: Path | None = None, now: float | None = None) -> list[Path]:
    """Remove the uploads that no run's config or published assignment names and that were last uploaded
    over UNUSED_UPLOAD_SECONDS ago; returns what it removed."""
    uploads = Path(runs_dir) / UPLOADS_FOLDER
    if not uploads.is_dir():
        return []
    named_in = [*Path(runs_dir).glob("*/config.yaml"), *Path(runs_dir).glob("assignments/*.yaml")]
    configs = "\n".join(_read(config) for config in named_in)
    cutoff = (now if now is not None else time.time()) - UNUSED_UPLOAD_SECONDS
    removed = []
    for entry in uploads.iterdir():
        if (keep is not None and entry in keep.parents) or entry.name.startswith("."):
            continue
        try:
            if entry.name in configs or _last_used(entry) > cutoff:
                continue
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            removed.append(entry)
        except OSError:
            continue  # another server pruned it first, or it is not ours to remove
    return removed


def _last_used(entry: Path) -> float:
    # A folder's own time changes only when a file is added; an upload made again touches its file.
    files = list(entry.iterdir()) if entry.is_dir() else []
    return max(item.stat().st_mtime for item in [entry, *files])


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


# `<uploads>/<hash>/<name>` (and `<uploads>/<12-hex hash>-<name>` as uploads were kept before).
_UPLOAD_PATH = re.compile(r"\S*" + re.escape(UPLOADS_FOLDER) + r"[/\\][0-9a-f]{12,}[/\\-]([^\s,:;/\\]+)")


def for_the_page(message: str) -> str:
    """A library message as the web page says it: an uploaded file by the name the user gave it, not by
    its internal path."""
    return _UPLOAD_PATH.sub(lambda match: match.group(1), message)
