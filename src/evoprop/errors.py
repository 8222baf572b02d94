"""Errors a user can cause and fix. The CLI prints them as one line, never a traceback."""


class EvopropError(Exception):
    """Base class: a mistake in input, configuration or environment, with a message that says the fix."""


class ConfigError(EvopropError):
    """An invalid setting: unknown name, out-of-range value, unknown config key."""


class DataError(EvopropError):
    """A data set that is missing, corrupt, or cannot be downloaded."""


class TrainingDiverged(EvopropError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
