"""Gradient optimizers, selectable by name."""

from evoprop.optim.registry import (
    OPTIMIZERS,
    OptimizerSpec,
    make_optimizer,
    parse_option_value,
    register_optimizer,
)

__all__ = ["OPTIMIZERS", "OptimizerSpec", "make_optimizer", "parse_option_value", "register_optimizer"]
