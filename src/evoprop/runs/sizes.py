"""What a run's model and population will take in memory, checked before any of it is allocated.

A ``--width 10**12`` or ``--popsize 10**12`` would otherwise end in an allocator error (or
the operating system's out-of-memory killer) after the data is loaded. The estimates
count what certainly exists, in float32 (4 bytes a number):

* the model: its parameters, their gradients and up to two optimizer moments (Adam's):
  4 copies of every parameter;
* the strategy's state: a full d x d covariance (``cma``, ``paper``, ``ipop``) or a few
  vectors of d (``sep``, ``lmma``), as :func:`evoprop.train.layer_search.choose_strategy`
  counts it;
* the population: P candidates of d numbers, their standard-normal draws and the
  update's weighted deviations: 3 P d numbers.

The evaluation of the candidates is not counted: it runs in chunks under ``--max-memory``.
"""

from __future__ import annotations

import math

import torch

from evoprop.config import TrainConfig
from evoprop.errors import ConfigError
from evoprop.es.base import default_popsize
from evoprop.models import build_model
from evoprop.population import available_memory
from evoprop.train.layer_search import FULL_COVARIANCE, FULL_COVARIANCE_BYTES_PER_D2, choose_strategy

FLOAT_BYTES = 4
MODEL_COPIES = 4  # parameters, gradients, two optimizer moments
POPULATION_COPIES = 3  # candidates, their draws, the weighted deviations
VECTOR_STATE_COPIES = 16  # sep / lmma: mean, paths, diagonal, a few buffers (lmma's memory of m vectors adds m)


def mlp_layer_sizes(config: TrainConfig, input_shape: tuple[int, ...], num_classes: int) -> list[int]:
    """[inputs, width, ..., width, classes]: the widths of an evoprop MLP's layers, without building it."""
    return [math.prod(input_shape)] + [config.width] * (config.depth - 1) + [num_classes]


def layer_parameters(sizes: list[int], layer: int) -> int:
    """Weights and bias of weight layer ``layer`` of an MLP with these sizes."""
    return sizes[layer] * sizes[layer + 1] + sizes[layer + 1]


def model_parameters(config: TrainConfig, input_shape: tuple[int, ...], num_classes: int) -> int:
    if config.model == "mlp":
        sizes = mlp_layer_sizes(config, input_shape, num_classes)
        return sum(layer_parameters(sizes, i) for i in range(config.depth))
    with torch.device("meta"):  # shapes only: nothing is allocated (resnet_width is bounded, so this is quick)
        model = build_model(config.model, input_shape, num_classes, depth=config.depth, width=config.width,
                            activation=config.activation, init=config.init, resnet_width=config.resnet_width)
    return sum(p.numel() for p in model.parameters())


def check_fits(config: TrainConfig, input_shape: tuple[int, ...], num_classes: int, device: torch.device) -> None:
    """Raise ConfigError (one line: what it needs, what there is, what to change) when the run cannot fit."""
    available = available_memory(device)
    params = model_parameters(config, input_shape, num_classes)
    model_bytes = MODEL_COPIES * FLOAT_BYTES * params
    what = (f"MLP of depth {config.depth} and width {config.width}" if config.model == "mlp"
            else f"{config.model} of width {config.resnet_width}")
    if model_bytes > available:
        raise ConfigError(
            f"the {what} has {params:,} parameters and needs ~{format_bytes(model_bytes)} (weights, gradients, "
            f"optimizer state) but {device} has {format_bytes(available)} available; use a smaller "
            + ("--width or --depth" if config.model == "mlp" else "--resnet-width"))
    if config.method == "gradient":
        return
    sizes = mlp_layer_sizes(config, input_shape, num_classes)
    layers = config.es_layers or (list(range(config.depth)) if config.method == "es" else [0])
    dim = sum(layer_parameters(sizes, i % config.depth) for i in layers)
    popsize = config.popsize or default_popsize(dim)
    strategy = choose_strategy(config.strategy, dim, device)
    state_bytes = (FULL_COVARIANCE_BYTES_PER_D2 * dim * dim if strategy in FULL_COVARIANCE
                   else VECTOR_STATE_COPIES * 8 * dim)
    population_bytes = POPULATION_COPIES * FLOAT_BYTES * popsize * dim
    need = model_bytes + state_bytes + population_bytes
    if need > available:
        fix = ("a smaller --popsize" if population_bytes >= state_bytes
               else "--strategy sep (its state grows with d, not d^2)")
        raise ConfigError(
            f"the evolution strategy ({strategy}, d = {dim:,} searched weights, popsize {popsize:,}) needs "
            f"~{format_bytes(need)} ({format_bytes(population_bytes)} population, {format_bytes(state_bytes)} "
            f"strategy state, {format_bytes(model_bytes)} model) but {device} has {format_bytes(available)} "
            f"available; use {fix} or search fewer weights (--es-layers)")


_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def format_bytes(n: int) -> str:
    """1536 -> '1.5 KiB'; beyond yobibytes in powers of ten ('3.1e+30 bytes')."""
    if n < 1024:
        return f"{n} bytes"
    power = min(int(math.log(n, 1024)), len(_UNITS) - 1)
    if power == len(_UNITS) - 1 and n >= 1024 ** (power + 1):
        return f"{n:.2g} bytes"
    return f"{n / 1024 ** power:.1f} {_UNITS[power]}"
