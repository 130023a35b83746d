"""MNIST, CIFAR-10 and CIFAR-100 from torchvision's on-disk layout under the data directory.

torchvision reads the files (and checks CIFAR's MD5s); this module only makes its failures one-line
DataErrors and turns its uint8 arrays into normalised tensors. torchvision is imported inside the loaders
because importing it costs about a second, which runs that need no such dataset should not pay.
"""

import gzip
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from datasets.errors import DataError
from datasets.request import DATA_DIR_ENV, POINT_AT_COPY, LoadRequest, last_line
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
    _gunzip_missing(raw)
    missing = [name for name in MNIST_FILES if not (raw / name).is_file()]
    if missing:
        looked_for = ", ".join(f"{name}[.gz]" for name in missing)
        _download(lambda: MNIST(req.data_dir, download=True), req, f"MNIST not found: no {looked_for} in {raw}")
    try:
        train, test = MNIST(req.data_dir, train=True), MNIST(req.data_dir, train=False)
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


def _gunzip_missing(raw: Path) -> None:
    """Extract each MNIST .gz that has no uncompressed twin, as torchvision does after downloading.

    torchvision reads only the uncompressed files, and its own download would not reuse these .gz files
    because their MD5 differs from the originals'. A temporary name plus rename means an interrupted
    extraction never leaves a truncated file that torchvision would take as present.
    """
    for name in MNIST_FILES:
        target, packed = raw / name, raw / f"{name}.gz"
        if target.is_file() or not packed.is_file():
            continue
        partial = raw / f"{name}.partial"
        try:
            with gzip.open(packed, "rb") as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 20)
            os.replace(partial, target)
        except (OSError, EOFError) as e:  # gzip raises BadGzipFile (an OSError) or EOFError when truncated
            partial.unlink(missing_ok=True)
            raise DataError(
                f"cannot extract {packed} next to itself ({last_line(e)}); copy {raw.parent} into a writable "
                f"folder and point --data-dir (or {DATA_DIR_ENV}) at that folder"
            ) from e


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
