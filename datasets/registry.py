"""Dataset names -> loader functions; the one entry point, load_dataset, resolves the data directory."""

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from datasets import npz, sources, synthetic
from datasets.errors import DataError
from datasets.recipe import AUGMENTABLE_SIZE, Recipe, recipe
from datasets.request import DATA_DIR_ENV, LoadRequest
from datasets.tensors import Data

Loader = Callable[[LoadRequest], Data]
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / "data"   # the repository's data/ (MNIST ships there)

# Functions, not instances: nothing is read until a dataset is asked for.
_LOADERS: dict[str, Loader] = {
    "mnist": sources.load_mnist,
    "cifar10": sources.load_cifar10,
    "cifar100": sources.load_cifar100,
    "synthetic": synthetic.load_synthetic,
    "synthetic-image": synthetic.load_synthetic_image,
}
# (C, H, W) of one sample, known without reading the files (an npz's is read from its header).
INPUT_SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "synthetic": (1, 4, 4),
                "synthetic-image": (3, 32, 32)}
# Training samples, as the loaders give them (an npz's are read from its header).
TRAIN_SIZES = {"mnist": 60000, "cifar10": 50000, "cifar100": 50000, "synthetic": 512, "synthetic-image": 256}


def dataset_names() -> list[str]:
    return [*_LOADERS, f"{npz.PREFIX}<path>"]


def input_shape(name: str) -> tuple[int, ...]:
    """(C, H, W) of one sample of dataset `name`, without loading it."""
    if name.startswith(npz.PREFIX):
        return npz.input_shape(name)
    if name not in INPUT_SHAPES:
        raise DataError(f"unknown dataset {name!r}; choose from: {', '.join(dataset_names())}")
    return INPUT_SHAPES[name]


def train_size(name: str) -> int:
    """Training samples of dataset `name`, without loading it."""
    if name.startswith(npz.PREFIX):
        return npz.train_size(name)
    if name not in TRAIN_SIZES:
        raise DataError(f"unknown dataset {name!r}; choose from: {', '.join(dataset_names())}")
    return TRAIN_SIZES[name]


def default_recipe(name: str) -> Recipe:
    """The training recipe of dataset `name`, from the shape of its images (datasets/recipe.py)."""
    return recipe(input_shape(name))


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """The argument if given, else $GROWBENCH_DATA_DIR if set, else <repo>/data."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser()


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    augment: bool = False,
    download: bool = True,
) -> Data:
    """Load a dataset by registry name onto `device`; `download` lets torchvision fetch missing files."""
    if name.startswith(npz.PREFIX):
        loader = npz.load_npz
    elif name in _LOADERS:
        loader = _LOADERS[name]
    else:
        raise DataError(f"unknown dataset {name!r}; choose from: {', '.join(dataset_names())}")
    data = loader(LoadRequest(name, resolve_data_dir(data_dir), torch.device(device), download))
    if not augment:
        return data
    if data.input_shape[1:] != AUGMENTABLE_SIZE:
        raise DataError(
            f"augmentation (random crop + flip) is for 32x32 images; {name} has input shape {data.input_shape}"
        )
    return replace(data, augment=True)
