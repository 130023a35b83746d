"""`npz:<path>`: any image classification set saved as Keras-style arrays in one .npz file."""

import zipfile
import zlib
from pathlib import Path

import numpy as np

from datasets.errors import DataError
from datasets.request import LoadRequest, last_line
from datasets.tensors import Data, channel_stats, images_to_nchw, labels, normalise

PREFIX = "npz:"
KEYS = ("x_train", "y_train", "x_test", "y_test")
FLOAT32_MAX = float(np.finfo(np.float32).max)   # pixels train as float32: a larger one would become inf


def archive_path(name: str) -> Path:
    """npz:<path> -> the path, checked to be a file."""
    given = name.removeprefix(PREFIX)
    if not given:
        raise DataError(f"{PREFIX} needs a path after it, e.g. {PREFIX}/data/my-set.npz")
    path = Path(given).expanduser()
    if not path.is_file():
        raise DataError(f"npz file not found: {path}; give npz:<path to a .npz holding {', '.join(KEYS)}>")
    return path


def x_train_shape(name: str) -> tuple[int, ...]:
    """(N, H, W) or (N, H, W, C) of npz:<path>'s x_train, read from its header without loading it."""
    path = archive_path(name)
    try:
        with zipfile.ZipFile(path) as archive, archive.open("x_train.npy") as f:
            major, _ = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape = read_header(f)[0]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"cannot read x_train's shape in {path} ({last_line(e)}); it must be an .npz archive "
                        f"holding {', '.join(KEYS)}") from e
    if len(shape) not in (3, 4):
        raise DataError(f"{path}: x_train {shape} must be N images of (H, W) or (H, W, C)")
    return shape


def input_shape(name: str) -> tuple[int, ...]:
    """(C, H, W) of one training image of npz:<path>, from the x_train header."""
    shape = x_train_shape(name)
    return (1, *shape[1:]) if len(shape) == 3 else (shape[3], shape[1], shape[2])


def train_size(name: str) -> int:
    """Training images in npz:<path>, from the x_train header."""
    return x_train_shape(name)[0]


def load_npz(req: LoadRequest) -> Data:
    """x_* (N, H, W, C) channels-last or (N, H, W) grayscale, any integer, float or bool dtype; y_* integer
    labels (N,) or (N, 1), class numbers 0 to K-1. Every array is checked before anything is converted.

    Both splits are normalised with the training set's per-channel mean/std (so the pixel scale, 0-255 or
    0-1, does not matter); num_classes is the largest label + 1.
    """
    path = archive_path(req.name)
    x_train, y_train, x_test, y_test = _read_arrays(path)
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        _check_images(path, f"x_{split}", x)
        _check_labels(path, f"y_{split}", y, len(x))
    num_classes = _num_classes(path, y_train, y_test)
    train, test = images_to_nchw(x_train, req.device), images_to_nchw(x_test, req.device)
    if train.shape[1:] != test.shape[1:]:
        shapes = f"{tuple(train.shape[1:])} vs {tuple(test.shape[1:])}"
        raise DataError(f"{path}: train and test images differ in shape ({shapes})")
    mean, std = channel_stats(train)
    std = std.clamp_min(1e-8)  # a constant channel would divide by zero
    return Data(
        req.name,
        normalise(train, mean, std),
        labels(y_train, req.device),
        normalise(test, mean, std),
        labels(y_test, req.device),
        num_classes=num_classes,
    )


def _check_images(path: Path, key: str, x: np.ndarray) -> None:
    """N > 0 images (N, H, W) or (N, H, W, C), none empty, of numbers that stay finite in float32 (the dtype
    they are trained in)."""
    if x.ndim not in (3, 4) or 0 in x.shape:
        raise DataError(f"{path}: {key} {x.shape} must be N>0 images of (H, W) or (H, W, C), none of them empty")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating) or x.dtype == np.bool_):
        raise DataError(f"{path}: {key} holds {x.dtype} values, not pixels; save the images as integers or floats")
    # one pass: the largest magnitude is NaN if any pixel is (every comparison with NaN is False)
    if np.issubdtype(x.dtype, np.floating) and not np.abs(x).max() <= FLOAT32_MAX:
        raise DataError(f"{path}: {key} has pixels that are NaN, infinite or beyond float32's ±{FLOAT32_MAX:.1e}; "
                        "fix or drop those images")


def _check_labels(path: Path, key: str, y: np.ndarray, n: int) -> None:
    """n non-negative integer labels, (n,) or Keras' (n, 1)."""
    if y.ndim not in (1, 2) or y.shape[1:] not in ((), (1,)) or len(y) != n:
        raise DataError(f"{path}: {key} {y.shape} must be one label per image: shape ({n},) or ({n}, 1)")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: {key} holds {y.dtype} values; labels must be integer class numbers 0 to K-1")
    if y.min() < 0:
        raise DataError(f"{path}: {key} has the negative label {y.min()}; labels must be class numbers 0 to K-1")


def _num_classes(path: Path, y_train: np.ndarray, y_test: np.ndarray) -> int:
    """The largest label + 1. More classes than training images means the labels are not class numbers
    0 to K-1 (ids, hashes, 2^40, ...): the output layer would be sized by them."""
    top = int(max(y_train.max(), y_test.max()))
    if top >= len(y_train):
        raise DataError(f"{path}: the largest label is {top}, but labels must be class numbers 0 to K-1 with K "
                        f"at most the {len(y_train)} training images; renumber the classes 0, 1, 2, ...")
    return top + 1


def _read_arrays(path: Path) -> tuple[np.ndarray, ...]:
    try:
        # allow_pickle=False: an .npz is data, it must not run code; object arrays are refused instead
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"cannot read {path} as an .npz archive ({last_line(e)})") from e
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path} holds a single array, not an .npz archive with {', '.join(KEYS)}")
    with archive:
        missing = [key for key in KEYS if key not in archive.files]
        if missing:
            raise DataError(f"{path} lacks {', '.join(missing)} (has: {', '.join(archive.files) or 'nothing'})")
        return tuple(_read_array(path, archive, key) for key in KEYS)


def _read_array(path: Path, archive, key: str) -> np.ndarray:
    try:
        return archive[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"cannot read {key} in {path} ({last_line(e)}); save it as a numeric array "
                        "(object arrays are refused: loading them could run code)") from e
