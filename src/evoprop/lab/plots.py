"""The lab's figures, as PNG files: a loss line, a loss plane, search curves, the step-size sweep, the Hessian lens.

Drawn with matplotlib's object API (``matplotlib.figure.Figure`` saved through the Agg
canvas), like :mod:`evoprop.report.figures`: no display needed, pyplot's state untouched.
Losses that span more than two decades are drawn on a log scale, so the valley's floor
is as visible as its walls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from evoprop.lab.landscape import Line, Plane
from evoprop.lab.precond import Lens
from evoprop.lab.search import SearchResult
from evoprop.lab.stepsize import StepSizeSweep

DPI = 120
_LOG_SPAN = 100.0  # max/min loss ratio above which a loss axis is logarithmic


def _figure(**kwargs):
    from matplotlib.figure import Figure  # imported here: `evoprop --help` need not load matplotlib

    return Figure(layout="constrained", **kwargs)


def _wants_log(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return finite.size > 0 and finite.min() > 0 and finite.max() / finite.min() > _LOG_SPAN


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=DPI)
    return path


def line_figure(line: Line, path: str | Path, title: str = "", xlabel: str = "a  (W + a·W1)") -> Path:
    """Loss (left axis) and accuracy (right axis, dashed) along the line; a = 0 marked."""
    fig = _figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    ax.plot(line.alphas, line.loss, color="C0", marker="o", markersize=2.5, label="loss")
    if _wants_log(line.loss):
        ax.set_yscale("log")
    ax.axvline(0.0, color="0.6", linewidth=0.8, linestyle=":")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss", color="C0")
    acc_ax = ax.twinx()
    acc_ax.plot(line.alphas, line.accuracy, color="C1", linestyle="--", label="accuracy")
    acc_ax.set_ylabel("accuracy", color="C1")
    acc_ax.set_ylim(0, 1)
    ax.set_title(title or "loss along a random direction", fontsize=10)
    return _save(fig, path)


def plane_figure(plane: Plane, path: str | Path, title: str = "") -> Path:
    """Two panels over (a, b): contour lines of the loss, and the loss as a colour map."""
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import MaxNLocator

    fig = _figure(figsize=(9.6, 4.4))
    contour_ax, map_ax = fig.subplots(1, 2)
    a, b, z = plane.alphas, plane.betas, plane.loss
    log = _wants_log(z)
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
    return _save(fig, path)


def search_figure(results: Sequence[SearchResult], path: str | Path, title: str = "") -> Path:
    """Training loss kept after each iteration, one line per strategy (log x when iterations > 100)."""
    fig = _figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    labels = {"random": "random search (best so far)", "local": "random local search", "gradient": "gradient descent"}
    for i, r in enumerate(results):
        ax.plot(np.arange(len(r.kept)), r.kept, color=f"C{i}", label=labels.get(r.method, r.method))
    if any(_wants_log(r.kept) for r in results):
        ax.set_yscale("log")
    ax.set_xlabel("iteration (try or step)")
    ax.set_ylabel("training loss")
    ax.legend()
    ax.set_title(title or "training loss", fontsize=10)
    return _save(fig, path)


def stepsize_figure(sweep: StepSizeSweep, path: str | Path, title: str = "") -> Path:
    """Loss after one gradient step against the step size (log x), with the loss before as a line."""
    fig = _figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    ax.plot(sweep.step_sizes, sweep.loss_after, marker="o", color="C0", label="after one step")
    ax.axhline(sweep.loss_before, color="0.5", linestyle="--", label="before the step")
    ax.set_xscale("log")
    if _wants_log(np.append(sweep.loss_after, sweep.loss_before)):
        ax.set_yscale("log")
    ax.set_xlabel("step size")
    ax.set_ylabel("training loss")
    ax.legend()
    ax.set_title(title or "loss after one gradient step", fontsize=10)
    return _save(fig, path)


_SCALE_LABELS = {"adagrad": "Adagrad √G", "rmsprop": "RMSprop √v", "adam": "Adam √v", "natural": "K-FAC diag(A ⊗ G)"}


def precond_diagonal_figure(lens: Lens, path: str | Path, title: str = "") -> Path:
    """One log-log panel per method: the curvature's diagonal (x) against the method's per-parameter scale (y)."""
    names = [n for n in lens.scales if n in _SCALE_LABELS]
    fig = _figure(figsize=(3.4 * max(len(names), 1), 3.6))
    axes = np.atleast_1d(fig.subplots(1, max(len(names), 1)))
    rows = {r.name: r for r in lens.rows}
    for ax, name in zip(axes, names):
        scale, diag = lens.scales[name], lens.hessian_diagonal
        keep = (scale > 0) & (diag > 0) & np.isfinite(scale)
        ax.loglog(diag[keep], scale[keep], linestyle="none", marker=".", markersize=1.5, alpha=0.4, color="C0")
        ax.set_xlabel(f"diag {'H' if lens.curvature == 'hessian' else 'G'} (exact)")
        ax.set_ylabel(_SCALE_LABELS[name])
        r = rows[name]
        note = (f"Spearman {r.spearman:.2f}, log-Pearson {r.pearson_log:.2f}" if r.spearman is not None
                else f"factor error {r.kfac_error:.2f}" if r.kfac_error is not None else "")
        ax.set_title(f"{name}\n{note}", fontsize=9)
    fig.suptitle(title or "the curvature's diagonal against each method's preconditioner", fontsize=10)
    return _save(fig, path)


def precond_cosine_figure(lens: Lens, path: str | Path, title: str = "") -> Path:
    """The cosine between each optimizer's update and the Newton direction, one bar each."""
    fig = _figure(figsize=(6.4, 0.45 * len(lens.rows) + 1.4))
    ax = fig.add_subplot()
    names = [r.name for r in lens.rows]
    values = [r.cosine for r in lens.rows]
    ax.barh(names, values, color=["C3" if v < 0 else "C0" for v in values])
    ax.axvline(0, color="0.5", linewidth=0.8)
    ax.set_xlim(min(-0.05, min(values, default=0) - 0.05), 1.05)
    ax.invert_yaxis()
    ax.set_xlabel("cos(update, Newton direction)")
    ax.set_title(title or "how Newton-like is each optimizer's step", fontsize=10)
    return _save(fig, path)
