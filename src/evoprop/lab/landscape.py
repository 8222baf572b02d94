"""The loss (and accuracy) of a model along a line and over a plane through its weights.

    L(a)    = loss(W + a W1)            for a grid of a           (:func:`line`)
    L(a, b) = loss(W + a W1 + b W2)     for a grid of (a, b)      (:func:`plane`)

A grid is a population: every grid point is one candidate parameter vector, and
:class:`~evoprop.lab.evaluate.VectorEvaluator` hands them, a chunk at a time, to
:class:`~evoprop.population.PopulationEvaluator`, which evaluates a chunk in one
vectorised pass per data batch. Grid points are built chunk by chunk (``center + coefs @
directions``), so a 21 x 21 plane of a 500k-parameter model never holds all 441 vectors.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from evoprop.errors import ConfigError
from evoprop.lab.directions import flatten
from evoprop.lab.evaluate import VectorEvaluator


@dataclass
class Line:
    """L(W + a W1) and the accuracy there, for each a in ``alphas``."""

    alphas: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray


@dataclass
class Plane:
    """L(W + a W1 + b W2) on the grid: ``loss[j, i]`` is at (alphas[i], betas[j])."""

    alphas: np.ndarray
    betas: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray


@dataclass
class Landscape:
    """A line and/or a plane through one model's weights, with what they were computed on."""

    line: Line | None = None
    plane: Plane | None = None
    meta: dict = field(default_factory=dict)


def grid_axis(limit: float, points: int) -> np.ndarray:
    """``points`` evenly spaced values from -limit to limit (an odd count puts one at exactly 0)."""
    if points < 2:
        raise ConfigError(f"a grid axis needs at least 2 points, got {points}")
    if not limit > 0:
        raise ConfigError(f"the grid range must be positive, got {limit}")
    return np.linspace(-limit, limit, points)


def line(grid: VectorEvaluator, direction: Sequence[torch.Tensor] | torch.Tensor, alphas: np.ndarray) -> Line:
    """The loss along the line through the model's weights in ``direction``."""
    d1 = _flat(direction, grid)
    coefs = torch.as_tensor(alphas, dtype=torch.float64).unsqueeze(1)
    loss, acc = grid.evaluate_combinations(grid.center(), d1.unsqueeze(0), coefs)
    return Line(np.asarray(alphas, dtype=float), loss.cpu().numpy(), acc.cpu().numpy())


def plane(
    grid: VectorEvaluator,
    directions: tuple[Sequence[torch.Tensor] | torch.Tensor, Sequence[torch.Tensor] | torch.Tensor],
    alphas: np.ndarray,
    betas: np.ndarray,
) -> Plane:
    """The loss over the plane through the model's weights spanned by two directions."""
    dirs = torch.stack([_flat(d, grid) for d in directions])
    a, b = np.meshgrid(alphas, betas)  # (len(betas), len(alphas)): rows follow b, columns a
    coefs = torch.as_tensor(np.stack([a.ravel(), b.ravel()], axis=1), dtype=torch.float64)
    loss, acc = grid.evaluate_combinations(grid.center(), dirs, coefs)
    shape = a.shape
    return Plane(np.asarray(alphas, dtype=float), np.asarray(betas, dtype=float),
                 loss.cpu().numpy().reshape(shape), acc.cpu().numpy().reshape(shape))


def _flat(direction, grid: VectorEvaluator) -> torch.Tensor:
    d = direction if isinstance(direction, torch.Tensor) else flatten(direction)
    if d.numel() != grid.dim:
        raise ConfigError(f"a direction must have {grid.dim} coordinates (one per model parameter), got {d.numel()}")
    center = grid.center()
    return d.reshape(-1).to(center.device, center.dtype)


# -- files ------------------------------------------------------------------------------
def save_npz(path: str | Path, landscape: Landscape) -> Path:
    """Every grid (and the metadata, as strings) in one ``.npz`` file."""
    arrays: dict[str, np.ndarray] = {}
    if landscape.line is not None:
        arrays.update(line_alphas=landscape.line.alphas, line_loss=landscape.line.loss,
                      line_accuracy=landscape.line.accuracy)
    if landscape.plane is not None:
        arrays.update(plane_alphas=landscape.plane.alphas, plane_betas=landscape.plane.betas,
                      plane_loss=landscape.plane.loss, plane_accuracy=landscape.plane.accuracy)
    for key, value in landscape.meta.items():
        arrays[f"meta_{key}"] = np.asarray(str(value))
    np.savez(path, **arrays)
    return Path(path)


def save_line_csv(path: str | Path, grid: Line) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["a", "loss", "accuracy"])
        for a, loss, acc in zip(grid.alphas, grid.loss, grid.accuracy):
            writer.writerow([f"{a:.6g}", f"{loss:.8g}", f"{acc:.6g}"])
    return Path(path)


def save_plane_csv(path: str | Path, grid: Plane) -> Path:
    """One row per grid point (long format): a, b, loss, accuracy."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["a", "b", "loss", "accuracy"])
        for j, b in enumerate(grid.betas):
            for i, a in enumerate(grid.alphas):
                writer.writerow([f"{a:.6g}", f"{b:.6g}", f"{grid.loss[j, i]:.8g}", f"{grid.accuracy[j, i]:.6g}"])
    return Path(path)
