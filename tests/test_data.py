"""Tests for evoprop.data: loading, verification, splits, batching, downloads (loopback only)."""

from __future__ import annotations

import functools
import gzip
import io
import json
import pickle
import shutil
import socket
import tarfile
import threading
import warnings
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from evoprop.data import DATASETS, BundledDataNote, DatasetSplits, Split, UnofficialDataWarning, load_dataset, locate_data_dir, resolve_data_dir
from evoprop.data import datasets as datasets_mod
from evoprop.data import sources
from evoprop.errors import ConfigError, DataError

MNIST_FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def assert_one_line_error(excinfo, *fragments: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    return msg


def indices_of(split: Split) -> set[int]:
    return set(split.indices.tolist())


# --- MNIST: shapes, sizes, labels ------------------------------------------------------------


def test_mnist_shapes_dtypes_range(mnist):
    assert isinstance(mnist, DatasetSplits)
    assert (mnist.name, mnist.num_classes, mnist.input_shape) == ("mnist", 10, (1, 28, 28))
    assert mnist.class_names == [str(i) for i in range(10)]
    assert mnist.source_note is None
    for split in (mnist.train, mnist.val, mnist.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.x.shape[1:] == (1, 28, 28) and split.x.device.type == "cpu"
        assert float(split.x.min()) == 0.0 and float(split.x.max()) == 1.0
        assert set(split.y.unique().tolist()) == set(range(10))


def test_mnist_paper_split_sizes(mnist, data_dir):
    assert (len(mnist.train), len(mnist.val), len(mnist.test)) == (44_550, 4_950, 5_500)
    no_val = load_dataset("mnist", data_dir=data_dir, val_fraction=0)
    assert no_val.val is None
    assert (len(no_val.train), len(no_val.test)) == (49_500, 5_500)
    assert no_val.describe()["sizes"] == {"train": 49_500, "val": 0, "test": 5_500}
    # the paper's test split does not depend on val_fraction
    assert torch.equal(no_val.test.indices, mnist.test.indices)


def test_mnist_official_split_and_label_counts(data_dir):
    ds = load_dataset("mnist", data_dir=data_dir, split="official", val_fraction=0)
    assert (len(ds.train), len(ds.test)) == (60_000, 10_000)
    assert torch.bincount(ds.train.y, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert len(ds.test.y) == 10_000 and torch.bincount(ds.test.y).sum() == 10_000
    assert torch.equal(ds.train.indices, torch.arange(60_000)) and ds.test.origin == "test"


def test_mnist_paper_split_is_a_partition_of_the_first_55000(mnist, data_dir):
    train, val, test = indices_of(mnist.train), indices_of(mnist.val), indices_of(mnist.test)
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == set(range(55_000))
    assert {mnist.train.origin, mnist.val.origin, mnist.test.origin} == {"train"}
    # the indices really name the rows: compare a few with the official training file
    official = load_dataset("mnist", data_dir=data_dir, split="official", val_fraction=0, limit_test=1)
    for split in (mnist.train, mnist.val, mnist.test):
        assert torch.equal(split.x[:50], official.train.x[split.indices[:50]])
        assert torch.equal(split.y, official.train.y[split.indices])


def test_split_seed_determinism(mnist, data_dir):
    torch.manual_seed(12345)  # the training seed must not influence the split
    same = load_dataset("mnist", data_dir=data_dir, split_seed=0)
    for a, b in ((same.train, mnist.train), (same.val, mnist.val), (same.test, mnist.test)):
        assert torch.equal(a.indices, b.indices) and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    other = load_dataset("mnist", data_dir=data_dir, split_seed=1, limit_train=1000, limit_test=1000)
    assert not torch.equal(other.test.indices, mnist.test.indices[:1000])
    assert not torch.equal(other.train.indices, mnist.train.indices[:1000])


def test_official_split_validation_carve(data_dir):
    ds = load_dataset("mnist", data_dir=data_dir, split="official", val_fraction=0.25, split_seed=3,
                      limit_test=100)
    assert (len(ds.train), len(ds.test)) == (45_000, 100)
    full_val = 15_000
    assert len(ds.val) == 100  # limited by limit_test
    again = load_dataset("mnist", data_dir=data_dir, split="official", val_fraction=0.25, split_seed=3)
    assert len(again.val) == full_val
    assert indices_of(again.train) | indices_of(again.val) == set(range(60_000))
    assert not (indices_of(again.train) & indices_of(again.val))
    assert torch.equal(again.val.indices[:100], ds.val.indices)


def test_limits_take_prefixes_of_the_split(mnist, data_dir):
    small = load_dataset("mnist", data_dir=data_dir, limit_train=100, limit_test=50)
    assert (len(small.train), len(small.val), len(small.test)) == (100, 50, 50)
    assert torch.equal(small.train.indices, mnist.train.indices[:100])
    assert torch.equal(small.val.indices, mnist.val.indices[:50])
    assert torch.equal(small.test.x, mnist.test.x[:50])


def test_standardize_uses_train_statistics(data_dir):
    ds = load_dataset("mnist", data_dir=data_dir, standardize=True, limit_train=20_000, limit_test=2_000)
    mean, std = ds.train.x.mean(dim=(0, 2, 3)), ds.train.x.std(dim=(0, 2, 3), correction=0)
    assert torch.allclose(mean, torch.zeros(1), atol=1e-4) and torch.allclose(std, torch.ones(1), atol=1e-4)
    assert ds.standardize and len(ds.mean) == len(ds.std) == 1
    assert 0.1 < ds.mean[0] < 0.15 and 0.3 < ds.std[0] < 0.32  # MNIST's well-known 0.1307 / 0.3081
    # val/test use the train statistics, so they are close to but not exactly standardised
    assert abs(float(ds.test.x.mean())) < 0.05
    raw = load_dataset("mnist", data_dir=data_dir, limit_train=1, limit_test=10)
    assert torch.allclose(ds.test.x[:10], (raw.test.x - ds.mean[0]) / ds.std[0], atol=1e-5)


def test_describe_is_json_serialisable(mnist):
    info = json.loads(json.dumps(mnist.describe()))
    assert info["name"] == "mnist" and info["split"] == "paper" and info["input_shape"] == [1, 28, 28]
    assert info["sizes"] == {"train": 44_550, "val": 4_950, "test": 5_500}
    assert info["source_note"] is None and info["standardize"] is False
    assert [Path(f).name for f in info["files"]] == [f"{n}.gz" for n in MNIST_FILES]


# --- batching ---------------------------------------------------------------------------------


def id_split(n: int) -> Split:
    """A split whose inputs carry their own position, to track examples through batching."""
    return Split(torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1), torch.arange(n) % 10)


def test_batches_cover_every_example_once_and_are_reproducible():
    split = id_split(103)
    epoch = list(split.batches(10, generator=torch.Generator().manual_seed(7)))
    assert [len(y) for _, y in epoch] == [10] * 10 + [3]
    ids = torch.cat([x.flatten() for x, _ in epoch]).long()
    assert sorted(ids.tolist()) == list(range(103))
    assert torch.equal(torch.cat([y for _, y in epoch]), ids % 10)  # x and y stay paired
    again = list(split.batches(10, generator=torch.Generator().manual_seed(7)))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(epoch, again))
    other = torch.cat([x.flatten() for x, _ in split.batches(10, generator=torch.Generator().manual_seed(8))])
    assert not torch.equal(other.long(), ids)


def test_batches_drop_last_and_no_shuffle():
    split = id_split(25)
    assert [len(y) for _, y in split.batches(10, drop_last=True)] == [10, 10]
    ordered = torch.cat([x.flatten() for x, _ in split.batches(10, shuffle=False)])
    assert torch.equal(ordered.long(), torch.arange(25))
    with pytest.raises(ConfigError):
        next(split.batches(0))


def test_batches_on_real_data(mnist):
    g = torch.Generator().manual_seed(0)
    seen = torch.zeros(10, dtype=torch.long)
    n = 0
    for x, y in mnist.test.batches(512, generator=g):
        assert x.shape[1:] == (1, 28, 28)
        seen += torch.bincount(y, minlength=10)
        n += len(y)
    assert n == len(mnist.test) and torch.equal(seen, torch.bincount(mnist.test.y, minlength=10))


# --- argument checking and data-dir resolution ------------------------------------------------


def test_unknown_dataset_and_bad_arguments(data_dir):
    with pytest.raises(ConfigError) as excinfo:
        load_dataset("imagenet", data_dir=data_dir)
    assert_one_line_error(excinfo, "imagenet", *DATASETS)
    for kwargs in ({"split": "random"}, {"val_fraction": 1.0}, {"val_fraction": -0.1},
                   {"val_fraction": float("nan")}, {"limit_train": 0}, {"limit_test": 1.5},
                   {"split_seed": "a"}, {"device": "nonsense"}):
        with pytest.raises(ConfigError):
            load_dataset("mnist", data_dir=data_dir, **kwargs)


def test_resolve_data_dir(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EVOPROP_DATA", raising=False)
    assert resolve_data_dir() == tmp_path / "data"  # the default need not exist
    for name in ("env", "rel", "arg"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("EVOPROP_DATA", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir("rel") == tmp_path / "rel"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert locate_data_dir("rel").origin == "--data-dir"
    assert locate_data_dir().origin == "$EVOPROP_DATA"


@pytest.mark.parametrize("named_by", ["argument", "environment"])
def test_a_named_data_folder_that_does_not_exist_is_an_error(named_by, monkeypatch, tmp_path):
    """A typo in --data-dir (or $EVOPROP_DATA) must not silently fall back to the bundled MNIST."""
    missing = tmp_path / "no-such-folder"
    monkeypatch.setenv("EVOPROP_DATA", str(missing) if named_by == "environment" else str(tmp_path))
    with pytest.raises(DataError) as excinfo:
        load_dataset("mnist", data_dir=missing if named_by == "argument" else None, download=False)
    origin = "--data-dir" if named_by == "argument" else "$EVOPROP_DATA"
    assert_one_line_error(excinfo, f"data folder {missing} (from {origin}) does not exist", "mnist/")


# --- MNIST file handling: bundled copy, uncompressed files, corrupt files, missing files ------


def test_mnist_falls_back_to_the_bundled_copy_and_says_so(tmp_path, mnist):
    with pytest.warns(BundledDataNote, match=f"no MNIST files in {tmp_path / 'mnist'}.*bundled with evoprop"):
        ds = load_dataset("mnist", data_dir=tmp_path, download=False, limit_train=10, limit_test=10)
    assert all(Path(f).parent == sources.BUNDLED_MNIST_DIR for f in ds.files)
    assert torch.equal(ds.test.x, mnist.test.x[:10])
    assert not (tmp_path / "mnist").exists()  # nothing downloaded or created


def test_the_default_data_folder_falls_back_to_the_bundled_mnist_quietly(tmp_path, monkeypatch, recwarn):
    """No folder named: the bundled copy is what the README promises, so no note."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EVOPROP_DATA", raising=False)
    ds = load_dataset("mnist", download=False, limit_train=10, limit_test=10)
    assert all(Path(f).parent == sources.BUNDLED_MNIST_DIR for f in ds.files)
    assert not [w for w in recwarn if issubclass(w.category, BundledDataNote)]


def test_mnist_accepts_uncompressed_files(tmp_path, data_dir, mnist):
    (tmp_path / "mnist").mkdir()
    for name in MNIST_FILES:
        (tmp_path / "mnist" / name).write_bytes(gzip.decompress((data_dir / "mnist" / f"{name}.gz").read_bytes()))
    ds = load_dataset("mnist", data_dir=tmp_path, download=False, limit_train=10, limit_test=10)
    assert [Path(f).name for f in ds.files] == MNIST_FILES
    assert torch.equal(ds.test.x, mnist.test.x[:10])


def _labels_bytes(data_dir: Path) -> bytes:
    return gzip.decompress((data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())


CORRUPTIONS = {
    "truncated gzip": ("t10k-labels-idx1-ubyte.gz", lambda raw: gzip.compress(raw)[:500], "gzip"),
    "garbage": ("t10k-labels-idx1-ubyte.gz", lambda raw: b"\x1f\x8b" + bytes(range(256)) * 4, "gzip"),
    "wrong magic": ("t10k-labels-idx1-ubyte", lambda raw: (2051).to_bytes(4, "big") + raw[4:], "magic number 2051"),
    "short file": ("t10k-labels-idx1-ubyte", lambda raw: raw[:-7], "header promises"),
    "tiny file": ("t10k-labels-idx1-ubyte", lambda raw: raw[:5], "shorter than the idx header"),
    "altered label": ("t10k-labels-idx1-ubyte.gz", lambda raw: gzip.compress(raw[:100] + bytes([(raw[100] + 1) % 10]) + raw[101:]), "content md5"),
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_mnist_file_gives_one_line_error(kind, tmp_path, data_dir):
    filename, corrupt, reason = CORRUPTIONS[kind]
    bad = tmp_path / "mnist" / filename
    bad.parent.mkdir()
    bad.write_bytes(corrupt(_labels_bytes(data_dir)))
    with pytest.raises(DataError) as excinfo:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    assert_one_line_error(excinfo, f"MNIST file {bad} is corrupt", reason, "delete it and run again")


def test_missing_mnist_without_download_names_the_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "BUNDLED_MNIST_DIR", tmp_path / "no-bundle")
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError) as excinfo:
        load_dataset("mnist", data_dir=tmp_path / "data", download=False)
    assert_one_line_error(excinfo, f"not found in data folder {tmp_path / 'data'} (from --data-dir)",
                          f"looked for {tmp_path / 'data' / 'mnist' / 'train-images-idx3-ubyte'}.gz",
                          "downloading is disabled", "train-images-idx3-ubyte.gz", "--data-dir")


# --- downloads from a loopback server -----------------------------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def serve():
    """serve(folder) -> base URL of a loopback HTTP server for that folder (stopped after the test)."""
    servers = []

    def start(folder: Path) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_mnist_download_from_mirror(tmp_path, data_dir, monkeypatch, serve, mnist):
    good = tmp_path / "good"
    shutil.copytree(data_dir / "mnist", good)
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(sources, "BUNDLED_MNIST_DIR", tmp_path / "no-bundle")
    # the first mirror answers 404 for everything; the loader must fall through to the second
    monkeypatch.setattr(sources, "MNIST_MIRRORS", [serve(tmp_path / "empty"), serve(good)])
    (tmp_path / "data").mkdir()
    ds = load_dataset("mnist", data_dir=tmp_path / "data", limit_train=10, limit_test=10)
    folder = tmp_path / "data" / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.gz" for n in MNIST_FILES)
    assert torch.equal(ds.test.x, mnist.test.x[:10])


def test_mnist_download_of_wrong_file_leaves_nothing(tmp_path, monkeypatch, serve):
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for name in MNIST_FILES:
        (wrong / f"{name}.gz").write_bytes(gzip.compress(b"not mnist" * 100))
    monkeypatch.setattr(sources, "BUNDLED_MNIST_DIR", tmp_path / "no-bundle")
    monkeypatch.setattr(sources, "MNIST_MIRRORS", [serve(wrong)])
    monkeypatch.chdir(tmp_path)  # the default ./data, which need not exist
    monkeypatch.delenv("EVOPROP_DATA", raising=False)
    with pytest.raises(DataError) as excinfo:
        load_dataset("mnist")
    folder = tmp_path / "data" / "mnist"
    assert_one_line_error(excinfo, f"not found in data folder {tmp_path / 'data'}", f"into {folder}/",
                          "download failed", "magic number", "--data-dir")
    assert not (tmp_path / "data").exists()  # nothing left behind, not even the folders


def test_download_from_unreachable_mirror(tmp_path, monkeypatch):
    with socket.socket() as sock:  # a port that was just free: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(sources, "CIFAR10_URLS", [f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"])
    monkeypatch.chdir(tmp_path)  # the default ./data, which need not exist
    monkeypatch.delenv("EVOPROP_DATA", raising=False)
    with pytest.raises(DataError) as excinfo:
        load_dataset("cifar10")
    folder = tmp_path / "data" / "cifar10"
    assert_one_line_error(excinfo, f"CIFAR-10 not found in data folder {tmp_path / 'data'} (from the default ./data)",
                          f"looked for {folder / 'cifar-10-python.tar.gz'}", "download failed",
                          "cifar-10-python.tar.gz", sources.CIFAR10_HOME, f"into {folder}/", "--data-dir")
    assert not (tmp_path / "data").exists()  # nothing left behind, not even the folders


# --- small synthetic CIFAR-10 archives ------------------------------------------------------------


def _batch(n: int, seed: int, cols: int = 3072) -> dict:
    rng = np.random.default_rng(seed)
    return {b"data": rng.integers(0, 256, (n, cols), dtype=np.uint8), b"labels": [i % 10 for i in range(n)],
            b"batch_label": b"synthetic"}


def _write_cifar(target: Path, batches: dict[str, object], archive: bool = True) -> Path:
    """Write batches as pickles into a tar.gz (archive=True) or a cifar-10-batches-py folder."""
    blobs = {name: value if isinstance(value, bytes) else pickle.dumps(value, protocol=2)
             for name, value in batches.items()}
    if not archive:
        target.mkdir(parents=True)
        for name, blob in blobs.items():
            (target / name).write_bytes(blob)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:gz") as tar:
        for name, blob in blobs.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return target


def _tiny_batches(**override) -> dict:
    batches = {f"data_batch_{i}": _batch(20, i) for i in range(1, 6)}
    batches["test_batch"] = _batch(10, 9)
    batches["batches.meta"] = {b"label_names": [n.encode() for n in sources.CIFAR10_CLASSES]}
    batches.update(override)
    return batches


def test_unofficial_cifar_archive_is_accepted_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets_mod, "_warned", set())
    path = _write_cifar(tmp_path / "cifar10" / "cifar-10-python.tar.gz", _tiny_batches())
    md5 = sources.md5_file(path)
    with pytest.warns(UnofficialDataWarning, match="not the official CIFAR-10"):
        ds = load_dataset("cifar10", data_dir=tmp_path, split="official", val_fraction=0.2)
    assert ds.source_note == f"unofficial CIFAR-10 archive (md5 {md5})"
    assert (len(ds.train), len(ds.val), len(ds.test)) == (80, 20, 10)
    assert ds.input_shape == (3, 32, 32) and ds.class_names == sources.CIFAR10_CLASSES
    # official image 0 (first row of data_batch_1) landed in train or val, scaled to [0, 1]
    x, idx = torch.cat([ds.train.x, ds.val.x]), torch.cat([ds.train.indices, ds.val.indices])
    first = torch.from_numpy(_tiny_batches()["data_batch_1"][b"data"][0]).float().div(255).view(3, 32, 32)
    assert torch.equal(x[idx == 0][0], first)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the note is given once per process and file
        load_dataset("cifar10", data_dir=tmp_path, split="official")
    with pytest.raises(DataError, match="paper split needs 50000"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar_extracted_folder_is_accepted(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py", _tiny_batches(), archive=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load_dataset("cifar10-gray", data_dir=tmp_path, split="official", val_fraction=0)
    assert ds.files == [str(tmp_path / "cifar-10-batches-py")]
    assert ds.source_note.startswith("unofficial CIFAR-10 files")
    assert ds.train.x.shape == (100, 1, 32, 32) and ds.test.x.shape == (10, 1, 32, 32)


CIFAR_CORRUPTIONS = {
    "garbage": (lambda arch: b"this is not a tar.gz file" * 10, "not a readable tar.gz"),
    "truncated": (lambda arch: arch.read_bytes()[: len(arch.read_bytes()) // 2], "not a readable tar.gz"),
    "wrong shape": (None, "expected uint8 (N, 3072)"),
    "missing batch": (None, "missing data_batch_3"),
    "bad pickle": (None, "test_batch does not unpickle"),
    "hostile pickle": (None, "forbidden global"),
}


class _Hostile:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize("kind", sorted(CIFAR_CORRUPTIONS))
def test_corrupt_cifar_archive_gives_one_line_error(kind, tmp_path):
    corrupt, reason = CIFAR_CORRUPTIONS[kind]
    path = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    override = {
        "wrong shape": {"data_batch_2": _batch(20, 2, cols=3000)},
        "bad pickle": {"test_batch": b"\x80\x02garbage"},
        "hostile pickle": {"data_batch_1": {b"data": _Hostile(), b"labels": []}},
    }.get(kind, {})
    batches = _tiny_batches(**override)
    if kind == "missing batch":
        del batches["data_batch_3"]
    _write_cifar(path, batches)
    if corrupt is not None:
        path.write_bytes(corrupt(path))
    with pytest.raises(DataError) as excinfo:
        load_dataset("cifar10", data_dir=tmp_path, split="official", download=False)
    assert_one_line_error(excinfo, f"CIFAR-10 archive {path} is corrupt", reason, "cifar-10-python.tar.gz")


def test_missing_cifar_without_download_names_the_folder(tmp_path):
    with pytest.raises(DataError) as excinfo:
        load_dataset("cifar10-gray", data_dir=tmp_path, download=False)
    assert_one_line_error(excinfo, f"not found in data folder {tmp_path} (from --data-dir)",
                          f"{tmp_path / 'cifar10' / 'cifar-10-batches-py'}/", "cifar-10-python.tar.gz",
                          sources.CIFAR10_HOME, "--data-dir")


def test_cifar_download_must_match_the_official_md5(tmp_path, monkeypatch, serve):
    served = _write_cifar(tmp_path / "srv" / "cifar-10-python.tar.gz", _tiny_batches())
    monkeypatch.setattr(sources, "CIFAR10_URLS", [serve(served.parent) + served.name])
    folder = tmp_path / "data" / "cifar10"
    folder.parent.mkdir()
    with pytest.raises(DataError) as excinfo:
        load_dataset("cifar10", data_dir=tmp_path / "data", split="official")
    assert_one_line_error(excinfo, "download failed", "is not the official", str(folder))
    assert not folder.exists()  # neither the file nor a .part nor the new folder is left behind
    # the same file passes once it is "official"
    monkeypatch.setattr(sources, "CIFAR10_MD5", sources.md5_file(served))
    ds = load_dataset("cifar10", data_dir=tmp_path / "data", split="official", val_fraction=0)
    assert ds.source_note is None and len(ds.train) == 100
    assert [p.name for p in folder.iterdir()] == ["cifar-10-python.tar.gz"]


# --- the real CIFAR-10 archive (the JPEG-decoded reconstruction) ---------------------------------


@pytest.mark.slow
def test_cifar_gray_paper_split(cifar_gray):
    ds = cifar_gray
    assert (ds.name, ds.input_shape, ds.num_classes) == ("cifar10-gray", (1, 32, 32), 10)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (40_000 - 4_000, 4_000, 10_000)
    assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64
    assert 0.0 <= float(ds.train.x.min()) and float(ds.train.x.max()) <= 1.0
    assert ds.class_names[0] == "airplane" and ds.class_names[-1] == "truck"
    # paper train + val + test are a partition of the 50,000 official training images ...
    parts = (ds.train, ds.val, ds.test)
    assert set().union(*(indices_of(s) for s in parts)) == set(range(50_000))
    assert sum(len(s) for s in parts) == 50_000
    # ... which hold 5,000 images of each class
    counts = sum(torch.bincount(s.y, minlength=10) for s in parts)
    assert counts.tolist() == [5_000] * 10
    # SOURCE.md: the train grey mean of the reconstruction is 122.60 on the 0-255 scale
    total = sum(float(s.x.double().sum()) for s in parts) / (50_000 * 1024) * 255
    assert abs(total - 122.60) < 0.01


def test_cifar_source_note_says_reconstruction(cifar_gray, data_dir, monkeypatch):
    assert "reconstruction" in cifar_gray.source_note and "not the official" in cifar_gray.source_note
    assert json.loads(json.dumps(cifar_gray.describe()))["source_note"] == cifar_gray.source_note
    monkeypatch.setattr(datasets_mod, "_warned", set())
    with pytest.warns(UnofficialDataWarning, match="JPEG-decoded reconstruction"):
        load_dataset("cifar10-gray", data_dir=data_dir, split="official", limit_train=1, limit_test=1)


def _first_raw_image(archive: Path) -> tuple[np.ndarray, int]:
    """The first training image's 3072 bytes and label, read without evoprop's loader."""
    with tarfile.open(archive, "r|gz") as tar:
        for member in tar:
            if member.name.endswith("data_batch_1"):
                batch = pickle.load(tar.extractfile(member), encoding="bytes")
                return batch[b"data"][0], batch[b"labels"][0]
    raise AssertionError("data_batch_1 not in archive")


def test_cifar_gray_formula_and_rgb_layout(cifar_archive, data_dir):
    raw, label = _first_raw_image(cifar_archive)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gray = load_dataset("cifar10-gray", data_dir=data_dir, split="official", val_fraction=0, limit_train=2, limit_test=2)
        rgb = load_dataset("cifar10", data_dir=data_dir, split="official", val_fraction=0, limit_train=2, limit_test=2)
    assert gray.train.indices[0] == 0 and int(gray.train.y[0]) == label
    r, g, b = (raw[c * 1024 : (c + 1) * 1024].reshape(32, 32) for c in range(3))
    for row, col in [(0, 0), (0, 31), (5, 7), (16, 16), (31, 0), (31, 31)]:
        rf, gf, bf = (np.float32(p[row, col]) / np.float32(255) for p in (r, g, b))
        expected = 0.299 * rf + 0.587 * gf + 0.114 * bf
        assert float(gray.train.x[0, 0, row, col]) == pytest.approx(expected, abs=1e-6)
        assert rgb.train.x[0, :, row, col].tolist() == pytest.approx([rf, gf, bf], abs=1e-7)
    assert rgb.train.x.shape == (2, 3, 32, 32) and gray.train.x.shape == (2, 1, 32, 32)


def test_cifar_rgb_standardize_per_channel(data_dir, cifar_archive):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load_dataset("cifar10", data_dir=data_dir, standardize=True, limit_train=5_000, limit_test=500)
    mean, std = ds.train.x.mean(dim=(0, 2, 3)), ds.train.x.std(dim=(0, 2, 3), correction=0)
    assert torch.allclose(mean, torch.zeros(3), atol=1e-4) and torch.allclose(std, torch.ones(3), atol=1e-4)
    assert len(ds.mean) == 3 and ds.mean[0] > ds.mean[2]  # red is brighter than blue on average
