"""`npz:<path>`: any image classification set saved as Keras-style arrays in one .npz file."""

import zipfile
import zlib
from pathlib import Path

import numpy as np

from benchmarks.errors import UserError
from datasets.request import LoadRequest, last_line
from datasets.tensors import Data, channel_stats, images_to_nchw, labels, normalise

PREFIX = "npz:"
KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(req: LoadRequest) -> Data:
    """x_* (N, H, W, C) channels-last or (N, H, W) grayscale, any numeric dtype; y_* integer labels (N,) or (N, 1).

    Both splits are normalised with the training set's per-channel mean/std (so the pixel scale, 0-255 or
    0-1, does not matter); num_classes is the largest label + 1.
    """
    given = req.name.removeprefix(PREFIX)
    if not given:
        raise UserError(f"{PREFIX} needs a path after it, e.g. {PREFIX}/data/my-set.npz")
    path = Path(given).expanduser()
    x_train, y_train, x_test, y_test = _read_arrays(path)
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim not in (3, 4) or len(x) != len(y) or len(x) == 0:
            raise UserError(f"{path}: x_{split} {x.shape} and y_{split} {y.shape} must be N>0 images and N labels")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise UserError(f"{path}: y_{split} must hold non-negative integer class labels (got dtype {y.dtype})")
    train, test = images_to_nchw(x_train, req.device), images_to_nchw(x_test, req.device)
    if train.shape[1:] != test.shape[1:]:
        shapes = f"{tuple(train.shape[1:])} vs {tuple(test.shape[1:])}"
        raise UserError(f"{path}: train and test images differ in shape ({shapes})")
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
    if not path.is_file():
        raise UserError(f"npz file not found: {path}; give npz:<path to a .npz holding {', '.join(KEYS)}>")
    try:
        # allow_pickle=False: an .npz is data, it must not run code; object arrays are refused instead
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise UserError(f"{path} holds a single array, not an .npz archive with {', '.join(KEYS)}")
        with archive:
            missing = [key for key in KEYS if key not in archive.files]
            if missing:
                raise UserError(f"{path} lacks {', '.join(missing)} (has: {', '.join(archive.files) or 'nothing'})")
            return tuple(archive[key] for key in KEYS)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise UserError(f"cannot read {path} as an .npz archive ({last_line(e)})") from e
