"""A tiny tune config for the tune tests: 1-layer MNIST on a few hundred examples, well under a second per trial."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml


def write_tune_config(path: Path, data_dir: Path, *, train: dict | None = None, space: dict | None = None,
                      study: dict | None = None) -> Path:
    config = {
        "train": {"dataset": "mnist", "data_dir": str(data_dir), "depth": 1, "limit_train": 600, "limit_test": 300,
                  "epochs": 2, "batch_size": 64, "seed": 0, **(train or {})},
        "search_space": space if space is not None else {
            "optimizer": ["sgd", "adam"],
            "lr": {"low": 1.0e-3, "high": 0.5, "log": True},
        },
        "study": {"seed": 0, **(study or {})},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models train fastest on one thread; on a busy shared 2-core machine two threads can be 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def subprocess_env() -> dict:
    """The environment for `evoprop` child processes: one thread each, as above."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
