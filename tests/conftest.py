"""Shared data fixtures. Loaded data sets are session-scoped and shared: never modify them in place."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

#: The read-only shared data folder that sits beside the repository (used unless $EVOPROP_DATA is set).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Folder holding mnist/ and cifar10/: $EVOPROP_DATA if set, else <repo>/../shared/datasets."""
    return Path(os.environ.get("EVOPROP_DATA") or SHARED_DATA).resolve()


@pytest.fixture(scope="session")
def mnist(data_dir):
    """MNIST, paper split, val_fraction=0.1, split_seed=0: 44,550 / 4,950 / 5,500 on the CPU."""
    from evoprop.data import load_dataset

    return load_dataset("mnist", data_dir=data_dir, split="paper", val_fraction=0.1, split_seed=0)


@pytest.fixture(scope="session")
def cifar_archive(data_dir) -> Path:
    """Path of cifar10/cifar-10-python.tar.gz; skips the test when it is absent."""
    path = data_dir / "cifar10" / "cifar-10-python.tar.gz"
    if not path.is_file():
        pytest.skip(f"CIFAR-10 archive not found at {path}; set EVOPROP_DATA to a folder with cifar10/cifar-10-python.tar.gz")
    return path


@pytest.fixture(scope="session")
def cifar_gray(data_dir, cifar_archive):
    """CIFAR-10 grayscale, paper split, val_fraction=0.1, split_seed=0: 36,000 / 4,000 / 10,000."""
    from evoprop.data import load_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the "not the official archive" note; tested in test_data.py
        return load_dataset("cifar10-gray", data_dir=data_dir, split="paper", val_fraction=0.1, split_seed=0)


@pytest.fixture(scope="session")
def mnist_small(mnist):
    """(x, y): the first 2,000 MNIST training examples of the ``mnist`` fixture, for quick optimizer tests."""
    return mnist.train.x[:2000], mnist.train.y[:2000]
