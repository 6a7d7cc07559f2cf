"""The one exception type for mistakes a user can fix (bad file, bad value, unknown model)."""


class LabError(Exception):
    """A problem the user caused and can act on. The CLI and the app show its message, not a traceback."""


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
