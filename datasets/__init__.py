"""growbench's datasets: whole splits as normalised tensors on the run's device (see registry.load_dataset)."""

from datasets.registry import dataset_names, load_dataset, resolve_data_dir
from datasets.tensors import Data

__all__ = ["Data", "dataset_names", "load_dataset", "resolve_data_dir"]
