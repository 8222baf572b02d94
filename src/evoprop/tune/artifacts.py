"""Each trial's figures, drawn into its run directory and uploaded to Optuna's artifact store.

Optuna Dashboard shows a trial's artifacts on its page: the learning curve (losses and
validation macro-F1 per epoch; never the test split, which a person rating trials must
not see), the first layer's weights as images (for a one-layer network: one template per
class, which a person can judge by eye), and every other PNG the run directory holds
(e.g. a loss-landscape plot written there).
"""

from __future__ import annotations

import math
from pathlib import Path

from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from evoprop.runs import RunDir

CURVE, WEIGHTS = "learning_curve.png", "first_layer.png"
DPI = 100


def artifact_store(path: str | Path) -> FileSystemArtifactStore:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))


def upload_trial_figures(trial, run: RunDir, store: FileSystemArtifactStore, title: str) -> list[str]:
    """Draw the run's figures into its directory, upload every PNG there to ``trial``; return the artifact ids."""
    history = run.read_metrics()
    if history:
        learning_curve_figure(history, run.path / CURVE, title)
    if run.has_checkpoint():
        weights_figure(run.load_checkpoint()["trainer"]["model"], run.path / WEIGHTS, title)
    return [upload_artifact(artifact_store=store, file_path=str(png), study_or_trial=trial, mimetype="image/png")
            for png in sorted(run.path.rglob("*.png"))]


def learning_curve_figure(history: list[dict], path: str | Path, title: str = "") -> Path:
    """Train/validation loss and validation accuracy/macro-F1 per epoch, side by side."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7, 2.8), layout="constrained")
    loss_ax, score_ax = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    style = {"marker": "o", "markersize": 3} if len(epochs) <= 40 else {}
    for ax, keys, label in ((loss_ax, ("train_loss", "val_loss"), "loss"),
                            (score_ax, ("val_f1", "val_accuracy"), "validation score")):
        for key in keys:
            values = [h.get(key) for h in history]
            if any(v is not None and math.isfinite(v) for v in values):
                ax.plot(epochs, [v if v is not None else math.nan for v in values], label=key, **style)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0.5, epochs[-1] + 0.5)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=DPI)
    return Path(path)


def weights_figure(model_state: dict, path: str | Path, title: str = "", max_units: int = 10) -> Path | None:
    """The first layer's incoming weights of up to ``max_units`` units, each drawn as an image of the input.

    Returns None (and draws nothing) for a model that is not an MLP (e.g. a ResNet) or whose input is not a
    square grey or RGB image.
    """
    from matplotlib.figure import Figure

    if "layers.0.weight" not in model_state:
        return None
    weight = model_state["layers.0.weight"].float()
    shape = _image_shape(weight.shape[1])
    if shape is None:
        return None
    units = weight[:max_units]
    fig = Figure(figsize=(1.1 * len(units) + 0.4, 1.6), layout="constrained")
    axes = fig.subplots(1, len(units), squeeze=False)[0]
    for i, (ax, w) in enumerate(zip(axes, units)):
        image = w.reshape(shape)
        if shape[0] == 1:  # signed weights: white is 0, red positive, blue negative
            # the 99th percentile, not the maximum: a few large weights on rarely lit border pixels
            # would otherwise wash the template out
            bound = float(image.abs().flatten().quantile(0.99)) or 1.0
            ax.imshow(image[0].numpy(), cmap="RdBu_r", vmin=-bound, vmax=bound)
        else:
            low, high = float(image.min()), float(image.max())
            ax.imshow(((image - low) / ((high - low) or 1.0)).permute(1, 2, 0).numpy())
        ax.set_title(str(i), fontsize=8)
        ax.set_axis_off()
    fig.suptitle(f"first-layer weights{' — ' + title if title else ''}", fontsize=8)
    fig.savefig(path, dpi=DPI)
    return Path(path)


def _image_shape(n: int) -> tuple[int, int, int] | None:
    for channels in (1, 3):
        side = math.isqrt(n // channels)
        if n % channels == 0 and side * side * channels == n:
            return channels, side, side
    return None

