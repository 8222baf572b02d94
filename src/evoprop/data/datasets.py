"""``load_dataset``: find, verify, split and convert a data set into tensors on a device."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import torch

from ..errors import ConfigError
from . import cifar, mnist, sources
from .splits import DatasetSplits, Split, split_indices, standardize_

#: Names accepted by :func:`load_dataset`.
DATASETS = ("mnist", "cifar10-gray", "cifar10")
SPLITS = ("paper", "official")
#: Paper split sizes: (pool of official training images used, how many of them form the test split).
_PAPER_SIZES = {"mnist": (55_000, 5_500), "cifar10": (50_000, 10_000)}


class DataNote(UserWarning):
    """Something about the data a user should know, said once per process (the CLI prints it as a note)."""


class UnofficialDataWarning(DataNote):
    """A local data file is usable but is not the official release (see ``DatasetSplits.source_note``)."""


class BundledDataNote(DataNote):
    """The data folder the user named has no MNIST files, so the copy bundled with evoprop is used."""


_warned: set[tuple[str, str]] = set()


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    split: str = "paper",
    val_fraction: float = 0.1,
    split_seed: int = 0,
    standardize: bool = False,
    device: str | torch.device = "cpu",
    limit_train: int | None = None,
    limit_test: int | None = None,
    download: bool = True,
) -> DatasetSplits:
    """Load ``name`` ("mnist", "cifar10-gray" or "cifar10") as train/val/test tensors on ``device``.

    ``data_dir`` resolves as: the argument, else ``$EVOPROP_DATA``, else ``./data``; a folder named by
    the argument or the environment must exist (see :func:`evoprop.data.sources.locate_data_dir`).
    MNIST missing there comes from the copy bundled with the package (a :class:`BundledDataNote`
    says so when the folder was named), then from a download. Splits depend
    only on ``split`` ("paper" or "official"), ``val_fraction`` and ``split_seed``. Pixels are
    float32 in [0, 1]; with ``standardize`` every split is shifted/scaled by the per-channel
    mean/std of the (limited) train split. ``limit_train`` keeps the first N train examples,
    ``limit_test`` the first N of val and of test (the split itself is decided before limiting).
    Raises ConfigError for bad arguments and DataError for missing/corrupt/undownloadable data.
    """
    name = _check_args(name, split, val_fraction, split_seed, limit_train, limit_test)
    device = _check_device(device)
    root = sources.locate_data_dir(data_dir)

    if name == "mnist":
        raw, paths = mnist.load_mnist(root, download)
        files, note, class_names = [str(p) for p in paths], None, list(mnist.CLASS_NAMES)
        if root.explicit and mnist.uses_bundled_copy(paths):
            _warn_once(root.path / "mnist", f"no MNIST files in {root.path / 'mnist'} (data folder from "
                       f"{root.origin}): using the official copy bundled with evoprop", BundledDataNote)

        def convert(x: torch.Tensor) -> torch.Tensor:
            return x.to(device).float().div_(255).unsqueeze(1)

    else:
        path = cifar.locate(root, download)
        raw, class_names, md5 = cifar.load_cifar10(path)
        files, note = [str(path)], cifar.source_note(md5)
        if note is not None:
            _warn_once(path, f"{path} is not the official CIFAR-10 release: using it as '{note}'; results on it "
                       "are not pixel-exact CIFAR-10 results, so report its source with them", UnofficialDataWarning)
        gray = name == "cifar10-gray"

        def convert(x: torch.Tensor) -> torch.Tensor:
            return cifar.to_float(x, gray=gray, device=device)

    plan = split_indices(
        split,
        n_train_file=len(raw["train_y"]),
        n_test_file=len(raw["test_y"]),
        paper_sizes=_PAPER_SIZES["mnist" if name == "mnist" else "cifar10"],
        val_fraction=float(val_fraction),
        seed=int(split_seed),
    )
    limits = {"train": limit_train, "val": limit_test, "test": limit_test}
    parts: dict[str, Split | None] = {}
    for part, entry in plan.items():
        if entry is None:
            parts[part] = None
            continue
        idx, origin = entry
        idx = idx[: limits[part]] if limits[part] is not None else idx
        parts[part] = Split(convert(raw[f"{origin}_x"][idx]), raw[f"{origin}_y"][idx].to(device), idx, origin)

    mean = std = None
    if standardize:
        mean, std = standardize_([parts["train"], parts["val"], parts["test"]])
    return DatasetSplits(
        name=name,
        split=split,
        train=parts["train"],
        val=parts["val"],
        test=parts["test"],
        num_classes=10,
        input_shape=tuple(parts["train"].x.shape[1:]),
        class_names=class_names,
        source_note=note,
        standardize=bool(standardize),
        mean=mean,
        std=std,
        split_seed=int(split_seed),
        val_fraction=float(val_fraction),
        files=files,
    )


def _check_args(name, split, val_fraction, split_seed, limit_train, limit_test) -> str:
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, (int, float))
        or not math.isfinite(val_fraction)
        or not 0 <= val_fraction < 1
    ):
        raise ConfigError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}")
    if isinstance(split_seed, bool) or not isinstance(split_seed, int):
        raise ConfigError(f"split_seed must be an integer, got {split_seed!r}")
    for arg, value in (("limit_train", limit_train), ("limit_test", limit_test)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{arg} must be a positive integer or None, got {value!r}")
    return key


def _check_device(device: str | torch.device) -> torch.device:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}; use e.g. 'cpu' or 'cuda'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device} requested but CUDA is not available; use device 'cpu'")
    return device


def _warn_once(path: Path, message: str, category: type[DataNote]) -> None:
    """Say ``message`` once per process and path."""
    key = (str(path.resolve()), category.__name__)
    if key in _warned:
        return
    _warned.add(key)
    warnings.warn(message, category, stacklevel=3)
