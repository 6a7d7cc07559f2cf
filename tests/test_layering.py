"""The house rules of `lab/` (docs/ARCHITECTURE.md): no streamlit anywhere in the library, and no
import that points up the order data -> training -> runs -> views -> cli."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parents[1] / "lab"
# Each room and the rooms it must never import (everything above it in the order).
ORDER = ("data", "model", "insight", "training", "inference", "publish", "runs", "accounts", "launch", "groups")
FORBIDDEN = {
    room: tuple(f"lab.{above}" for above in ORDER[i + 1 :]) + ("lab.views", "lab.cli") for i, room in enumerate(ORDER)
}
FORBIDDEN["insight"] += ("lab.model",)  # insight sits beside model, on data alone
FORBIDDEN["views"] = ("lab.cli",)  # the CLI writes what a page shows (`python -m lab handout`), never the reverse
FORBIDDEN["cli"] = ()
# The method registry and the bottleneck adapter sit beside the top-level modules (lab.config reads them).
FORBIDDEN["methods"] = tuple(f"lab.{room}" for room in ORDER) + ("lab.views", "lab.cli")
TOP_LEVEL = ("catalogue", "coercion", "config", "config_fields", "config_sections", "errors", "events", "hub")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_no_room_imports_a_room_above_it(room):
    offences = []
    for path in sorted((LAB / room).rglob("*.py")):
        for name in imported_modules(path):
            if any(name == banned or name.startswith(banned + ".") for banned in FORBIDDEN[room]):
                offences.append(f"{path.relative_to(LAB.parent)} imports {name}")
    assert not offences, "\n".join(offences)


def test_top_level_modules_import_no_room():
    offences = [
        f"lab/{module}.py imports {name}"
        for module in TOP_LEVEL
        for name in imported_modules(LAB / f"{module}.py")
        if name.startswith(tuple(f"lab.{room}" for room in FORBIDDEN if room != "methods"))
    ]
    assert not offences, "\n".join(offences)


def test_no_module_of_lab_mentions_streamlit_in_an_import():
    offences = [
        str(path.relative_to(LAB.parent))
        for path in sorted(LAB.rglob("*.py"))
        if any(name.split(".")[0] == "streamlit" for name in imported_modules(path))
    ]
    assert not offences


def test_importing_every_room_loads_no_streamlit():
    rooms = ", ".join(f"lab.{room}" for room in FORBIDDEN)
    modules = [
        f"lab.{'.'.join(p.relative_to(LAB).with_suffix('').parts)}"
        for p in sorted(LAB.rglob("*.py"))
        if p.name not in ("__init__.py", "__main__.py")
    ]
    code = (
        f"import importlib, sys; import {rooms}\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print('streamlit' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=LAB.parent,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_no_module_is_longer_than_about_four_hundred_lines():
    long = {
        str(p.relative_to(LAB.parent)): n
        for p in LAB.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 420
    }
    assert not long, long
