"""In-memory splits: the Split and DatasetSplits types, split bookkeeping and standardisation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch

from ..errors import ConfigError, DataError


@dataclass(eq=False)
class Split:
    """One part of a data set, held as tensors on one device.

    ``x`` is float32 (N, C, H, W), ``y`` int64 (N,). ``indices`` (CPU int64, optional) are the
    positions of these examples in the official file named by ``origin`` ("train" or "test"),
    so a split can be traced back to the raw data.
    """

    x: torch.Tensor
    y: torch.Tensor
    indices: torch.Tensor | None = None
    origin: str | None = None

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise DataError(f"split has {len(self.x)} inputs but {len(self.y)} labels; build it from matching tensors")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def batches(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y)`` mini-batches covering the split once.

        With ``shuffle`` the order is ``torch.randperm(N, generator=generator)`` drawn on the CPU
        (so a seeded CPU generator gives the same batches on any device) and then moved to the
        data's device; batches are gathered by tensor indexing. Without ``shuffle`` batches are
        contiguous slices (views). ``drop_last`` skips a final batch smaller than ``batch_size``.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        n = len(self)
        order = torch.randperm(n, generator=generator).to(self.x.device) if shuffle else None
        for start in range(0, n, batch_size):
            stop = start + batch_size
            if stop > n and drop_last:
                break
            if order is None:
                yield self.x[start:stop], self.y[start:stop]
            else:
                idx = order[start:stop]
                yield self.x[idx], self.y[idx]


@dataclass(eq=False)
class DatasetSplits:
    """A loaded data set: ``train``, optional ``val`` and ``test`` splits plus metadata."""

    name: str
    split: str
    train: Split
    val: Split | None
    test: Split
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: list[str]
    source_note: str | None = None
    standardize: bool = False
    mean: list[float] | None = None  # per channel, from the train split, when standardized
    std: list[float] | None = None
    split_seed: int = 0
    val_fraction: float = 0.0
    files: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        """A JSON-serialisable summary for run metadata and the CLI."""
        return {
            "name": self.name,
            "split": self.split,
            "split_seed": self.split_seed,
            "val_fraction": self.val_fraction,
            "sizes": {
                "train": len(self.train),
                "val": len(self.val) if self.val is not None else 0,
                "test": len(self.test),
            },
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "standardize": self.standardize,
            "mean": self.mean,
            "std": self.std,
            "source_note": self.source_note,
            "files": list(self.files),
        }


def split_indices(
    scheme: str,
    n_train_file: int,
    n_test_file: int,
    paper_sizes: tuple[int, int],
    val_fraction: float,
    seed: int,
) -> dict[str, tuple[torch.Tensor, str] | None]:
    """Decide which official examples go where: ``{"train"|"val"|"test": (indices, origin) or None}``.

    ``paper``: the first ``paper_sizes[0]`` official training examples, permuted with ``seed``; the
    first ``pool - paper_sizes[1]`` of the permutation are the train part, the rest the test split.
    ``official``: train part = the official training file, test = the official test file.
    Validation: ``round(val_fraction * len(train part))`` examples, chosen by a second seeded
    permutation of the train part; the remainder is train. Everything depends on ``seed`` only.
    """
    g = torch.Generator().manual_seed(seed)
    if scheme == "paper":
        pool, n_test = paper_sizes
        if n_train_file < pool:
            raise DataError(
                f"the paper split needs {pool} training examples but the data has {n_train_file}; "
                "use split='official' or supply the complete data set"
            )
        perm = torch.randperm(pool, generator=g)
        train_part, test = perm[: pool - n_test], (perm[pool - n_test :], "train")
    else:
        train_part, test = torch.arange(n_train_file), (torch.arange(n_test_file), "test")
    n_val = round(val_fraction * len(train_part))
    if n_val >= len(train_part):
        raise ConfigError(f"val_fraction {val_fraction} leaves no training examples; use a smaller value")
    if n_val == 0:
        return {"train": (train_part, "train"), "val": None, "test": test}
    p = torch.randperm(len(train_part), generator=g)
    return {
        "train": (train_part[p[n_val:]], "train"),
        "val": (train_part[p[:n_val]], "train"),
        "test": test,
    }


def standardize_(splits: list[Split | None]) -> tuple[list[float], list[float]]:
    """Standardise every split in place with the per-channel mean/std of the first (train) split."""
    train = splits[0]
    std, mean = torch.std_mean(train.x, dim=(0, 2, 3), correction=0)
    std = std.clamp_min(1e-8)  # a constant channel (e.g. a 1-image limit) must not divide by zero
    shape = (1, -1, 1, 1)
    for s in splits:
        if s is not None:
            s.x.sub_(mean.view(shape)).div_(std.view(shape))
    return mean.tolist(), std.tolist()
