"""growbench's datasets: whole splits as normalised tensors on the run's device (see registry.load_dataset),
and each dataset's default training recipe from the shape of its images (recipe.py)."""

from datasets.errors import DataError
from datasets.recipe import Recipe
from datasets.registry import dataset_names, default_recipe, input_shape, load_dataset, resolve_data_dir, train_size
from datasets.tensors import Data

__all__ = ["Data", "DataError", "Recipe", "dataset_names", "default_recipe", "input_shape", "load_dataset",
           "resolve_data_dir", "train_size"]
