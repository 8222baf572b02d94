"""CIFAR-10 (python version): locate the archive or folder, download it if needed, parse it.

Batches are read straight out of ``cifar-10-python.tar.gz`` (no extraction) or from an extracted
``cifar-10-batches-py/`` folder. The pickles are loaded with a restricted unpickler that only
rebuilds numpy arrays, so a hostile file cannot run code. Any archive that parses is accepted;
one that is not the official file gets a ``source_note`` (see :func:`source_note`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from . import sources

RECONSTRUCTION_NOTE = "CIFAR-10 JPEG-decoded reconstruction (not the official archive; see SOURCE.md)"
_PIXELS = 3 * 32 * 32
#: Gray = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601 luma), as in the paper.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


class _Corrupt(Exception):
    """Internal: why an archive cannot be used."""


def locate(root: sources.DataDir, download: bool) -> Path:
    """Return the archive or extracted folder to read, downloading the archive if allowed."""
    data_dir = root.path
    folder = data_dir / sources.SUBFOLDERS["CIFAR-10"]
    candidates = (
        folder / sources.CIFAR10_ARCHIVE,
        folder / sources.CIFAR10_FOLDER,
        data_dir / sources.CIFAR10_FOLDER,
        data_dir / sources.CIFAR10_ARCHIVE,
    )
    for candidate in candidates:
        if candidate.is_file() or (candidate.is_dir() and (candidate / sources.CIFAR10_TEST_BATCH).is_file()):
            return candidate
    files = f"{sources.CIFAR10_ARCHIVE} (the python version)"
    looked = ", ".join(str(c) + ("/" if c.name == sources.CIFAR10_FOLDER else "") for c in candidates)
    if not download:
        raise sources.missing_error("CIFAR-10", root, looked, files, sources.CIFAR10_HOME, None)
    dest = folder / sources.CIFAR10_ARCHIVE

    def verify(_part: Path, digest: str) -> str | None:
        # a download must be the official file; local unofficial copies are the user's choice
        official = sources.CIFAR10_MD5
        return None if digest == official else f"md5 {digest} is not the official {official}"

    try:
        sources.download(sources.CIFAR10_URLS, dest, verify)
    except sources.DownloadFailed as exc:
        raise sources.missing_error("CIFAR-10", root, looked, files, sources.CIFAR10_HOME, str(exc)) from None
    return dest


def load_cifar10(path: Path) -> tuple[dict[str, torch.Tensor], list[str], str]:
    """Parse an archive or folder: ``({"train_x", "train_y", "test_x", "test_y"}, class_names, md5)``.

    Images are uint8 (N, 3, 32, 32), labels int64. ``md5`` is the archive's md5, or for a folder
    ``"files:"`` + a tag saying whether its batch files are official / the reconstruction / other.
    The tensors are cached per (path, mtime, size) and shared: index them, never modify in place.
    """
    if path.is_dir():
        keys = tuple(sources.file_key(path / n) for n in (*sources.CIFAR10_TRAIN_BATCHES, sources.CIFAR10_TEST_BATCH))
    else:
        keys = (sources.file_key(path),)
    return _load_cached(str(path), keys)


def source_note(md5: str) -> str | None:
    """None for the official data, a short label otherwise (recorded in run metadata)."""
    if md5 in (sources.CIFAR10_MD5, "files:official"):
        return None
    if md5 in (sources.CIFAR10_RECONSTRUCTION_MD5, "files:reconstruction"):
        return RECONSTRUCTION_NOTE
    if md5.startswith("files:"):
        return "unofficial CIFAR-10 files (batch md5s are not the official ones)"
    return f"unofficial CIFAR-10 archive (md5 {md5})"


def to_float(x: torch.Tensor, gray: bool, device: torch.device, chunk: int = 8192) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 on ``device`` in [0, 1]; with ``gray``, (N, 1, H, W) luma.

    Works in chunks so the RGB float copy of a whole split never exists at once.
    """
    n, _, h, w = x.shape
    out = torch.empty((n, 1 if gray else 3, h, w), dtype=torch.float32, device=device)
    for start in range(0, n, chunk):
        part = x[start : start + chunk].to(device).float().div_(255)
        if gray:
            r, g, b = part[:, 0:1], part[:, 1:2], part[:, 2:3]
            part = GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b
        out[start : start + chunk] = part
    return out


@functools.lru_cache(maxsize=2)
def _load_cached(path_str: str, _keys: tuple) -> tuple[dict[str, torch.Tensor], list[str], str]:
    path = Path(path_str)
    try:
        if path.is_dir():
            blobs, md5 = _read_folder(path)
        else:
            blobs, md5 = _read_archive(path)
        arrays, names = _assemble(blobs)
    except _Corrupt as exc:
        what = "folder" if path.is_dir() else "archive"
        raise DataError(
            f"CIFAR-10 {what} {path} is corrupt ({exc}); delete it and run again to re-download, "
            f"or replace it with {sources.CIFAR10_ARCHIVE} (python version) from {sources.CIFAR10_HOME}"
        ) from None
    return arrays, names, md5


