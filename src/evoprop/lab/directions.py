"""Random directions in weight space for loss landscapes: plain Gaussian or filter-normalised.

A direction is a list of tensors shaped like the model's parameters. Drawn from N(0, 1)
per coordinate, its scale has nothing to do with the weights' (a glorot layer of width
200 has weights of size ~0.07; a unit Gaussian step is ~14x larger), so plots of
different models or layers are not comparable. Li et al. 2018 ("Visualizing the Loss
Landscape of Neural Nets") rescale the direction filter by filter: each filter of the
direction gets the norm of the same filter of the weights,

    d_i <- d_i / ||d_i|| * ||w_i||,

so that a step a along it moves every filter by the fraction a of its own size and the
scale invariance of ReLU networks does not distort the picture. For an ``nn.Linear`` a
filter is one output neuron: one row of the weight matrix (for the bias-trick linear
classifier, one class template); for a convolution, one output channel.

Parameters with one dimension (biases, and the weight and bias of normalisation layers
such as BatchNorm and LayerNorm) have no filters. Li et al.'s code offers two choices,
and so does :func:`filter_normalize`:

* ``bias="zero"`` (the default, their ``--xignore biasbn``): the direction is zero on them,
  so they stay at their trained values and the plot shows the filters' landscape;
* ``bias="weights"``: the direction on them is the parameter itself (a step a scales them by 1 + a).

Buffers (BatchNorm running statistics) are not parameters and never move.
"""

from __future__ import annotations

from typing import Sequence

import torch

from evoprop.errors import ConfigError

DIRECTIONS = ("filter", "gaussian")
BIAS_MODES = ("zero", "weights")
_EPS = 1e-10  # a zero filter of the direction stays zero instead of dividing by zero


def gaussian_direction(params: Sequence[torch.Tensor], generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """A direction with every coordinate drawn from N(0, 1), shaped like ``params``."""
    return [torch.randn(p.shape, generator=generator, dtype=p.dtype, device="cpu").to(p.device) for p in params]


def filter_normalize(direction: Sequence[torch.Tensor], params: Sequence[torch.Tensor], bias: str = "zero") -> list[torch.Tensor]:
    """``direction`` rescaled filter by filter to the norms of ``params``' filters (Li et al. 2018)."""
    if bias not in BIAS_MODES:
        raise ConfigError(f"unknown bias handling '{bias}'; valid: {', '.join(BIAS_MODES)}")
    out = []
    for d, p in zip(direction, params, strict=True):
        p = p.detach()
        if p.dim() <= 1:
            out.append(torch.zeros_like(p) if bias == "zero" else p.clone())
            continue
        # one filter per index of the first dimension (output neuron / output channel)
        d_norm = d.flatten(1).norm(dim=1).view(-1, *([1] * (d.dim() - 1)))
        p_norm = p.flatten(1).norm(dim=1).view(-1, *([1] * (p.dim() - 1)))
        out.append(d * (p_norm / (d_norm + _EPS)))
    return out


def random_direction(
    params: Sequence[torch.Tensor], kind: str = "filter", bias: str = "zero", generator: torch.Generator | None = None
) -> list[torch.Tensor]:
    """A random direction of the given ``kind`` ("filter" or "gaussian") for ``params``."""
    if kind not in DIRECTIONS:
        raise ConfigError(f"unknown direction '{kind}'; valid: {', '.join(DIRECTIONS)}")
    direction = gaussian_direction(params, generator)
    return filter_normalize(direction, params, bias) if kind == "filter" else direction


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The tensors concatenated into one vector, in order (the layout of PopulationEvaluator's candidates)."""
    return torch.cat([t.reshape(-1) for t in tensors])
