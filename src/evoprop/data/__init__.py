"""Data sets for evoprop: MNIST and CIFAR-10 (RGB or the paper's grayscale) as in-memory tensors.

    from evoprop.data import load_dataset
    ds = load_dataset("mnist", split="paper", val_fraction=0.1, split_seed=0)
    for x, y in ds.train.batches(256, generator=torch.Generator().manual_seed(1)):
        ...

See :func:`load_dataset` for data-folder resolution, splits and options.
"""

from .datasets import DATASETS, SPLITS, BundledDataNote, DataNote, UnofficialDataWarning, load_dataset
from .sources import DataDir, locate_data_dir, resolve_data_dir
from .splits import DatasetSplits, Split

__all__ = [
    "DATASETS",
    "SPLITS",
    "BundledDataNote",
    "DataDir",
    "DataNote",
    "DatasetSplits",
    "Split",
    "UnofficialDataWarning",
    "load_dataset",
    "locate_data_dir",
    "resolve_data_dir",
]