def _read_archive(path: Path) -> tuple[dict[str, bytes], str]:
    """Stream the tar.gz once, hashing the compressed bytes as they are read."""
    wanted = {*sources.CIFAR10_TRAIN_BATCHES, sources.CIFAR10_TEST_BATCH, "batches.meta"}
    blobs: dict[str, bytes] = {}
    with open(path, "rb") as raw:
        hashed = _HashingReader(raw)
        try:
            with tarfile.open(fileobj=hashed, mode="r|gz") as tar:  # stream mode: no seeks
                for member in tar:
                    base = member.name.rsplit("/", 1)[-1]
                    if member.isfile() and base in wanted:
                        blobs[base] = tar.extractfile(member).read()
            hashed.drain()
        except Exception as exc:  # a damaged stream raises TarError, OSError, EOFError or zlib.error
            raise _Corrupt(f"not a readable tar.gz: {type(exc).__name__}: {sources.one_line(exc)}") from None
    return blobs, hashed.hexdigest()


def _read_folder(path: Path) -> tuple[dict[str, bytes], str]:
    blobs = {}
    for name in (*sources.CIFAR10_TRAIN_BATCHES, sources.CIFAR10_TEST_BATCH, "batches.meta"):
        if (path / name).is_file():
            blobs[name] = (path / name).read_bytes()
    digests = {n: hashlib.md5(b).hexdigest() for n, b in blobs.items() if n != "batches.meta"}
    if digests == sources.CIFAR10_FILE_MD5:
        tag = "official"
    elif digests == sources.CIFAR10_RECONSTRUCTION_FILE_MD5:
        tag = "reconstruction"
    else:
        tag = "other"
    return blobs, f"files:{tag}"


def _assemble(blobs: dict[str, bytes]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Unpickle and check the batches; stack them as uint8 (N, 3, 32, 32) tensors."""
    missing = [n for n in (*sources.CIFAR10_TRAIN_BATCHES, sources.CIFAR10_TEST_BATCH) if n not in blobs]
    if missing:
        raise _Corrupt(f"missing {', '.join(missing)}")
    xs, ys = {}, {}
    for name in (*sources.CIFAR10_TRAIN_BATCHES, sources.CIFAR10_TEST_BATCH):
        xs[name], ys[name] = _parse_batch(name, blobs[name])
    train_x = np.concatenate([xs[n] for n in sources.CIFAR10_TRAIN_BATCHES])
    train_y = np.concatenate([ys[n] for n in sources.CIFAR10_TRAIN_BATCHES])
    arrays = {
        "train_x": torch.from_numpy(train_x).view(-1, 3, 32, 32),
        "train_y": torch.from_numpy(train_y),
        "test_x": torch.from_numpy(xs[sources.CIFAR10_TEST_BATCH]).view(-1, 3, 32, 32),
        "test_y": torch.from_numpy(ys[sources.CIFAR10_TEST_BATCH]),
    }
    return arrays, _class_names(blobs.get("batches.meta"))


def _parse_batch(name: str, blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    entry = _unpickle(name, blob)
    if not isinstance(entry, dict) or b"data" not in entry or b"labels" not in entry:
        raise _Corrupt(f"{name} is not a CIFAR-10 batch (no data/labels)")
    data = entry[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        shape = getattr(data, "shape", type(data).__name__)
        raise _Corrupt(f"{name} data has shape {shape}, expected uint8 (N, {_PIXELS})")
    try:
        labels = np.asarray(entry[b"labels"], dtype=np.int64)
    except (TypeError, ValueError):
        raise _Corrupt(f"{name} labels are not integers") from None
    if labels.shape != (len(data),):
        raise _Corrupt(f"{name} has {len(data)} images but {labels.size} labels")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise _Corrupt(f"{name} has labels outside 0..9")
    return np.ascontiguousarray(data), labels


def _class_names(meta: bytes | None) -> list[str]:
    if meta is not None:
        try:
            names = _unpickle("batches.meta", meta)[b"label_names"]
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
            if len(names) == 10:
                return names
        except (_Corrupt, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            pass  # names are cosmetic; fall back to the well-known ones
    return list(sources.CIFAR10_CLASSES)


def _unpickle(name: str, blob: bytes):
    try:
        return _SafeUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except Exception as exc:  # garbage can raise almost anything inside pickle
        raise _Corrupt(f"{name} does not unpickle: {type(exc).__name__}: {sources.one_line(exc)}") from None


class _SafeUnpickler(pickle.Unpickler):
    """Allows only the globals that a pickled numpy array needs."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes pickled by Python 3 at protocol 2
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        if module == "numpy.core.multiarray":
            # numpy>=2 renamed numpy.core to numpy._core; importing the old name warns
            module = "numpy._core.multiarray" if _has_module("numpy._core.multiarray") else module
        return getattr(importlib.import_module(module), name)


@functools.cache
def _has_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


class _HashingReader(io.RawIOBase):
    """A read-only file wrapper that md5-hashes everything read through it."""

    def __init__(self, f):
        self._f = f
        self._md5 = hashlib.md5()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self._md5.update(data)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read (and hash) whatever the tar reader did not consume, e.g. trailing padding."""
        while self.read(1 << 20):
            pass

    def hexdigest(self) -> str:
        return self._md5.hexdigest()
