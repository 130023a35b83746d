"""MNIST, CIFAR-10 and CIFAR-100 from torchvision's on-disk layout under the data directory.

torchvision reads the files (and checks CIFAR's MD5s); this module only makes its failures one-line
DataErrors and turns its uint8 arrays into normalised tensors. torchvision is imported inside the loaders
because importing it costs about a second, which runs that need no such dataset should not pay.
"""

import gzip
import os
import pickle
import shutil
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import torch

from datasets.errors import DataError
from datasets.request import POINT_AT_COPY, LoadRequest, last_line
from datasets.tensors import Data, images_to_nchw, labels, normalise

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# Training-set pixel mean/std in [0, 1] units. MNIST: the values of pytorch/examples' mnist/main.py.
# CIFAR: per-channel statistics over all training pixels (CIFAR-10 as derived in kuangliu/pytorch-cifar
# issue #19; CIFAR-100 as in weiaicunzai/pytorch-cifar100's conf/global_settings.py).
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


def load_mnist(req: LoadRequest) -> Data:
    from torchvision.datasets import MNIST

    raw = req.data_dir / "MNIST" / "raw"
    with tempfile.TemporaryDirectory(prefix="growbench-mnist-") as scratch:
        root = _unpacked_root(req.data_dir, Path(scratch))
        missing = [name for name in MNIST_FILES if not (root / "MNIST" / "raw" / name).is_file()]
        if missing:
            looked_for = ", ".join(f"{name}[.gz]" for name in missing)
            _download(lambda: MNIST(req.data_dir, download=True), req, f"MNIST not found: no {looked_for} in {raw}")
            root = req.data_dir   # where torchvision downloaded and extracted all four
        try:
            train, test = MNIST(root, train=True), MNIST(root, train=False)
        except (AssertionError, RuntimeError, TypeError, ValueError, OSError) as e:  # torchvision's IDX parser asserts
            raise DataError(
                f"cannot read the MNIST files in {raw} ({last_line(e)}); "
                "delete the uncompressed ones to extract them again from the .gz files"
            ) from e

    return _to_data(req, train, test, MNIST_MEAN, MNIST_STD, num_classes=10)


def load_cifar10(req: LoadRequest) -> Data:
    from torchvision.datasets import CIFAR10

    return _load_cifar(req, CIFAR10, 10, CIFAR10_MEAN, CIFAR10_STD)


def load_cifar100(req: LoadRequest) -> Data:
    from torchvision.datasets import CIFAR100

    return _load_cifar(req, CIFAR100, 100, CIFAR100_MEAN, CIFAR100_STD)


def _load_cifar(req: LoadRequest, cls: type, num_classes: int, mean: tuple, std: tuple) -> Data:
    folder = req.data_dir / cls.base_folder
    md5s = dict(cls.train_list + cls.test_list) | {cls.meta["filename"]: cls.meta["md5"]}
    missing = [name for name in md5s if not (folder / name).is_file()]
    if missing:
        looked_for = f"{folder}/{{{', '.join(missing)}}}"
        _download(lambda: cls(req.data_dir, download=True), req, f"{cls.__name__} not found: no {looked_for}")
    try:
        train, test = cls(req.data_dir, train=True), cls(req.data_dir, train=False)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError, TypeError) as e:
        raise DataError(
            f"{cls.__name__} files are unreadable: {_find_bad_file(folder, md5s) or last_line(e)}; "
            f"delete {folder} to download it again, or {POINT_AT_COPY}"
        ) from e

    return _to_data(req, train, test, mean, std, num_classes)


def _to_data(req: LoadRequest, train, test, mean: tuple, std: tuple, num_classes: int) -> Data:
    """torchvision's splits (uint8 images (N, H, W[, C]), integer targets) as normalised tensors on the device."""

    def images(split) -> torch.Tensor:   # uint8 (N, H, W[, C]) -> normalised float32 (N, C, H, W)
        return normalise(images_to_nchw(split.data, req.device) / 255, mean, std)

    return Data(req.name, images(train), labels(train.targets, req.device), images(test),
                labels(test.targets, req.device), num_classes=num_classes)


def _unpacked_root(data_dir: Path, scratch: Path) -> Path:
    """A root whose MNIST/raw holds the four uncompressed files torchvision reads (it reads no .gz, and its own
    download would not reuse these .gz files: their MD5 differs from the originals').

    Each .gz without its uncompressed twin is extracted next to itself, once, so `data_dir` is the root; where
    that folder cannot be written (a read-only copy), into `scratch` instead, beside links to the files that
    are already uncompressed, and `scratch` is the root (extracted again on every load, removed after it).
    A file with neither form stays missing (the caller downloads it).
    """
    raw = data_dir / "MNIST" / "raw"
    packed = [name for name in MNIST_FILES if not (raw / name).is_file() and (raw / f"{name}.gz").is_file()]
    if not packed:
        return data_dir
    if _writable(raw):
        for name in packed:
            _gunzip(raw / f"{name}.gz", raw / name)
        return data_dir
    out = scratch / "MNIST" / "raw"
    out.mkdir(parents=True)
    for name in MNIST_FILES:
        if name in packed:
            _gunzip(raw / f"{name}.gz", out / name)
        elif (raw / name).is_file():
            (out / name).symlink_to((raw / name).resolve())
    return scratch


def _writable(folder: Path) -> bool:
    """Whether a file can be made in `folder`, tried rather than asked: os.access says yes to root on a
    read-only mount."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _gunzip(packed: Path, target: Path) -> None:
    """packed -> target through a temporary name that is removed whatever happens: an interrupted or failed
    extraction leaves neither a truncated file that torchvision would take as whole nor any litter."""
    partial = target.with_name(f"{target.name}.partial")
    try:
        with gzip.open(packed, "rb") as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
        os.replace(partial, target)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:  # truncated, damaged, or not gzip at all
        raise DataError(
            f"{packed} is damaged ({last_line(e)}); delete it (the next run downloads it again, unless "
            "--no-download) or replace it with an intact copy"
        ) from e
    except OSError as e:
        raise DataError(f"cannot extract {packed} to {target} ({e.strerror or e}); {POINT_AT_COPY}") from e
    finally:
        partial.unlink(missing_ok=True)


def _download(fetch: Callable[[], object], req: LoadRequest, not_found: str) -> None:
    """Let torchvision download the missing files if allowed; a refused or failed download is a DataError."""
    if not req.download:
        raise DataError(f"{not_found}; put the files there, or {POINT_AT_COPY} (download disabled)")
    try:
        fetch()
    except (OSError, RuntimeError) as e:  # URLError is an OSError; MNIST wraps its mirrors' errors in RuntimeError
        raise DataError(f"{not_found}, and downloading failed ({last_line(e)}); {POINT_AT_COPY}") from e


def _find_bad_file(folder: Path, md5s: dict[str, str]) -> str | None:
    """Name the first CIFAR file that fails torchvision's MD5 check or does not unpickle (error path only)."""
    from torchvision.datasets import cifar

    for name, md5 in md5s.items():
        path = folder / name
        if not cifar.check_integrity(path, md5):
            return f"{path} does not match torchvision's MD5 (corrupt, or not the original file)"
        try:
            with open(path, "rb") as f:
                pickle.load(f, encoding="latin1")
        except Exception:  # any failure to unpickle marks this file as the bad one
            return f"{path} is not a readable pickle"
    return None
