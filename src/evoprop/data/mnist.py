"""MNIST: locate the four idx files, download them if needed, parse and verify them.

Lookup per file: ``<data_dir>/mnist/<name>.gz`` or ``<name>`` (uncompressed), else the copy bundled
with the package, else a download into ``<data_dir>/mnist/``. Every file's decompressed content
must match the official md5, so any accepted file is byte-for-byte the official data.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from . import sources

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049
_SIDE = 28
CLASS_NAMES = [str(i) for i in range(10)]


class _Corrupt(Exception):
    """Internal: the reason a file is not a valid official MNIST file."""


def load_mnist(root: sources.DataDir, download: bool) -> tuple[dict[str, torch.Tensor], list[Path]]:
    """Return ``({"train_x", "train_y", "test_x", "test_y"}, paths)``.

    Images are uint8 tensors (N, 28, 28), labels int64 (N,). The tensors come from an in-process
    cache and are shared between calls: index them (which copies), never modify them in place.
    """
    paths = [_locate(name, root, download) for name in FILES]
    train_x, train_y, test_x, test_y = (_parse_cached(*sources.file_key(p), name) for p, name in zip(paths, FILES))
    for images, labels, which in ((train_x, train_y, "train"), (test_x, test_y, "t10k")):
        if len(images) != len(labels):  # unreachable with official md5s; a cheap guard all the same
            raise DataError(f"MNIST {which} images ({len(images)}) and labels ({len(labels)}) differ in count; replace them with the official files")
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}, paths


def uses_bundled_copy(paths: list[Path]) -> bool:
    """Whether the files :func:`load_mnist` returned are the copy shipped inside the package."""
    return all(p.parent == sources.BUNDLED_MNIST_DIR for p in paths)


def _locate(name: str, root: sources.DataDir, download: bool) -> Path:
    """Find one file (local, then bundled), or download it into ``<data_dir>/mnist/``."""
    folder = root.path / sources.SUBFOLDERS["MNIST"]
    for base in (folder, sources.BUNDLED_MNIST_DIR):
        for candidate in (base / f"{name}.gz", base / name):
            if candidate.is_file():
                return candidate
    files = ", ".join(f"{n}.gz" for n in FILES)
    looked = f"{folder / name}.gz (or uncompressed) and the copy bundled with evoprop ({sources.BUNDLED_MNIST_DIR})"
    if not download:
        raise sources.missing_error("MNIST", root, looked, files, sources.MNIST_HOME, None)
    dest = folder / f"{name}.gz"
    urls = [mirror.rstrip("/") + f"/{name}.gz" for mirror in sources.MNIST_MIRRORS]
    try:
        sources.download(urls, dest, functools.partial(_verify_download, name))
    except sources.DownloadFailed as exc:
        raise sources.missing_error("MNIST", root, looked, files, sources.MNIST_HOME, str(exc)) from None
    return dest


def _verify_download(name: str, part: Path, _gz_md5: str) -> str | None:
    """A downloaded .gz is right when it parses and its content has the official md5."""
    try:
        _read_idx(part, name)
    except _Corrupt as exc:
        return str(exc)
    return None


@functools.lru_cache(maxsize=8)
def _parse_cached(path: str, _mtime_ns: int, _size: int, name: str) -> torch.Tensor:
    """Parse one file; cached per (path, mtime, size) so reloading in the same process is free."""
    try:
        array = _read_idx(Path(path), name)
    except _Corrupt as exc:
        raise _corrupt_error(Path(path), str(exc)) from None
    tensor = torch.from_numpy(array)
    return tensor if "images" in name else tensor.long()


def _read_idx(path: Path, name: str) -> np.ndarray:
    """Read an idx file (gzip or raw), check header, size and content md5; return a writable array."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip magic: decide by content, not by the file name
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise _Corrupt(f"not a readable gzip file: {sources.one_line(exc)}") from None
    images = "images" in name
    header = 16 if images else 8
    if len(raw) < header:
        raise _Corrupt(f"only {len(raw)} bytes, shorter than the idx header")
    magic, count = int.from_bytes(raw[0:4], "big"), int.from_bytes(raw[4:8], "big")
    expected_magic = _IMAGES_MAGIC if images else _LABELS_MAGIC
    if magic != expected_magic:
        raise _Corrupt(f"magic number {magic}, expected {expected_magic}")
    shape: tuple[int, ...] = (count,)
    if images:
        rows, cols = int.from_bytes(raw[8:12], "big"), int.from_bytes(raw[12:16], "big")
        if (rows, cols) != (_SIDE, _SIDE):
            raise _Corrupt(f"images are {rows}x{cols}, expected {_SIDE}x{_SIDE}")
        shape = (count, rows, cols)
    expected_len = header + int(np.prod(shape))
    if len(raw) != expected_len:
        raise _Corrupt(f"{len(raw)} bytes, the header promises {expected_len}")
    digest = hashlib.md5(raw).hexdigest()
    if digest != sources.MNIST_CONTENT_MD5[name]:
        raise _Corrupt(f"content md5 {digest} is not the official {sources.MNIST_CONTENT_MD5[name]}")
    # bytearray -> writable buffer, so torch.from_numpy shares it without a warning
    return np.frombuffer(bytearray(raw), dtype=np.uint8, offset=header).reshape(shape)


def _corrupt_error(path: Path, reason: str) -> DataError:
    if path.parent == sources.BUNDLED_MNIST_DIR:
        fix = "reinstall evoprop, or put the official files in <data_dir>/mnist/"
    else:
        fix = "delete it and run again to re-download, or replace it with the official file"
    return DataError(f"MNIST file {path} is corrupt ({reason}); {fix}")
