"""A sweep's `--param`: `section.field=KIND:...`, with KIND `log:LOW:HIGH` (float, log scale),
`float:LOW:HIGH`, `int:LOW:HIGH` or `choice:A,B,...` (values parsed as YAML scalars), and how a trial
draws its value."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import yaml

from lab.config import RunConfig
from lab.errors import ConfigError

KINDS = ("log", "float", "int", "choice")


@dataclass(frozen=True)
class Param:
    key: str  # section.field
    kind: str  # one of KINDS
    low: Optional[float] = None
    high: Optional[float] = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        assert self.low is not None and self.high is not None  # parse_param gives every range both bounds
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high))
        return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "log")

    def text(self) -> str:
        if self.kind == "choice":
            return f"{self.key}=choice:" + ",".join(map(yaml_scalar, self.choices))
        return f"{self.key}={self.kind}:{self.low:g}:{self.high:g}"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "low": self.low, "high": self.high, "choices": list(self.choices)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Param:
        return cls(data["key"], data["kind"], data["low"], data["high"], tuple(data["choices"]))


def parse_param(text: str, base: Optional[RunConfig] = None) -> Param:
    """`train.learning_rate=log:1e-5:1e-2` -> Param; the key must be a config field (checked on `base`)."""
    key, sep, spec = text.partition("=")
    kind, _, rest = spec.partition(":")
    key, kind = key.strip(), kind.strip()
    if not sep or not key or kind not in KINDS or not rest:
        raise ConfigError(
            f"--param {text!r}: expected section.field=KIND:..., KIND one of {', '.join(KINDS)} "
            "(log:1e-5:1e-2, float:0:0.3, int:4:32, choice:4,8,16)."
        )
    if base is not None and key not in base.flat():
        raise ConfigError(f"--param {text!r}: unknown config key {key!r}.")
    if kind == "choice":
        choices = tuple(_choice(part) for part in rest.split(",") if part.strip())
        if not choices:
            raise ConfigError(f"--param {text!r}: choice needs at least one value.")
        return Param(key, kind, choices=choices)
    bounds = rest.split(":")
    try:
        low, high = (float(bound) for bound in bounds)
    except ValueError:
        raise ConfigError(f"--param {text!r}: {kind} needs LOW:HIGH numbers, like {kind}:1e-5:1e-2.") from None
    if not low < high or (kind == "log" and low <= 0) or not all(map(math.isfinite, (low, high))):
        raise ConfigError(f"--param {text!r}: needs LOW < HIGH" + (", both above 0 for log." if kind == "log" else "."))
    return Param(key, kind, low, high)


def _choice(text: str) -> Any:
    """A choice as YAML reads it, but 1e-3 a number (YAML 1.1 wants 1.0e-3 for that)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def parse_params(texts: Sequence[str], base: RunConfig) -> list[Param]:
    params = [parse_param(text, base) for text in texts]
    if not params:
        raise ConfigError("A sweep needs at least one --param, e.g. --param train.learning_rate=log:1e-5:1e-2.")
    return params
