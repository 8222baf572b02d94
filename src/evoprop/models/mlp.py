"""The multilayer perceptron of the paper.

Depth counts weight layers: depth 1 is softmax regression (input -> classes),
depth 10 has nine hidden layers of ``width`` units. ``model.layers[i]`` is the
i-th weight layer (an ``nn.Linear``), so an evolution strategy can be handed one
layer by index. The forward pass returns logits; the loss is the NLL of their
softmax (``F.cross_entropy``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from evoprop.errors import ConfigError
from evoprop.models.init import init_weights

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


class MLP(nn.Module):
    """Flatten -> (Linear -> activation) x (depth - 1) -> Linear."""

    def __init__(self, in_features: int, num_classes: int, depth: int, width: int, activation: str = "relu"):
        super().__init__()
        if depth < 1:
            raise ConfigError(f"depth must be >= 1 weight layer, got {depth}")
        if width < 1:
            raise ConfigError(f"width must be >= 1, got {width}")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation '{activation}'; valid: {', '.join(ACTIVATIONS)}")
        sizes = [in_features] + [width] * (depth - 1) + [num_classes]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.activation = ACTIVATIONS[activation]()

    @property
    def depth(self) -> int:
        return len(self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x)


def build_mlp(
    input_shape: tuple[int, ...],
    num_classes: int,
    depth: int = 1,
    width: int = 200,
    activation: str = "relu",
    init: str = "glorot",
) -> MLP:
    """Build an MLP for inputs of ``input_shape`` (e.g. (1, 28, 28)), initialised with ``init``."""
    model = MLP(math.prod(input_shape), num_classes, depth, width, activation)
    init_weights(model, init)
    return model
