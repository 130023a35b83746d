"""Train/eval mode for a block of code, with every module's own mode put back afterwards."""

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def kept_modes(model: nn.Module, train: bool) -> Iterator[nn.Module]:
    """Inside: `model` in train (train=True) or eval mode. On exit, even by an exception, each module
    gets back the mode it had on entry: not model.train(was_training), which would also overwrite
    submodules that were in another mode than the model."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.train(train)
        yield model
    finally:
        for m, training in modes:
            m.training = training
