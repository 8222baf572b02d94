"""What the lab's figures share (each experiment draws its own: a loss line and plane, search curves, the step-size sweep, the Hessian lens).

Drawn with matplotlib's object API (``matplotlib.figure.Figure`` saved through the Agg
canvas), like :mod:`evoprop.report.figures`: no display needed, pyplot's state untouched.
Losses that span more than two decades are drawn on a log scale, so the valley's floor
is as visible as its walls.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DPI = 120
_LOG_SPAN = 100.0  # max/min loss ratio above which a loss axis is logarithmic


def new_figure(**kwargs):
    from matplotlib.figure import Figure  # imported here: `evoprop --help` need not load matplotlib

    return Figure(layout="constrained", **kwargs)


def wants_log(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return finite.size > 0 and finite.min() > 0 and finite.max() / finite.min() > _LOG_SPAN


def save(fig, path: str | Path) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=DPI)
    return path


def finish_loss_figure(fig, ax, path: str | Path, *, log: bool, xlabel: str, title: str) -> Path:
    """The end of a figure of training-loss lines (search curves, the step-size sweep): log y when
    ``log``, the axis labels, the legend and the title; saved to ``path``."""
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("training loss")
    ax.legend()
    ax.set_title(title, fontsize=10)
    return save(fig, path)
