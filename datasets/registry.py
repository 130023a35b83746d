"""Dataset names -> loader functions; the one entry point, load_dataset, resolves the data directory."""

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks import ROOT
from benchmarks.errors import UserError
from datasets import npz, sources, synthetic
from datasets.request import DATA_DIR_ENV, LoadRequest
from datasets.tensors import Data

Loader = Callable[[LoadRequest], Data]

# Functions, not instances: nothing is read until a dataset is asked for.
_LOADERS: dict[str, Loader] = {
    "mnist": sources.load_mnist,
    "cifar10": sources.load_cifar10,
    "cifar100": sources.load_cifar100,
    "synthetic": synthetic.load_synthetic,
    "synthetic-image": synthetic.load_synthetic_image,
}
AUGMENTABLE_SIZE = (32, 32)  # crop-and-flip is the CIFAR recipe; it would mangle digits and 4x4 toys


def dataset_names() -> list[str]:
    return [*_LOADERS, f"{npz.PREFIX}<path>"]


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """The argument if given, else $GROWBENCH_DATA_DIR if set, else <repo>/data."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV) or ROOT / "data"
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
        raise UserError(f"unknown dataset {name!r}; choose from: {', '.join(dataset_names())}")
    data = loader(LoadRequest(name, resolve_data_dir(data_dir), torch.device(device), download))
    if not augment:
        return data
    if data.input_shape[1:] != AUGMENTABLE_SIZE:
        raise UserError(
            f"augmentation (random crop + flip) is for 32x32 images; {name} has input shape {data.input_shape}"
        )
    return replace(data, augment=True)
