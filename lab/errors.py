"""The one exception type for mistakes a user can fix (bad file, bad value, unknown model), and the typed
sentences the library says to a person (`Message`).

A sentence has two faces: its English text, which the CLI prints and the logs keep, and a stable `code`
with `params`, which a translated page looks up in its catalogue (`messages.CODE` in ui/locales/*.yaml,
with the params as its `{placeholders}`). Text without a code is shown as written.
"""

from __future__ import annotations

from typing import Any


def _as_params(values: dict[str, object]) -> dict[str, str]:
    # The text shows each value as it was formatted into the English sentence; the catalogue gets the same.
    return {name: str(value) for name, value in values.items()}


class Message(str):
    """A sentence for a person: the English text itself (a `str`, so logs, f-strings and joins keep working)
    plus the `code` and `params` a catalogue translates it by. Operations that build a new string drop
    the code, and the new text is then shown as written."""

    code: str
    params: dict[str, str]

    def __new__(cls, text: str, code: str = "", **params: object) -> Message:
        said = super().__new__(cls, text)
        said.code = code
        said.params = _as_params(params)
        return said

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (a worker process, Ray) with its code, not as a bare str.
        return (_message, (str(self), self.code, self.params))


def _message(text: str, code: str, params: dict[str, str]) -> Message:
    return Message(text, code, **params)


class LabError(Exception):
    """A problem the user caused and can act on. The CLI and the app show its message, not a traceback.

    `LabError("Data file x.csv does not exist.", code="file_missing", path="x.csv")`: the English text for
    the CLI, the code and its params for a translated page. A text alone works too (it has no translation);
    a `Message` brings its own code and params."""

    def __init__(self, text: str = "", *, code: str = "", **params: object) -> None:
        super().__init__(text)
        self.code = code or getattr(text, "code", "")
        self.params = _as_params(params) if code else dict(getattr(text, "params", {}))

    @property
    def message(self) -> Message:
        """The error's sentence, with its code: what a run records as the reason it failed."""
        return Message(str(self), self.code, **self.params)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (type(self), str(self), self.code, self.params))


def _rebuild_error(cls: type[LabError], text: str, code: str, params: dict[str, str]) -> LabError:
    return cls(text, code=code, **params)


class ConfigError(LabError):
    """A configuration value is missing, unknown or out of range."""


class DataError(LabError):
    """A data file or dataset cannot be used; the message names the file and the row or line."""


class ModelError(LabError):
    """A model cannot be loaded or adapted (unknown id, no network, wrong architecture)."""


# What to lower when a run runs out of memory; the engine and the job runner both say it.
OUT_OF_MEMORY_ADVICE = (
    "lower train.train_batch_size or train.max_length, turn on train.gradient_checkpointing, "
    "or choose a PEFT method such as lora (peft.method)"
)


def is_out_of_memory(exc: BaseException) -> bool:
    """torch.OutOfMemoryError (GPU), or the RuntimeError torch's CPU allocator raises; matched by name
    and message so that callers need not import torch."""
    return type(exc).__name__ == "OutOfMemoryError" or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)
    )


def one_line(text: object, limit: int = 300) -> str:
    """A message squeezed onto one line (the CLI prints errors as one line), cut at `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
