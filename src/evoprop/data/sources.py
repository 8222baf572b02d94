"""Where data files live: data-dir resolution, file specs, checksums, mirrors and downloads.

The mirror lists and checksums are module-level constants on purpose: tests point them at a
loopback server with ``monkeypatch.setattr(sources, "MNIST_MIRRORS", [...])``. Code in this
package therefore reads them as ``sources.NAME`` at call time, never via ``from ... import``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from ..errors import DataError
from ..paths import make_folder

#: Environment variable naming the data folder when no ``data_dir`` is given.
DATA_ENV = "EVOPROP_DATA"
#: The help of every command's ``--data-dir`` option.
DATA_DIR_HELP = (f"Folder holding mnist/ and cifar10/ (it must exist) [default: ${DATA_ENV}, else ./data]. Missing "
                 "files are downloaded into it; MNIST also ships inside the package.")

# --- MNIST ---------------------------------------------------------------------------------

MNIST_MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]
MNIST_HOME = "https://ossci-datasets.s3.amazonaws.com/mnist/"

#: Base names (without ``.gz``) and md5 of their DECOMPRESSED content. The content md5 is what we
#: check: a re-gzipped copy (such as the bundled one) has other .gz bytes but the same content.
MNIST_CONTENT_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
#: md5 of the official .gz files as served by the mirrors (informational; downloads are
#: verified on their decompressed content, which covers these too).
MNIST_GZ_MD5 = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}

#: The copy shipped inside the package (package data). Tests may monkeypatch this away.
BUNDLED_MNIST_DIR = Path(__file__).resolve().parent / "bundled" / "mnist"

# --- CIFAR-10 ------------------------------------------------------------------------------

CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_URLS = ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
CIFAR10_HOME = "https://www.cs.toronto.edu/~kriz/cifar.html"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
#: The JPEG-decoded reconstruction described in ``shared/datasets/cifar10/SOURCE.md``.
CIFAR10_RECONSTRUCTION_MD5 = "6d383282b3bccb7956b67948729f8702"

CIFAR10_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST_BATCH = "test_batch"
#: Per-file md5s of an extracted folder: the official files, and the reconstruction's.
CIFAR10_FILE_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
CIFAR10_RECONSTRUCTION_FILE_MD5 = {
    "data_batch_1": "7b97b7a258706f5de80f10991d3abd44",
    "data_batch_2": "16b586207c1c8defc22adc537735930b",
    "data_batch_3": "a7db3428034111cdf1aae3a2d4384d13",
    "data_batch_4": "688dbba21d2be56c73538b8ea198070a",
    "data_batch_5": "8b21a37c85355abac5e4a62be24836d9",
    "test_batch": "57c553228a341102a5908bbf088a72c8",
}
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]

#: Seconds a connection or a single read may stall before a mirror counts as failed.
DOWNLOAD_TIMEOUT = 30.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class DataDir:
    """The data folder and where its name came from: ``origin`` is "--data-dir", "$EVOPROP_DATA" or "default"."""

    path: Path
    origin: str

    @property
    def explicit(self) -> bool:
        """Named by the user (an argument or the environment), not the ``./data`` default."""
        return self.origin != "default"

    def describe(self) -> str:
        """E.g. "/home/me/data (from --data-dir)": where a message says evoprop looked."""
        return f"{self.path} (from {'the default ./data' if self.origin == 'default' else self.origin})"


def locate_data_dir(data_dir: str | os.PathLike | None = None) -> DataDir:
    """The data folder: ``data_dir`` (``--data-dir``), else ``$EVOPROP_DATA``, else ``./data``, as an absolute path.

    A folder the user named must exist (a typo would otherwise pass unnoticed: MNIST would come
    from the bundled copy, CIFAR-10 would be downloaded somewhere unexpected); the ``./data``
    default need not, and is created only when something is downloaded into it.
    """
    if data_dir is not None and str(data_dir) != "":
        found = DataDir(Path(data_dir).expanduser().resolve(), "--data-dir")
    elif os.environ.get(DATA_ENV):
        found = DataDir(Path(os.environ[DATA_ENV]).expanduser().resolve(), f"${DATA_ENV}")
    else:
        return DataDir(Path("data").resolve(), "default")
    if not found.path.is_dir():
        what = "is not a folder" if found.path.exists() else "does not exist"
        raise DataError(
            f"data folder {found.describe()} {what}: name the folder that holds mnist/ and cifar10/, "
            "or create it first for evoprop to download into"
        )
    return found


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder's absolute path (see :func:`locate_data_dir`, which also checks a named one exists)."""
    return locate_data_dir(data_dir).path


