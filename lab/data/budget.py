"""What reading one data file may cost, and files parsed once.

Every file is bounded before it is believed: its size on disk (`MAX_FILE_BYTES`), its rows
(`MAX_ROWS`: rows, records or sentences) and its cells (`MAX_CELLS`: rows x columns, or words). A
refusal is one line naming the file and the bound.

Parsed files are kept by content hash (the latest `PARSED_FILES`, files of `PARSED_BYTES` in all): the
Data and New run pages rerun on every click, and parse a file once.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TypeVar

from lab.errors import DataError

# What one file may cost the server: forty times the IMDB train split in rows, and a few hundred MB of text.
MAX_FILE_BYTES = 256 * 2**20
MAX_ROWS = 1_000_000
MAX_CELLS = 20_000_000
# Parsed files kept in memory, and their size on disk in all; a larger file is parsed each time it is read.
PARSED_FILES = 8
PARSED_BYTES = 64 * 2**20


def megabytes(size: int) -> str:
    return f"{size / 2**20:,.0f} MB"


def check_file_size(path: Path, size: int, what: str = "is") -> None:
    """`what` "is" for bytes on disk, "expands to" for what a compressed file holds."""
    if size > MAX_FILE_BYTES:
        raise DataError(
            f"{path} {what} {megabytes(size)}, more than the {megabytes(MAX_FILE_BYTES)} the lab reads from "
            "one file; keep a sample of it."
        )


def check_rows(path: Path, rows: int, unit: str = "rows") -> None:
    if rows > MAX_ROWS:
        raise DataError(
            f"{path} holds more than {MAX_ROWS:,} {unit}, the most the lab reads from one file; keep a sample of it."
        )


def check_cells(path: Path, cells: int, unit: str = "cells") -> None:
    if cells > MAX_CELLS:
        raise DataError(
            f"{path} holds more than {MAX_CELLS:,} {unit}, the most the lab reads from one file; "
            "keep a sample of it, or fewer columns."
        )


# ---- parsed files, by content ------------------------------------------------------------------
Parsed = TypeVar("Parsed")
_parsed: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()  # key -> (parsed, file size)
_digests: dict[tuple[str, int, int], str] = {}
_lock = threading.Lock()  # the app's sessions read files from several threads


def content_hash(path: Path) -> Optional[str]:
    """The file's sha256 (remembered while its size and modification time stay), or None when the file
    is too large to keep parsed or cannot be read (the parser then says why)."""
    try:
        stat = path.stat()
        if not path.is_file() or stat.st_size > PARSED_BYTES:
            return None
        identity = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        with _lock:
            known = _digests.get(identity)
        if known is None:
            known = hashlib.sha256(path.read_bytes()).hexdigest()
            with _lock:
                if len(_digests) > 4 * PARSED_FILES:
                    _digests.clear()
                _digests[identity] = known
        return known
    except OSError:
        return None


def parsed_once(kind: str, path: Path, arguments: tuple, parse: Callable[[], Parsed]) -> Parsed:
    """`parse()`, or what it returned before for a file of the same name, content and `arguments`."""
    digest = content_hash(path)
    if digest is None:
        return parse()
    key = (kind, digest, str(path), arguments)
    with _lock:
        if key in _parsed:
            _parsed.move_to_end(key)
            return _parsed[key][0]
    size = path.stat().st_size  # content_hash just read it
    result = parse()
    with _lock:
        _parsed[key] = (result, size)
        while len(_parsed) > PARSED_FILES or sum(size for _, size in _parsed.values()) > PARSED_BYTES:
            _parsed.popitem(last=False)
    return result
