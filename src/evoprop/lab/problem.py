"""What a lab command works on: a model and its data, from a saved run or freshly initialised.

A saved run is rebuilt exactly as training saw it: the model from the run's config.yaml,
its weights from checkpoint.pt (the last completed epoch), and the data with the run's
own split and preprocessing (``standardize`` included), so its loss here is its loss there.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from evoprop.config import TrainConfig
from evoprop.data import DatasetSplits, UnofficialDataWarning, load_dataset
from evoprop.device import resolve_device
from evoprop.errors import ConfigError, EvopropError
from evoprop.models import MLP, build_model
from evoprop.runs.rundir import RunDir

SPLIT_NAMES = ("train", "val", "test")
#: "unit": pixels in [0, 1] (evoprop's own); "raw": 0 ... 255; "centred": 0 ... 255 minus the training split's
#: mean image, CS231n's preprocessing for linear classifiers (the CS231n optimization notes' numbers need it).
PIXELS = ("unit", "raw", "centred")


@dataclass
class Problem:
    """A model, the data it is judged on, a line saying what both are, and a short label for figure titles.

    ``from_run``: the model is a saved run's (its weights are the point to look at, not a start to replace).
    """

    model: nn.Module
    data: DatasetSplits
    description: str
    label: str
    from_run: bool = False

    @property
    def device(self) -> torch.device:
        return self.data.train.x.device

    @property
    def short_name(self) -> str:
        """Data set and model in a few words, e.g. 'cifar10 [CIFAR-10 reconstruction], linear classifier 10 x 3073'."""
        return f"{self.data.name}{_label_note(self.data)}, {model_name(self.model)}"

    def tensors(self, split: str = "train", examples: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of a split, its first ``examples`` examples when given (the split is already shuffled)."""
        if split not in SPLIT_NAMES:
            raise ConfigError(f"unknown split '{split}'; valid: {', '.join(SPLIT_NAMES)}")
        part = getattr(self.data, split)
        if part is None or len(part) == 0:
            raise ConfigError(f"this data set has no {split} split (a validation split needs val_fraction > 0)")
        if examples is not None and examples < 0:
            raise ConfigError(f"the number of examples must be positive (0: all), got {examples}")
        n = len(part) if not examples else min(examples, len(part))
        return part.x[:n], part.y[:n]


@dataclass
class LabRun:
    """The start of a lab experiment's result: where it looked, as its problem says it."""

    description: str  # the model and data (Problem.description)
    label: str  # the same in a few words, for the figures' titles (Problem.short_name)


def load_data(dataset: str, data_dir=None, device="cpu", split: str = "paper", val_fraction: float = 0.1,
              split_seed: int = 0, standardize: bool = False, limit_train=None, limit_test=None,
              pixels: str = "unit") -> DatasetSplits:
    """``load_dataset`` plus the lab's pixel scale (see ``PIXELS``), applied in place to every split."""
    if pixels not in PIXELS:
        raise ConfigError(f"unknown pixel scale '{pixels}'; valid: {', '.join(PIXELS)}")
    data = load_dataset(dataset, data_dir=data_dir, split=split, val_fraction=val_fraction, split_seed=split_seed,
                        standardize=standardize, device=device, limit_train=limit_train, limit_test=limit_test)
    parts = [part for part in (data.train, data.val, data.test) if part is not None]
    if pixels in ("raw", "centred"):
        for part in parts:
            part.x.mul_(255)
    if pixels == "centred":
        mean = data.train.x.mean(dim=0, keepdim=True)  # the mean image of the training split
        for part in parts:
            part.x.sub_(mean)
    return data


def fresh_problem(dataset: str = "mnist", *, depth: int = 1, width: int = 200, activation: str = "relu",
                  init: str = "glorot", seed: int = 0, data_dir=None, device: str = "auto", split: str = "paper",
                  val_fraction: float = 0.1, limit_train=None, limit_test=None, pixels: str = "unit") -> Problem:
    """A freshly initialised MLP (seeded) and its data set."""
    dev = resolve_device(device)
    data = load_data(dataset, data_dir, dev, split, val_fraction, 0, False, limit_train, limit_test, pixels)
    torch.manual_seed(seed)
    model = build_model("mlp", data.input_shape, data.num_classes, depth=depth, width=width, activation=activation,
                        init=init).to(dev)
    what = f"{dataset} depth {depth}" + (f" width {width}" if depth > 1 else "") + f", fresh {init} init (seed {seed})"
    return Problem(model, data, what + _pixel_note(pixels) + _data_note(data), what + _label_note(data))


def run_problem(run_dir: str | Path, *, data_dir=None, device: str = "auto", limit_train=None,
                limit_test=None) -> Problem:
    """The model of a saved run at its last completed epoch, with the run's data and preprocessing."""
    run = RunDir(run_dir)
    config: TrainConfig = run.read_config()
    if not run.has_checkpoint():
        raise EvopropError(f"{run.path} has no checkpoint yet (no epoch completed); nothing to load")
    dev = resolve_device(device)
    with warnings.catch_warnings():
        # training already reported the data's source; the note is repeated in the description below
        warnings.simplefilter("ignore", UnofficialDataWarning)
        data = load_data(config.dataset, data_dir or config.data_dir, dev, config.split, config.val_fraction,
                         config.split_seed, config.standardize, limit_train or config.limit_train,
                         limit_test or config.limit_test)
    model = build_model(config.model, data.input_shape, data.num_classes, depth=config.depth, width=config.width,
                        activation=config.activation, init=config.init, resnet_width=config.resnet_width).to(dev)
    state = run.load_checkpoint(map_location=dev)
    try:
        model.load_state_dict(state["trainer"]["model"])
    except (KeyError, TypeError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EvopropError(f"{run.checkpoint_path} does not hold this run's model ({first})") from None
    epochs = len(state["trainer"].get("history", []))
    shape = f"depth {config.depth} width {config.width}" if config.model == "mlp" else config.model
    what = f"{config.dataset} {shape}, {config.method}, after epoch {epochs}"
    return Problem(model, data, f"run {run.path} ({what})" + _data_note(data), what + _label_note(data), from_run=True)


def model_name(model: nn.Module) -> str:
    """'linear classifier 10 x 3073' for a depth-1 MLP, 'MLP depth 10 width 200', else the class name."""
    if isinstance(model, MLP):
        first = model.layers[0]
        if model.depth == 1:
            return f"linear classifier {first.out_features} x {first.in_features + 1}"
        return f"MLP depth {model.depth} width {first.out_features}"
    return type(model).__name__


def _pixel_note(pixels: str) -> str:
    return {"raw": ", raw pixels 0-255", "centred": ", pixels 0-255 minus the training mean image"}.get(pixels, "")


def _label_note(data: DatasetSplits) -> str:
    return " [CIFAR-10 reconstruction]" if data.source_note else ""


def _data_note(data: DatasetSplits) -> str:
    return f"; data: {data.source_note}" if data.source_note else ""
