"""Typed dataclasses from untrusted dicts (YAML files, `--set key=value`, the app's form).

Unknown keys are named with a suggestion, values are coerced to each field's type (numbers from
strings, lists from comma-separated text, Literal choices checked), and every problem is a
`ConfigError` whose message names the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, get_args, get_origin

from lab.errors import ConfigError


def suggest(name: str, options: Any) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f"Did you mean {close[0]!r}?" if close else f"Known keys: {', '.join(options)}."


def build_dataclass(cls: type, data: dict[str, Any], prefix: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        raise ConfigError(f"Unknown config key {prefix + str(key)!r}. {suggest(str(key), fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        values[name] = _coerce(hints[name], value, prefix + name)
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if value is None:
            return hint()
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a section of key: value pairs, got {value!r}.")
        return build_dataclass(hint, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if value is None or value == "":
            return None
        return _coerce(args[0], value, key)
    if origin is Literal:
        choices = get_args(hint)
        if value not in choices:
            raise ConfigError(f"{key} must be one of {', '.join(map(str, choices))}, got {value!r}.")
        return value
    if origin is list:
        if value is None or value == "":
            return []
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key} must be a list of names, got {value!r}.")
        return list(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{key} must be true or false, got {value!r}.")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a whole number, got {value!r}.")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise ConfigError(f"{key} must be a whole number, got {value!r}.") from None
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {value!r}.")
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {value!r}.") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ConfigError(f"{key} must be a finite number, got {value!r}.")
        return number
    if hint is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key} must be text, got {value!r}.")
        return "" if value is None else str(value)
    return value
