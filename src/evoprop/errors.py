"""Errors a user can cause and fix. The CLI prints them as one line, never a traceback."""


class EvopropError(Exception):
    """Base class: a mistake in input, configuration or environment, with a message that says the fix."""


class ConfigError(EvopropError, ValueError):
    """An invalid setting or argument: unknown name, out-of-range value, unknown config key.

    A ``ValueError`` too, so code that calls evoprop's API with a bad value and catches
    ``ValueError`` (as it would for PyTorch's or NumPy's own checks) catches it."""


class DataError(EvopropError):
    """A data set that is missing, corrupt, or cannot be downloaded."""


class TrainingDiverged(EvopropError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class StrategyDiverged(TrainingDiverged):
    """An evolution strategy's state degenerated: σ left [1e-20, 1e20] × σ0, or the mean or the
    covariance became non-finite or lost positive definiteness. The message names the strategy,
    the generation and what to change; a run stops as ``diverged`` and keeps its last good epoch."""
