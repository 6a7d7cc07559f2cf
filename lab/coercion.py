"""Typed dataclasses from untrusted input (YAML files, `--set key=value`, the app's form).

YAML text is bounded before it is believed: its size, and how many nodes its anchors and aliases
expand to (a few hundred bytes of nested aliases can stand for billions of values). Unknown keys
are named with a suggestion, values are coerced to each field's type (numbers from strings, lists
from comma-separated text, Literal choices checked), and every problem is a `ConfigError` whose
message names the key and shows the value as its type and first characters, never whole.
"""

from __future__ import annotations

import dataclasses
import difflib
import reprlib
import types
import typing
from typing import Any, Literal, get_args, get_origin

import yaml

from lab.errors import ConfigError

MAX_CONFIG_BYTES = 256 * 1024  # a full config with every help comment is about 7 KB
MAX_YAML_NODES = 10_000  # values after expanding aliases; a run config has about 80
MAX_YAML_ALIASES = 100
SHOWN_CHARACTERS = 80

# Bounded even for a value nested deep or shared by aliases: reprlib stops at these counts.
_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxstring, _SHORT_REPR.maxother = 3, SHOWN_CHARACTERS, SHOWN_CHARACTERS
_SHORT_REPR.maxlist = _SHORT_REPR.maxdict = _SHORT_REPR.maxtuple = _SHORT_REPR.maxset = 6


def shown(value: Any) -> str:
    """A value in a message: its type and its first 80 characters (a value from a file may be huge)."""
    if isinstance(value, str):
        text = repr(value[:SHOWN_CHARACTERS]) + ("..." if len(value) > SHOWN_CHARACTERS else "")
        return f"{text} ({type(value).__name__})"
    text = _SHORT_REPR.repr(value)
    if len(text) > SHOWN_CHARACTERS:
        text = text[:SHOWN_CHARACTERS] + "..."
    return f"{text} ({type(value).__name__})"


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a document whose aliases expand past MAX_YAML_NODES values."""

    aliases_seen = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases_seen += 1
            if self.aliases_seen > MAX_YAML_ALIASES:
                raise ConfigError(
                    f"The config uses more than {MAX_YAML_ALIASES} YAML aliases (*name); write the values out."
                )
        return super().compose_node(parent, index)

    def construct_document(self, node: Any) -> Any:
        _count_expanded(node, {}, set())
        return super().construct_document(node)


def _count_expanded(node: Any, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many nodes `node` stands for once every alias is written out; raises past MAX_YAML_NODES.
    Each distinct node is sized once, so a deep alias tower costs its text's length, not its expansion."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_nodes:
        raise ConfigError("The config has a YAML alias that contains itself; write the values out.")
    open_nodes.add(id(node))
    size = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    else:
        children = []
    for child in children:
        size += _count_expanded(child, sizes, open_nodes)
        if size > MAX_YAML_NODES:
            raise ConfigError(
                f"The config expands to more than {MAX_YAML_NODES:,} values (YAML anchors and aliases); "
                "a run config has about 80."
            )
    open_nodes.discard(id(node))
    sizes[id(node)] = size
    return size


def load_untrusted_yaml(text: str) -> Any:
    """Parse YAML from a file or an upload, refusing text over MAX_CONFIG_BYTES and alias bombs.
    Raises ConfigError (with PyYAML's own errors left to the caller, which knows the file)."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"The config is {len(text):,} characters; a run config is at most {MAX_CONFIG_BYTES:,}.")
    loader = _BoundedLoader(text)  # a SafeLoader: no Python objects, only YAML's plain types
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def quoted(key: str) -> str:
    """A key in a message, quoted and cut to its first characters (a YAML key can be any text)."""
    return repr(key) if len(key) <= SHOWN_CHARACTERS else repr(key[:SHOWN_CHARACTERS]) + "..."


def suggest(name: str, options: Any) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f"Did you mean {close[0]!r}?" if close else f"Known keys: {', '.join(options)}."


def build_dataclass(cls: type, data: dict[str, Any], prefix: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        raise ConfigError(f"Unknown config key {quoted(prefix + str(key))}. {suggest(str(key), fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        values[name] = _coerce(hints[name], value, prefix + name)
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if value is None:
            return hint()
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a section of key: value pairs, got {shown(value)}.")
        return build_dataclass(hint, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if value is None or value == "":
            return None
        # A number that may also be a word (learning_rate: auto): the word first, then the number.
        words = [word for arg in args if get_origin(arg) is Literal for word in get_args(arg)]
        if isinstance(value, str) and value.strip().lower() in words:
            return value.strip().lower()
        try:
            return _coerce(args[0], value, key)
        except ConfigError:
            if not words:
                raise
            kind = "a number" if args[0] in (int, float) else "text"
            raise ConfigError(f"{key} must be {kind} or {' or '.join(words)}, got {shown(value)}.") from None
    if origin is Literal:
        choices = get_args(hint)
        if value not in choices:
            raise ConfigError(f"{key} must be one of {', '.join(map(str, choices))}, got {shown(value)}.")
        return value
    if origin is list:
        if value is None or value == "":
            return []
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]  # one GPU id, as YAML reads `--set train.devices=1`
        if isinstance(value, list):  # GPU ids read as numbers (devices: [0, 1]) are names too
            value = [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key} must be a list of names, got {shown(value)}.")
        return list(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{key} must be true or false, got {shown(value)}.")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a whole number, got {shown(value)}.")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, (int, float, str)):
            raise ConfigError(f"{key} must be a whole number, got {shown(value)}.")
        try:
            return int(str(value).strip())
        except ValueError:
            raise ConfigError(f"{key} must be a whole number, got {shown(value)}.") from None
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{key} must be a number, got {shown(value)}.")
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {shown(value)}.") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ConfigError(f"{key} must be a finite number, got {shown(value)}.")
        return number
    if hint is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key} must be text, got {shown(value)}.")
        return "" if value is None else str(value)
    return value
