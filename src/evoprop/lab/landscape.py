"""The loss (and accuracy) of a model along a line and over a plane through its weights.

    L(a)    = loss(W + a W1)            for a grid of a           (:func:`line`)
    L(a, b) = loss(W + a W1 + b W2)     for a grid of (a, b)      (:func:`plane`)

A grid is a population: every grid point is one candidate parameter vector, and
:class:`~evoprop.lab.evaluate.VectorEvaluator` hands them, a chunk at a time, to
:class:`~evoprop.population.PopulationEvaluator`, which evaluates a chunk in one
vectorised pass per data batch. Grid points are built chunk by chunk (``center + coefs @
directions``), so a 21 x 21 plane of a 500k-parameter model never holds all 441 vectors.

:func:`run_landscape` is the whole experiment of ``evoprop landscape``: two random directions
(filter-normalised as in Li et al. 2018, or plain Gaussian), the line and/or the plane, and a
:class:`Landscape` that prints (:meth:`~Landscape.summary`) and writes (:meth:`~Landscape.write`) itself.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from evoprop.errors import ConfigError
from evoprop.lab.directions import BIAS_MODES, DIRECTIONS, flatten, random_direction
from evoprop.lab.evaluate import VectorEvaluator
from evoprop.lab.losses import LossSettings
from evoprop.lab.plots import new_figure, save, wants_log
from evoprop.lab.problem import SPLIT_NAMES, Problem
from evoprop.lab.settings import batch_setting, lab_setting
from evoprop.paths import make_folder


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
    """A line and/or a plane through one model's weights, with what they were computed on.

    ``meta`` holds the settings and the loss at W (as in landscape.json); ``label`` names the model in figure titles.
    """

    line: Line | None = None
    plane: Plane | None = None
    meta: dict = field(default_factory=dict)
    label: str = ""

    def header(self) -> str:
        m = self.meta
        return (f"{m['model']}\n{m['loss']} loss at W on {m['examples']} {m['split']} examples: "
                f"{m['center_loss']:.4f} (accuracy {m['center_accuracy']:.4f})")

    def line_summary(self) -> str:
        grid, limit = self.line, self.meta["range"]
        i = int(np.nanargmin(grid.loss))
        return (f"line:  {len(grid.alphas)} points, a in [-{limit:g}, {limit:g}]: lowest loss {grid.loss[i]:.4f} at "
                f"a = {grid.alphas[i]:+.3g}, highest {np.nanmax(grid.loss):.4g} ({self.meta['line_seconds']:.1f} s)")

    def plane_summary(self) -> str:
        z = self.plane.loss
        j, i = np.unravel_index(int(np.nanargmin(z)), z.shape)
        return (f"plane: {len(self.plane.alphas)} x {len(self.plane.betas)} points: lowest loss {z[j, i]:.4f} at "
                f"(a, b) = ({self.plane.alphas[i]:+.3g}, {self.plane.betas[j]:+.3g}), highest {np.nanmax(z):.4g} "
                f"({self.meta['plane_seconds']:.1f} s)")

    def summary(self) -> str:
        """What ``evoprop landscape`` prints: the loss at W, then the line's and the plane's extremes."""
        parts = [self.header()]
        parts += [self.line_summary()] if self.line is not None else []
        parts += [self.plane_summary()] if self.plane is not None else []
        return "\n".join(parts)

    def write(self, out: str | Path) -> list[Path]:
        """landscape_1d.png/.csv (the line), landscape_2d.png/.csv (the plane), landscape.npz and landscape.json."""

        out, m = make_folder(out), self.meta
        title_end = (f"{self.label}\n{m['direction']} directions, {m['loss']} loss on {m['examples']} {m['split']} "
                     "examples")
        files = []
        if self.line is not None:
            files += [line_figure(self.line, out / "landscape_1d.png", title="L(W + a·W1)\n" + title_end),
                      save_line_csv(out / "landscape_1d.csv", self.line)]
        if self.plane is not None:
            files += [plane_figure(self.plane, out / "landscape_2d.png", title="L(W + a·W1 + b·W2)\n" + title_end),
                      save_plane_csv(out / "landscape_2d.csv", self.plane)]
        files.append(save_npz(out / "landscape.npz", self))
        (out / "landscape.json").write_text(json.dumps(m, indent=2) + "\n")
        return files + [out / "landscape.json"]


#: The most grid points on the line and per axis of the plane (every point is one evaluation of the loss).
MAX_POINTS, MAX_GRID = 10_001, 1_001
#: What ``evoprop landscape --only`` computes.
ONLY = ("both", "line", "plane")


@dataclass
class LandscapeSettings(LossSettings):
    """What :func:`run_landscape` computes around a problem's weights (the options of ``evoprop landscape``)."""

    split: str = lab_setting("train", "Data split the loss is measured on.", flag="--on", choices=SPLIT_NAMES)
    examples: int = lab_setting(
        2000, "Measure on the first N examples of the split (0: all of it; time grows with N).",
        check="non-negative")
    direction: str = lab_setting(
        "filter", "filter: Gaussian rescaled filter by filter (each output neuron's row) to the weights' norms, "
                  "Li et al. 2018; gaussian: plain N(0, 1) per weight (its natural range is far smaller: try "
                  "--range 0.05).", choices=DIRECTIONS)
    bias: str = lab_setting(
        "zero", "filter directions on biases and normalisation-layer parameters: zero (they stay put; Li et al.'s "
                "default) or weights (the parameter itself).", choices=BIAS_MODES)
    range: float = lab_setting(1.0, "a and b run from -R to R.", metavar="R", check="positive")
    points: int = lab_setting(51, f"Grid points on the line (2 to {MAX_POINTS}).")
    grid: int = lab_setting(21, f"Grid points per axis of the plane (2 to {MAX_GRID}).")
    only: str = lab_setting("both", "Compute the line, the plane, or both.", choices=ONLY)
    direction_seed: int = lab_setting(0, "Seed of the random directions.", check="seed")
    batch_size: int = batch_setting(1000)


