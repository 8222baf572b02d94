"""Named weight initialisations.

The paper does not say which initialisation it used, and it decides whether a
10-layer ReLU MLP trains at all: with PyTorch's default `nn.Linear` init, SGD at
lr 0.01 stays at chance, while Glorot-uniform (Keras' default when the paper was
written) trains. evoprop therefore defaults to ``glorot``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from evoprop.errors import ConfigError


def _glorot(weight: torch.Tensor) -> None:
    nn.init.xavier_uniform_(weight)


def _lecun(weight: torch.Tensor) -> None:
    # LeCun normal: N(0, 1/fan_in). Keras truncates at 2 std; the plain normal is the textbook form.
    nn.init.normal_(weight, mean=0.0, std=1.0 / math.sqrt(weight.shape[1]))


def _he(weight: torch.Tensor) -> None:
    nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="relu")


# name -> (weight initialiser or None to keep torch's default, one-line description)
INITS: dict[str, tuple] = {
    "glorot": (_glorot, "Glorot/Xavier uniform, zero bias (default; Keras' default)"),
    "lecun": (_lecun, "LeCun normal N(0, 1/fan_in), zero bias"),
    "he": (_he, "He/Kaiming normal N(0, 2/fan_in), zero bias"),
    "torch": (None, "PyTorch's nn.Linear default (Kaiming-uniform a=sqrt(5), uniform bias)"),
}


def init_weights(module: nn.Module, scheme: str) -> None:
    """Initialise every nn.Linear in ``module`` in place with the named scheme."""
    if scheme not in INITS:
        raise ConfigError(f"unknown init '{scheme}'; valid: {', '.join(INITS)}")
    fn = INITS[scheme][0]
    if fn is None:
        return
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            fn(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