def md5_file(path: Path) -> str:
    """md5 hex digest of a file's bytes, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_key(path: Path) -> tuple[str, int, int]:
    """(resolved path, mtime_ns, size): a cache key that changes when the file is replaced."""
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


def download(urls: Iterable[str], dest: Path, verify: Callable[[Path, str], str | None]) -> None:
    """Fetch ``dest`` from the first of ``urls`` that works, atomically.

    Each attempt streams into ``<dest>.part``; ``verify(part_path, md5_of_bytes)`` returns None
    when the file is right, or a short reason when it is not. Only a verified file is moved into
    place (``os.replace``), so an interrupted or wrong download never leaves ``dest`` behind.
    Raises ``DownloadFailed`` with the reasons of every attempt when none succeeded.
    """
    # folders this call creates, deepest first, so a failed download can remove them again
    created = [d for d in (dest.parent, *dest.parent.parents) if not d.exists()]
    make_folder(dest.parent, error=DownloadFailed)  # fails e.g. on a read-only data folder
    part = dest.with_name(dest.name + ".part")
    reasons = []
    for url in urls:
        print(f"evoprop: downloading {url} -> {dest}", file=sys.stderr, flush=True)
        try:
            digest = _fetch(url, part)
            reason = verify(part, digest)
        except Exception as exc:  # any network/IO failure just means "try the next mirror"
            reason = f"{type(exc).__name__}: {exc}"
        if reason is None:
            os.replace(part, dest)
            return
        part.unlink(missing_ok=True)
        reasons.append(f"{url}: {reason}")
    for folder in created:
        try:
            folder.rmdir()  # only succeeds while empty
        except OSError:
            break
    raise DownloadFailed("; ".join(reasons) if reasons else "no download URL configured")


class DownloadFailed(Exception):
    """Internal: every URL failed; the caller turns this into a DataError naming the files to supply."""


def _fetch(url: str, part: Path) -> str:
    """Stream ``url`` into ``part`` and return the md5 of the bytes written."""
    h = hashlib.md5()
    request = urllib.request.Request(url, headers={"User-Agent": "evoprop"})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT) as response, open(part, "wb") as out:
        while chunk := response.read(_CHUNK):
            h.update(chunk)
            out.write(chunk)
    return h.hexdigest()


def one_line(text: object) -> str:
    """Collapse a message (e.g. an exception text) onto one line."""
    return " ".join(str(text).split())


def missing_error(what: str, root: DataDir, looked: str, files: str, home: str, reason: str | None) -> DataError:
    """The one-line DataError for data that is absent and could not (or may not) be downloaded.

    It names the data folder and where that came from, what was looked for, why downloading did
    not help, and the two ways out: put the files there, or point evoprop at a folder that has them.
    """
    how = f"download failed ({one_line(reason)})" if reason else "downloading is disabled"
    sub = root.path / SUBFOLDERS[what]
    return DataError(
        f"{what} not found in data folder {root.describe()}: looked for {looked}, and {how}; "
        f"put {files}, from {home}, into {sub}/, or pass --data-dir (or set ${DATA_ENV}) to a folder "
        f"that has {SUBFOLDERS[what]}/"
    )


#: The subfolder of the data folder that holds each data set.
SUBFOLDERS = {"MNIST": "mnist", "CIFAR-10": "cifar10"}
