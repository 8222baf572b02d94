"""Gradient optimizers, selectable by name."""

from evoprop.optim.registry import (
    OPTIMIZERS,
    OptimizerSpec,
    make_optimizer,
    parse_option_value,
    register_optimizer,
)
from evoprop.optim.batch import BatchLoss
from evoprop.optim.kfac import KFAC  # registers "natural"
from evoprop.optim.newton import Newton  # registers "newton"
from evoprop.optim.hessian_free import HessianFree  # registers "hessian-free"

__all__ = [
    "BatchLoss", "HessianFree", "KFAC", "Newton", "OPTIMIZERS", "OptimizerSpec", "make_optimizer",
    "parse_option_value", "register_optimizer",
]
