"""The one exception type for mistakes a user can fix (bad file, bad value, unknown model)."""


class LabError(Exception):
    """A problem the user caused and can act on. The CLI and the app show its message, not a traceback."""


class ConfigError(LabError):
    """A configuration value is missing, unknown or out of range."""


class DataError(LabError):
    """A data file or dataset cannot be used; the message names the file and the row or line."""


class ModelError(LabError):
    """A model cannot be loaded or adapted (unknown id, no network, wrong architecture)."""
