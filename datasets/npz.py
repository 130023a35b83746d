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


def archive_path(name: str) -> Path:
    """npz:<path> -> the path, checked to be a file."""
    given = name.removeprefix(PREFIX)
    if not given:
        raise DataError(f"{PREFIX} needs a path after it, e.g. {PREFIX}/data/my-set.npz")
    path = Path(given).expanduser()
    if not path.is_file():
        raise DataError(f"npz file not found: {path}; give npz:<path to a .npz holding {', '.join(KEYS)}>")
    return path


def input_shape(name: str) -> tuple[int, ...]:
    """(C, H, W) of one training image of npz:<path>, read from the x_train header without loading it."""
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
    return (1, *shape[1:]) if len(shape) == 3 else (shape[3], shape[1], shape[2])


def load_npz(req: LoadRequest) -> Data:
    """x_* (N, H, W, C) channels-last or (N, H, W) grayscale, any numeric dtype; y_* integer labels (N,) or (N, 1).

    Both splits are normalised with the training set's per-channel mean/std (so the pixel scale, 0-255 or
    0-1, does not matter); num_classes is the largest label + 1.
    """
    path = archive_path(req.name)
    x_train, y_train, x_test, y_test = _read_arrays(path)
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim not in (3, 4) or len(x) != len(y) or len(x) == 0:
            raise DataError(f"{path}: x_{split} {x.shape} and y_{split} {y.shape} must be N>0 images and N labels")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise DataError(f"{path}: y_{split} must hold non-negative integer class labels (got dtype {y.dtype})")
    train, test = images_to_nchw(x_train, req.device), images_to_nchw(x_test, req.device)
    if train.shape[1:] != test.shape[1:]:
        shapes = f"{tuple(train.shape[1:])} vs {tuple(test.shape[1:])}"
        raise DataError(f"{path}: train and test images differ in shape ({shapes})")
    mean, std = channel_stats(train)
    std = std.clamp_min(1e-8)  # a constant channel would divide by zero
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    return Data(
        req.name,
        normalise(train, mean, std),
        labels(y_train, req.device),
        normalise(test, mean, std),
        labels(y_test, req.device),
        num_classes=num_classes,
    )


def _read_arrays(path: Path) -> tuple[np.ndarray, ...]:
    try:
        # allow_pickle=False: an .npz is data, it must not run code; object arrays are refused instead
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"{path} holds a single array, not an .npz archive with {', '.join(KEYS)}")
        with archive:
            missing = [key for key in KEYS if key not in archive.files]
            if missing:
                raise DataError(f"{path} lacks {', '.join(missing)} (has: {', '.join(archive.files) or 'nothing'})")
            return tuple(archive[key] for key in KEYS)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"cannot read {path} as an .npz archive ({last_line(e)})") from e
