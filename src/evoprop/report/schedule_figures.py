"""The figure of a schedule comparison: test F1, smoothing degree δ, learning rate and batch size per epoch.

One line per run (a schedule); thin vertical lines mark where the stages begin. δ, the
learning rate and the batch size are drawn on log axes: the graduated schedules cut δ by
a constant factor per stage, which is a staircase of equal steps there. Drawn with the
helpers of :mod:`evoprop.report.figures` (matplotlib's object API, no display needed).
"""

from __future__ import annotations

from pathlib import Path

from evoprop.report.figures import _color, _epoch_axis, _figure, _finish, _log_axis, _style

#: (metrics key, axis label, log scale) of the four panels, left to right, top to bottom.
PANELS = (
    ("test_f1", "test macro-F1", False),
    ("delta", "smoothing degree δ = η C / √b", True),
    ("lr", "learning rate η", True),
    ("batch_size", "batch size b", True),
)


def schedule_figure(series: list[tuple[str, list[dict]]], path: str | Path, title: str = "",
                    note: str | None = None, stage_starts: list[int] | None = None) -> Path:
    """Draw ``series`` — (label, per-epoch metrics) pairs — into a 2×2 figure at ``path``."""
    fig = _figure(figsize=(12, 7.5))
    axes = fig.subplots(2, 2).ravel()
    for ax, (key, label, log) in zip(axes, PANELS):
        values = []
        for i, (name, history) in enumerate(series):
            points = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
            if not points:
                continue
            epochs, ys = zip(*points)
            values.extend(ys)
            ax.plot(epochs, ys, color=_color(i), label=name, linewidth=1.5, **_style(len(points)))
        for start in stage_starts or []:
            if start > 1:
                ax.axvline(start - 0.5, color="gray", linewidth=0.6, alpha=0.4)
        if log and values and min(values) > 0 and max(values) / min(values) > 1.5:
            _log_axis(ax)
        _epoch_axis(ax)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right center", fontsize="small")
    fig.suptitle(title or "Schedules: test F1, smoothing degree, learning rate and batch size per epoch",
                 fontsize="medium")
    if note:
        fig.text(0.01, 0.005, note, fontsize="x-small", color="dimgray", ha="left", va="bottom")
    return _finish(fig, path)