def run_landscape(problem: Problem, settings: LandscapeSettings, progress: Callable[[str], None] | None = None,
                  folder: str | Path | None = None) -> Landscape:
    """The loss along a random line and/or over a random plane through ``problem``'s weights.

    ``progress`` is called with each part of :meth:`Landscape.summary` as soon as it is known. ``folder``,
    when given, is created before the grids are computed, so that a path that cannot be written fails at once.
    """
    s, say = settings, progress or (lambda text: None)
    x, y = problem.tensors(s.split, s.examples)
    if folder is not None:
        make_folder(folder)
    params = list(problem.model.parameters())
    generator = torch.Generator().manual_seed(s.direction_seed)
    d1 = random_direction(params, s.direction, s.bias, generator)
    d2 = random_direction(params, s.direction, s.bias, generator)
    grid = VectorEvaluator(problem.model, x, y, s.loss, s.reg, batch_size=s.batch_size)
    center_loss, center_acc = (float(v[0]) for v in grid.evaluate(grid.center().unsqueeze(0)))
    meta = dict(model=problem.description, split=s.split, examples=len(y), loss=s.loss, reg=s.reg,
                direction=s.direction, bias=s.bias, range=s.range, direction_seed=s.direction_seed,
                center_loss=center_loss, center_accuracy=center_acc)
    result = Landscape(meta=meta, label=problem.label)
    say(result.header())
    if s.only in ("both", "line"):
        t0 = time.perf_counter()
        result.line = line(grid, d1, grid_axis(s.range, s.points))
        meta["line_seconds"] = round(time.perf_counter() - t0, 2)
        say(result.line_summary())
    if s.only in ("both", "plane"):
        t0 = time.perf_counter()
        axis = grid_axis(s.range, s.grid)
        result.plane = plane(grid, (d1, d2), axis, axis)
        meta["plane_seconds"] = round(time.perf_counter() - t0, 2)
        say(result.plane_summary())
    return result


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


def line_figure(line: Line, path: str | Path, title: str = "", xlabel: str = "a  (W + a·W1)") -> Path:
    """Loss (left axis) and accuracy (right axis, dashed) along the line; a = 0 marked."""
    fig = new_figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    ax.plot(line.alphas, line.loss, color="C0", marker="o", markersize=2.5, label="loss")
    if wants_log(line.loss):
        ax.set_yscale("log")
    ax.axvline(0.0, color="0.6", linewidth=0.8, linestyle=":")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss", color="C0")
    acc_ax = ax.twinx()
    acc_ax.plot(line.alphas, line.accuracy, color="C1", linestyle="--", label="accuracy")
    acc_ax.set_ylabel("accuracy", color="C1")
    acc_ax.set_ylim(0, 1)
    ax.set_title(title or "loss along a random direction", fontsize=10)
    return save(fig, path)


def plane_figure(plane: Plane, path: str | Path, title: str = "") -> Path:
    """Two panels over (a, b): contour lines of the loss, and the loss as a colour map."""
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(figsize=(9.6, 4.4))
    contour_ax, map_ax = fig.subplots(1, 2)
    a, b, z = plane.alphas, plane.betas, plane.loss
    log = wants_log(z)
    finite = z[np.isfinite(z)]
    if log:
        levels = np.geomspace(finite.min(), finite.max(), 25)
        norm = LogNorm(finite.min(), finite.max())
    else:
        levels = np.linspace(finite.min(), finite.max(), 25)
        norm = None
    lines = contour_ax.contour(a, b, z, levels=levels, cmap="viridis", norm=norm, linewidths=0.9)
    contour_ax.clabel(lines, lines.levels[::4], fontsize=7, fmt="%.3g")
    mesh = map_ax.pcolormesh(a, b, z, cmap="viridis", norm=norm, shading="auto")
    fig.colorbar(mesh, ax=map_ax, label="loss" + (" (log scale)" if log else ""))
    for ax, name in ((contour_ax, "contours"), (map_ax, "colour map")):
        ax.plot([0], [0], marker="*", color="red", markersize=9, linestyle="none", label="the weights W")
        ax.set_xlabel("a  (direction W1)")
        ax.set_ylabel("b  (direction W2)")
        ax.set_aspect("equal")
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.yaxis.set_major_locator(MaxNLocator(5))
        ax.set_title(name, fontsize=10)
    contour_ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(title or "loss on a random plane  L(W + a·W1 + b·W2)", fontsize=11)
    return save(fig, path)
