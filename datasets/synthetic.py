"""Small generated datasets for tests and smoke runs: no files, the same tensors on every machine.

Each draws from its own fixed seed, independent of the run's seed, so a run's seed changes only the
training (initialisation, batch order), never the task.
"""

import math

import torch

from datasets.request import LoadRequest
from datasets.tensors import Data, channel_stats, normalise

TEACHER_SEED, IMAGE_SEED = 1234, 4321


def load_synthetic(req: LoadRequest) -> Data:
    """4 classes of (1, 4, 4) Gaussian inputs, labelled by a fixed random tanh MLP; 512 train, 256 test.

    Inputs are images so that MLPs (which flatten) and every other code path see the same layout as real data.
    """
    g = torch.Generator().manual_seed(TEACHER_SEED)
    n_train, n_test, classes, hidden = 512, 256, 4, 32
    x = torch.randn(n_train + n_test, 1, 4, 4, generator=g)  # already ~N(0, 1) per pixel: no normalising
    w1 = torch.randn(16, hidden, generator=g) / 4  # / sqrt(16): pre-activations ~N(0, 1), tanh not saturated
    w2 = torch.randn(hidden, classes, generator=g)
    logits = torch.tanh(x.flatten(1) @ w1) @ w2  # (N, classes)
    y = (logits - logits.mean(0)).argmax(1)  # centring the logits keeps the classes roughly balanced
    return _split(req, x, y, n_train, classes)


def load_synthetic_image(req: LoadRequest) -> Data:
    """10 classes of (3, 32, 32) noisy images, each class a colour tint plus a stripe pattern at its own angle.

    The stripes' phase is random per image, so telling classes apart by pattern needs translation-invariant
    features (convolutions); the tint alone is enough for an easy start. 256 train, 128 test.
    """
    g = torch.Generator().manual_seed(IMAGE_SEED)
    n_train, n_test, classes, size = 256, 128, 10, 32
    n = n_train + n_test
    y = torch.cat([torch.arange(n_train), torch.arange(n_test)]) % classes  # (N,) each split near-balanced
    tint = 0.5 * torch.randn(classes, 3, generator=g)  # (classes, 3) mean colour per class
    angle = math.pi * y.float() / classes  # stripe orientation per image (N,)
    phase = 2 * math.pi * torch.rand(n, generator=g)  # (N,)
    grid = torch.arange(size, dtype=torch.float32)
    # (N, H, W) position of each pixel along its image's stripe direction
    along = torch.cos(angle)[:, None, None] * grid[None, None, :] + torch.sin(angle)[:, None, None] * grid[:, None]
    stripes = torch.sin(2 * math.pi * along / 8 + phase[:, None, None])  # (N, H, W), period 8 pixels
    x = tint[y][:, :, None, None] + stripes[:, None] + torch.randn(n, 3, size, size, generator=g)  # (N, 3, 32, 32)
    mean, std = channel_stats(x[:n_train])
    return _split(req, normalise(x, mean, std), y, n_train, classes)


def _split(req: LoadRequest, x: torch.Tensor, y: torch.Tensor, n_train: int, classes: int) -> Data:
    x, y = x.to(req.device), y.to(req.device)
    return Data(req.name, x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes=classes)
