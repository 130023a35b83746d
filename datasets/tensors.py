"""The in-memory dataset every method trains on, and the tensor helpers the loaders share.

Whole datasets live as single tensors on the run's device (MNIST is 188 MB as float32), so batches are
index lookups and augmentation is a few vectorised ops: no DataLoader, no per-sample Python.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from datasets.errors import DataError

Batch = tuple[torch.Tensor, torch.Tensor]  # x (B, C, H, W) float32, y (B,) int64

CROP_PAD = 4  # the usual CIFAR recipe: pad 4, random 32x32 crop, random horizontal flip


@dataclass
class Data:
    name: str  # registry name as given, e.g. "mnist", "npz:/path/x.npz"
    x_train: torch.Tensor  # (N, C, H, W) float32, normalised per channel
    y_train: torch.Tensor  # (N,) int64
    x_test: torch.Tensor  # (M, C, H, W)
    y_test: torch.Tensor  # (M,)
    num_classes: int
    augment: bool = False  # random crop + horizontal flip on train batches (32x32 images)
    x_val: torch.Tensor | None = None  # (V, C, H, W) held out of the training set (split_validation), else None
    y_val: torch.Tensor | None = None  # (V,)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        """One epoch in a random order; the last, partial batch is kept.

        `generator` is a CPU generator: it draws the permutation first, then each batch's augmentation,
        so a CPU run is reproducible from the seed alone.
        """
        order = torch.randperm(len(self.y_train), generator=generator).to(self.y_train.device)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x = self.x_train[idx]
            if self.augment:
                x = random_crop_flip(x, generator)
            yield x, self.y_train[idx]

    def test_batches(self, batch_size: int) -> Iterator[Batch]:
        for start in range(0, len(self.y_test), batch_size):
            yield self.x_test[start : start + batch_size], self.y_test[start : start + batch_size]

    def subset_train(self, n: int, generator: torch.Generator) -> "Data":
        """The first n training samples of a seeded permutation (not stratified by class); test set unchanged."""
        if not 1 <= n <= len(self.y_train):
            raise DataError(f"training subset size must be between 1 and {len(self.y_train)}, got {n}")
        keep = torch.randperm(len(self.y_train), generator=generator)[:n].to(self.y_train.device)
        return replace(self, x_train=self.x_train[keep], y_train=self.y_train[keep])

    def in_memory_format(self, fmt: torch.memory_format) -> "Data":
        """Every image tensor stored in `fmt` (torch.channels_last: NHWC), so that batches, index lookups of it,
        come out in that format without a copy per step."""
        to = lambda x: None if x is None else x.contiguous(memory_format=fmt)
        return replace(self, x_train=to(self.x_train), x_test=to(self.x_test), x_val=to(self.x_val))

    def split_validation(self, fraction: float, seed: int) -> "Data":
        """The training set split in two by a seeded permutation: its first round(fraction · N) samples (at least
        1, at most N − 1) become the validation set, the rest the training set. Disjoint, together all N; the
        test set unchanged."""
        train, val = validation_indices(len(self.y_train), fraction, seed)
        train, val = train.to(self.y_train.device), val.to(self.y_train.device)
        return replace(self, x_train=self.x_train[train], y_train=self.y_train[train], x_val=self.x_train[val],
                       y_val=self.y_train[val])


def validation_indices(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training, validation) indices of n samples: a seeded permutation, its first round(fraction · n) (at least
    1, at most n − 1) held out. Disjoint, together all n."""
    if n < 2 or not 0 < fraction < 1:
        raise DataError(f"a validation split needs a fraction in (0, 1) and at least 2 training samples; got "
                        f"fraction {fraction} of {n} samples")
    n_val = min(n - 1, max(1, round(fraction * n)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_val:], order[:n_val]


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = CROP_PAD) -> torch.Tensor:
    """Per image: a random HxW crop of the zero-padded image, mirrored left-right with probability 1/2.

    x (B, C, H, W) -> (B, C, H, W). Zero padding is the channel mean here, since x is already normalised
    (torchvision's recipe pads black before normalising). The offsets are drawn on the CPU generator, then
    one gather builds every crop at once on x's device.
    """
    b, c, h, w = x.shape
    dev = x.device
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
    flip = (torch.rand(b, generator=generator) < 0.5).to(dev)
    rows = dy[:, None] + torch.arange(h, device=dev)  # (B, H) row of the padded image per output row
    cols = dx[:, None] + torch.arange(w, device=dev)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)  # reading the crop's columns backwards mirrors it
    padded = F.pad(x, (pad, pad, pad, pad))  # (B, C, H + 2p, W + 2p)
    batch = torch.arange(b, device=dev)[:, None, None, None]
    chan = torch.arange(c, device=dev)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


def images_to_nchw(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """(N, H, W, C) or grayscale (N, H, W) images of any numeric dtype -> float32 (N, C, H, W) on device.

    Moves before converting, so uint8 pixels cross to a GPU at a quarter of the float32 size.
    """
    x = torch.as_tensor(images).to(device)
    if x.ndim == 3:
        x = x.unsqueeze(-1)
    return x.permute(0, 3, 1, 2).float().contiguous()


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of x (N, C, H, W), each (C,); float64 so 10^8 pixels sum accurately."""
    flat = x.transpose(0, 1).reshape(x.shape[1], -1).double()
    return flat.mean(1), flat.std(1, correction=0)


def normalise(x: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor):
    """(x - mean) / std per channel of x (N, C, H, W); returns float32."""
    mean = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def labels(y: np.ndarray | torch.Tensor | list[int], device: torch.device) -> torch.Tensor:
    """Class labels of any integer type or shape (N,) / Keras' (N, 1) -> int64 (N,) on device."""
    return torch.as_tensor(y, dtype=torch.int64).reshape(-1).to(device)
