"""The paper's MNIST 1-layer task as a batched fitness function (benchmarks only).

Softmax regression 784 -> 10 (d = 7,850: weights then biases), mean cross-entropy
on one fixed 256-image mini-batch of the MNIST training set, read directly from
the idx .gz files in ``../shared/datasets/mnist`` (or ``$EVOPROP_MNIST_DIR``).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

DIM = 784 * 10 + 10


def mnist_dir() -> Path:
    env = os.environ.get("EVOPROP_MNIST_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for cand in (here.parent.parent / "shared" / "datasets" / "mnist", here.parent / "src" / "evoprop" / "data" / "bundled" / "mnist"):
        if (cand / "train-images-idx3-ubyte.gz").exists():
            return cand
    raise FileNotFoundError("MNIST idx files not found; set EVOPROP_MNIST_DIR")


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def minibatch(batch: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    d = mnist_dir()
    images = _read_idx(d / "train-images-idx3-ubyte.gz")
    labels = _read_idx(d / "train-labels-idx1-ubyte.gz")
    idx = np.random.default_rng(seed).choice(len(images), size=batch, replace=False)
    x = torch.from_numpy(images[idx].reshape(batch, 784).astype(np.float32) / 255.0)
    y = torch.from_numpy(labels[idx].astype(np.int64))
    return x, y


class MnistFitness:
    """f(X) for X of shape (P, 7850): mean NLL of softmax(x W + b) on the mini-batch, per row."""

    def __init__(self, batch: int = 256, seed: int = 0, dtype: torch.dtype = torch.float32) -> None:
        self.x, self.y = minibatch(batch, seed)
        self.x = self.x.to(dtype)

    def __call__(self, X) -> torch.Tensor:
        if not isinstance(X, torch.Tensor):
            X = torch.from_numpy(np.asarray(X))
        X = X.to(self.x.dtype)
        P = X.shape[0]
        W = X[:, :7840].reshape(P, 784, 10)
        b = X[:, 7840:]
        logits = torch.einsum("ni,pic->pnc", self.x, W) + b[:, None, :]
        logp = torch.log_softmax(logits, dim=2)
        nll = -logp.gather(2, self.y.expand(P, -1).unsqueeze(2)).squeeze(2)
        return nll.mean(1)
