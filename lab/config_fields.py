"""What a config field accepts and how a form draws it, read from the field's declaration.

A field of lab.config's dataclasses carries `metadata=field_metadata(help, ge=..., le=..., step=...)`;
its type gives its kind (a Literal its choices, Optional an empty value). `describe_field` reads
both as one `ConfigField`: `validate()` asks it for a value's problem, the app's widget
(ui.widgets.config_widget) for its label, help, range and step. Some bounds are the machine's: the
devices and cores present where the run trains.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Optional, get_args, get_origin

from lab.coercion import shown
from lab.errors import ConfigError

SEED_LIMIT = 2**32 - 1  # numpy's seeds are 32-bit


@dataclass(frozen=True)
class Limits:
    """What a number field accepts and how its widget steps. `validate()` refuses a value outside the
    bounds (ge/le inclusive, gt/lt exclusive); the form's widget draws the same bounds."""

    ge: Optional[float] = None
    gt: Optional[float] = None
    le: Optional[float] = None
    lt: Optional[float] = None
    step: Optional[float] = None
    number_format: Optional[str] = None
    # How a refusal names the field ("" for its own name), whether it states the whole range, and a hint after it.
    title: str = ""
    as_range: bool = False
    hint: str = ""
    # The most this machine can hold, read from the field's section (see devices_present): (limit, what it is).
    machine_limit: Optional[Callable[[Any], Optional[tuple[int, str]]]] = None


def field_metadata(text: str, **limits: Any) -> dict[str, Any]:
    """A field's metadata: its help, and its Limits from the keyword arguments."""
    return {"help": text, "limits": Limits(**limits)}


def devices_present(train: Any) -> Optional[tuple[int, str]]:
    """The GPUs (or, on a CPU, the cores that torchrun's CPU processes share) a local run can use; a Ray
    cluster counts its own."""
    if train.executor == "ray":
        return None
    if train.device in ("cpu", "mps"):
        return (os.cpu_count() or 1, "the CPU cores of this machine") if train.device == "cpu" else (1, "one MPS GPU")
    import torch  # only when more than one device is asked for: validating a config need not load torch

    if torch.cuda.is_available():
        return torch.cuda.device_count(), "the CUDA GPUs of this machine"
    if train.device == "cuda":
        return None  # the run's device check says there is no CUDA here, which is the problem to fix first
    return os.cpu_count() or 1, "the CPU cores of this machine (no GPU here)"


def cores_present(train: Any) -> Optional[tuple[int, str]]:
    return None if train.executor == "ray" else (os.cpu_count() or 1, "the CPU cores of this machine")


FieldKind = Literal["choice", "check", "whole", "number", "names", "text"]


@dataclass(frozen=True)
class ConfigField:
    """One config field as a form draws it and `validate()` checks it, read from its declaration."""

    section: str  # '' for the top-level fields (task, name)
    name: str
    help: str
    label_key: str  # the catalogue key of its label (ui/locales)
    kind: FieldKind
    choices: tuple[str, ...]  # a Literal's values
    optional: bool  # empty (None) is allowed: a default is picked at run time
    limits: Limits

    @property
    def title(self) -> str:
        return self.limits.title or self.name

    def widget_range(self, section_value: Any = None) -> tuple[Optional[float], Optional[float]]:
        """The smallest and largest value a number widget offers: the field's bounds, and the machine's limit when
        `section_value` (the field's section, e.g. a TrainConfig) is given."""
        limits, whole = self.limits, self.kind == "whole"
        low, high = limits.ge, limits.le
        # An exclusive bound of a number stays the widget's edge: a typed 0 learning rate is then refused with a
        # reason at launch, where the next float above it would be taken silently.
        if low is None and limits.gt is not None:
            low = limits.gt + 1 if whole else limits.gt
        if high is None and limits.lt is not None:
            high = limits.lt - 1 if whole else limits.lt
        machine = limits.machine_limit(section_value) if limits.machine_limit and section_value is not None else None
        if machine is not None:
            high = machine[0] if high is None else min(high, machine[0])
        if high is not None and low is not None:
            high = max(high, low)
        if whole:
            return (None if low is None else int(low)), (None if high is None else int(high))
        return (None if low is None else float(low)), (None if high is None else float(high))

    def problem(self, value: Any, section_value: Any) -> Optional[str]:
        """Why `value` is refused (one sentence naming the field), or None."""
        if self.kind == "choice":
            return (
                None
                if value in self.choices
                else f"{self.title} must be one of {', '.join(self.choices)}, got {shown(value)}."
            )
        if self.kind not in ("whole", "number") or value is None or value in self.choices:
            return None
        limits = self.limits
        low_ok = (limits.ge is None or value >= limits.ge) and (limits.gt is None or value > limits.gt)
        high_ok = (limits.le is None or value <= limits.le) and (limits.lt is None or value < limits.lt)
        low = limits.ge if limits.ge is not None else limits.gt
        high = limits.le if limits.le is not None else limits.lt
        if not (low_ok and high_ok):
            if limits.as_range:
                return f"{self.title} must be between {_number(low)} and {_number(high)}{limits.hint}."
            if not low_ok:
                return f"{self.title} must be {'>=' if limits.ge is not None else '>'} {_number(low)}{limits.hint}."
            return (
                f"{self.title} must be {'at most' if limits.le is not None else 'below'} {_number(high)}{limits.hint}."
            )
        # Asked only above the smallest value, so that validating a one-device config never loads torch.
        if limits.machine_limit and value > (low or 0):
            machine = limits.machine_limit(section_value)
            if machine is not None and value > machine[0]:
                return f"{self.title} must be at most {machine[0]}, {machine[1]}."
        return None


@functools.cache
def describe_field(cls: type, section: str, name: str) -> ConfigField:
    """Field `name` of dataclass `cls` (config section `section`) with its help, label key, kind, choices and
    limits."""
    declared = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if declared is None:
        raise ConfigError(f"Unknown config key {section + '.' if section else ''}{name}.")
    hint = typing.get_type_hints(cls)[name]
    union = get_origin(hint) in (typing.Union, types.UnionType)
    optional = union and type(None) in get_args(hint)
    choices: tuple[str, ...] = ()
    if union:  # a number that may also be a word (learning_rate: auto) keeps its kind; the word is a choice
        members = [arg for arg in get_args(hint) if arg is not type(None)]
        hint = next((arg for arg in members if get_origin(arg) is not Literal), members[0])
        choices = tuple(
            word for arg in members if arg is not hint and get_origin(arg) is Literal for word in get_args(arg)
        )
    if get_origin(hint) is Literal:
        kind: FieldKind = "choice"
        choices = tuple(get_args(hint))
    elif get_origin(hint) is list:
        kind = "names"
    else:
        kind = {bool: "check", int: "whole", float: "number"}.get(hint, "text")  # type: ignore[assignment]
    return ConfigField(
        section=section,
        name=name,
        help=declared.metadata.get("help", ""),
        label_key=f"field.{section + '.' if section else ''}{name}",
        kind=kind,
        choices=choices,
        optional=optional,
        limits=declared.metadata.get("limits", Limits()),
    )


def _number(value: Optional[float]) -> str:
    """A bound as a person writes it: 8, 0.5, 4294967295 (not 8.0 or 4.29497e+09)."""
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
