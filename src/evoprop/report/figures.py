"""Figures of a comparison, as PNG files: test macro-F1 per epoch (the paper's figures) and losses.

Drawn with matplotlib's object API (``matplotlib.figure.Figure``, saved through the Agg
canvas): no display is needed, and pyplot's global state and the user's chosen backend
are untouched.

One line per method (a :class:`~evoprop.report.tables.Group`): with several seeds, the
mean over seeds at each epoch all of them reached, and a band from their minimum to their
maximum. On the F1 figure a dotted line in the method's colour marks the paper's F1, and
a dot marks each run's epoch chosen on validation (the honest protocol).
"""

from __future__ import annotations

import math
from pathlib import Path

from evoprop.report.tables import Group

DPI = 120


def _color(i: int) -> str:
    return f"C{i % 10}"


def _curves(group: Group, key: str) -> tuple[list[int], list[float], list[float], list[float]]:
    """Epochs, mean, min and max over the group's runs of ``key`` (epochs every run reached)."""
    series = [[h.get(key) for h in r.history] for r in group.records if r.history]
    if not series:
        return [], [], [], []
    n = min(len(s) for s in series)
    epochs, mean, low, high = [], [], [], []
    for i in range(n):
        vals = [s[i] for s in series if s[i] is not None and math.isfinite(s[i])]
        if not vals:
            continue
        epochs.append(i + 1)
        mean.append(sum(vals) / len(vals))
        low.append(min(vals))
        high.append(max(vals))
    return epochs, mean, low, high


def _style(n_points: int) -> dict:
    return {"marker": "o", "markersize": 3} if n_points <= 40 else {}


def _figure(**kwargs):
    from matplotlib.figure import Figure  # imported here: `evoprop --help` need not load matplotlib

    return Figure(layout="constrained", **kwargs)


#: From this many epochs on, the epoch axis is logarithmic: over the paper's 1,000 epochs a linear
#: axis squeezes the first tens of epochs (where the rows differ, and every ES row ends) into a few
#: pixels; a log axis shows the start and the plateau alike.
LOG_EPOCHS = 200


def _epoch_axis(ax, longest: int = 0) -> None:
    """Integer epoch ticks; a log scale with plain labels (1, 2, 5, 10 …) once a curve has
    :data:`LOG_EPOCHS` epochs or more."""
    from matplotlib.ticker import MaxNLocator

    if longest >= LOG_EPOCHS:
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
        ax.set_xlabel("epoch (log scale)")
        return
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


def _longest(ax) -> int:
    """The most epochs any line drawn on ``ax`` has (its largest x)."""
    return int(max((max(line.get_xdata(), default=0) for line in ax.get_lines()), default=0))


def _plain_log_ticks(axis) -> None:
    """Ticks of a log-scaled axis at 1, 2, 5 per decade, labelled plainly (0.2, 0.5, 1, 2) instead of 2×10⁻¹."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _log_axis(ax) -> None:
    """A log-scaled y axis with plain tick labels."""
    ax.set_yscale("log")
    _plain_log_ticks(ax.yaxis)


def _finish(fig, path: str | Path) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=DPI)
    return path


def f1_figure(groups: list[Group], path: str | Path, title: str = "", note: str | None = None,
              target_f1: float | None = None) -> Path:
    """Test macro-F1 per epoch, one line per group; the paper's F1 dotted; validation-chosen epochs as dots;
    ``target_f1`` as a dashed grey line."""
    from matplotlib.lines import Line2D

    fig = _figure(figsize=(10, 5))
    ax = fig.add_subplot()
    any_paper = False
    for i, g in enumerate(groups):
        color = _color(i)
        epochs, mean, low, high = _curves(g, "test_f1")
        if not epochs:
            continue
        ax.plot(epochs, mean, color=color, label=g.label, linewidth=1.5, **_style(len(epochs)))
        if len(g.records) > 1:
            ax.fill_between(epochs, low, high, color=color, alpha=0.2, linewidth=0)
        for r in g.records:
            e = r.headline.get("val_selected_epoch")
            if e is not None and e <= len(r.history):
                ax.plot([e], [r.history[e - 1]["test_f1"]], "o", color=color, markersize=6,
                        markeredgecolor="black", markeredgewidth=0.6, zorder=5)
        if g.paper_f1 is not None:
            any_paper = True
            ax.axhline(g.paper_f1, color=color, linestyle=":", linewidth=1.2, alpha=0.9)
    if target_f1 is not None:
        ax.axhline(target_f1, color="gray", linestyle="--", linewidth=1.0, label=f"target F1 {target_f1:g}")
    handles, labels = ax.get_legend_handles_labels()
    if any_paper:
        handles.append(Line2D([], [], color="gray", linestyle=":"))
        labels.append("the paper's F1 (dotted, same colour)")
    handles.append(Line2D([], [], marker="o", color="gray", linestyle="", markeredgecolor="black"))
    labels.append("epoch chosen on validation")
    ax.legend(handles, labels, fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    _epoch_axis(ax, _longest(ax))
    ax.set_ylabel("test macro-F1")
    ax.grid(True, alpha=0.3)
    ax.set_title(title or "Test macro-F1 per epoch", fontsize="medium")
    if note:
        fig.text(0.01, 0.005, note, fontsize="x-small", color="dimgray", ha="left", va="bottom")
    return _finish(fig, path)


def loss_figure(groups: list[Group], path: str | Path, title: str = "", note: str | None = None) -> Path:
    """Test loss (left) and training loss (right) per epoch, one line per group (log scale over a decade)."""
    fig = _figure(figsize=(12, 4.5))
    axes = fig.subplots(1, 2)
    for ax, key, name in ((axes[0], "test_loss", "test loss (NLL)"), (axes[1], "train_loss", "training loss")):
        drawn = False
        for i, g in enumerate(groups):
            epochs, mean, low, high = _curves(g, key)
            if not epochs:
                continue
            drawn = True
            ax.plot(epochs, mean, color=_color(i), label=g.label, linewidth=1.5, **_style(len(epochs)))
            if len(g.records) > 1:
                ax.fill_between(epochs, low, high, color=_color(i), alpha=0.2, linewidth=0)
        values = [v for line in ax.get_lines() for v in line.get_ydata()]
        if drawn and min(values) > 0 and max(values) / min(values) > 10:
            _log_axis(ax)
        _epoch_axis(ax, _longest(ax))
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3, which="both")
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    if any(g.records[0].config.get("method") == "es" for g in groups):
        axes[1].set_title("ES-only rows: the best candidate's loss on the generation's mini-batch", fontsize="small")
    fig.suptitle(title or "Loss per epoch", fontsize="medium")
    if note:
        fig.text(0.01, 0.005, note, fontsize="x-small", color="dimgray", ha="left", va="bottom")
    return _finish(fig, path)
