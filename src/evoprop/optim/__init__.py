"""Gradient optimizers, selectable by name."""

from evoprop.optim.registry import (
    OPTIMIZERS,
    OptimizerSpec,
    make_optimizer,
    parse_option_value,
    register_optimizer,
)
from evoprop.optim.kfac import KFAC  # registers "natural"

__all__ = ["KFAC", "OPTIMIZERS", "OptimizerSpec", "make_optimizer", "parse_option_value", "register_optimizer"]
