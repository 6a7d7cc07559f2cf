"""The app's catalogues of words (ui/locales/LANG.yaml), read as data: the pages translate with them
(ui.i18n), and so do the handouts the CLI writes and the library's own English sentences that name a method
or a task (lab.model.defaults), from this one reader. lab/ never imports the app's code.

It sits beside lab.errors at the bottom of the import order, so every room may read it."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from lab.errors import LabError

LOCALES = Path(__file__).resolve().parents[1] / "ui" / "locales"
DEFAULT_LANGUAGE = "en"


def languages() -> list[str]:
    """The languages that have a catalogue file, e.g. ['en', 'zh']."""
    return sorted(path.stem for path in LOCALES.glob("*.yaml"))


@functools.cache
def catalogue(language: str) -> dict[str, str]:
    """Every key of `language`'s catalogue, flattened to dotted keys (`form.learning_rate`)."""
    path = LOCALES / f"{language}.yaml"
    if not path.is_file():
        raise LabError(f"No language {language!r}: choose one of {', '.join(languages()) or 'none found'}.")
    return _flatten(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for name, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = str(value)
    return flat
