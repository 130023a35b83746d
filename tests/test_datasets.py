"""datasets: real files (MNIST, the shared CIFAR-10 subset), generated torchvision-format CIFAR, npz, batching.

Everything runs offline: downloads are made to fail at urlopen, so the download branch is exercised without
a network and without hanging.
"""

import gzip
import os
import pickle
import shutil
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar

import benchmarks  # before `datasets`: puts this repo ahead of HuggingFace's `datasets` on sys.path
from datasets import Data, dataset_names, load_dataset, resolve_data_dir
from datasets.errors import DataError
from datasets.sources import CIFAR10_MEAN, CIFAR10_STD, MNIST_FILES
from datasets.tensors import random_crop_flip

REPO_DATA = benchmarks.ROOT / "data"
SHARED_CIFAR = benchmarks.ROOT.parent / "shared/data/cifar10-jpeg-10k.npz"
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


@pytest.fixture
def offline(monkeypatch):
    """Every torchvision download fails at once, the way it does on a machine without network."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture
def no_md5(monkeypatch):
    """Generated CIFAR files cannot match torchvision's MD5s: check only that the files exist."""
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


# ---- MNIST -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo_mnist() -> Data:
    if not (REPO_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"no MNIST under {REPO_DATA}")
    return load_dataset("mnist", data_dir=REPO_DATA, download=False)


def test_mnist_from_repo_data_dir(repo_mnist):
    assert repo_mnist.x_train.shape == (60000, 1, 28, 28) and repo_mnist.x_test.shape == (10000, 1, 28, 28)
    assert repo_mnist.x_train.dtype == torch.float32 and repo_mnist.y_train.dtype == torch.int64
    assert repo_mnist.num_classes == 10 and repo_mnist.input_shape == (1, 28, 28)
    assert torch.bincount(repo_mnist.y_train).tolist() == MNIST_TRAIN_COUNTS
    assert abs(repo_mnist.x_train.mean().item()) < 0.01 and abs(repo_mnist.x_train.std().item() - 1) < 0.01


def test_mnist_gunzips_a_copy_of_the_gz_files(tmp_path, repo_mnist, offline):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        shutil.copy(REPO_DATA / "MNIST" / "raw" / f"{name}.gz", raw)
    data = load_dataset("mnist", data_dir=tmp_path)
    assert all((raw / name).is_file() for name in MNIST_FILES)
    assert not list(raw.glob("*.partial"))
    assert torch.equal(data.x_train, repo_mnist.x_train) and torch.equal(data.y_test, repo_mnist.y_test)


@pytest.mark.parametrize("download", [False, True])
def test_mnist_missing_is_a_one_line_error(tmp_path, offline, download):
    with pytest.raises(DataError) as excinfo:
        load_dataset("mnist", data_dir=tmp_path, download=download)
    message = one_line_error(excinfo)
    assert "train-images-idx3-ubyte" in message and str(tmp_path) in message
    assert "--data-dir" in message and "GROWBENCH_DATA_DIR" in message
    assert ("downloading failed" in message) == download


def test_mnist_corrupt_gz_names_the_file(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(os.urandom(10_000))[:5_000])  # truncated
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz") as excinfo:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    one_line_error(excinfo)
    assert not (raw / "train-images-idx3-ubyte").exists()


# ---- CIFAR in torchvision's on-disk format -------------------------------------------------------------


def cifar_batch(n: int, first_label: int, num_classes: int, label_key: str) -> dict:
    """n images whose channel c, row h holds pixel value 100 * c + h, so layout mistakes show up."""
    planes = 100 * np.arange(3)[:, None, None] + np.arange(32)[None, :, None] + np.zeros((1, 1, 32), int)
    data = np.broadcast_to(planes.astype(np.uint8).reshape(1, 3072), (n, 3072)).copy()  # rows: R, G, B planes
    return {"data": data, label_key: [(first_label + i) % num_classes for i in range(n)]}


def write_cifar10(root):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    batches = {f"data_batch_{k}": cifar_batch(4, k, 10, "labels") for k in range(1, 6)}
    batches["test_batch"] = cifar_batch(6, 0, 10, "labels")
    batches["batches.meta"] = {"label_names": [f"class{k}" for k in range(10)]}
    for name, content in batches.items():
        (folder / name).write_bytes(pickle.dumps(content))
    return folder


def write_cifar100(root):
    folder = root / "cifar-100-python"
    folder.mkdir()
    for name, n in (("train", 30), ("test", 10)):
        batch = cifar_batch(n, 95, 100, "fine_labels") | {"coarse_labels": [0] * n}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"class{k}" for k in range(100)]}))


def test_cifar10_generated_files(tmp_path, no_md5):
    write_cifar10(tmp_path)
    data = load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert data.x_train.shape == (20, 3, 32, 32) and data.x_test.shape == (6, 3, 32, 32)
    assert data.num_classes == 10
    assert data.y_train.tolist() == [(k + i) % 10 for k in range(1, 6) for i in range(4)]
    pixel = 100 * torch.arange(3)[:, None, None] + torch.arange(32)[None, :, None] + torch.zeros(1, 1, 32)
    mean, std = torch.tensor(CIFAR10_MEAN)[:, None, None], torch.tensor(CIFAR10_STD)[:, None, None]
    expected = (pixel / 255 - mean) / std  # (3, 32, 32): channel-first, rows before columns
    assert torch.allclose(data.x_train, expected.expand(20, -1, -1, -1), atol=1e-5)


def test_cifar100_generated_files_use_fine_labels(tmp_path, no_md5):
    write_cifar100(tmp_path)
    data = load_dataset("cifar100", data_dir=tmp_path, download=False)
    assert data.x_train.shape == (30, 3, 32, 32) and data.num_classes == 100
    assert data.y_train.tolist() == [(95 + i) % 100 for i in range(30)]


def test_cifar_corrupt_pickle_names_the_file(tmp_path, no_md5):
    folder = write_cifar10(tmp_path)
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:500])
    with pytest.raises(DataError, match="data_batch_3") as excinfo:
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    one_line_error(excinfo)


def test_cifar_md5_mismatch_names_the_file(tmp_path):
    write_cifar10(tmp_path)  # well-formed, but not the original bytes
    with pytest.raises(DataError, match="data_batch_1 does not match torchvision's MD5") as excinfo:
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    one_line_error(excinfo)


@pytest.mark.parametrize("download", [False, True])
def test_cifar_missing_is_a_one_line_error(tmp_path, offline, download):
    with pytest.raises(DataError) as excinfo:
        load_dataset("cifar100", data_dir=tmp_path, download=download)
    message = one_line_error(excinfo)
    assert "cifar-100-python" in message and "meta" in message and "--data-dir" in message
    assert ("downloading failed" in message) == download


# ---- npz ---------------------------------------------------------------------------------------------


def test_shared_cifar10_subset():
    if not SHARED_CIFAR.is_file():
        pytest.skip(f"no {SHARED_CIFAR}")
    data = load_dataset(f"npz:{SHARED_CIFAR}")
    assert data.name == f"npz:{SHARED_CIFAR}"
    assert data.x_train.shape == (10000, 3, 32, 32) and data.x_test.shape == (2000, 3, 32, 32)
    assert data.num_classes == 10 and torch.bincount(data.y_train).tolist() == [1000] * 10
    assert torch.allclose(data.x_train.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(data.x_train.std((0, 2, 3)), torch.ones(3), atol=1e-3)


def test_npz_grayscale_float_pixels_and_keras_label_shape(tmp_path):
    path = tmp_path / "gray.npz"
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.random((8, 5, 6)),
        y_train=np.arange(8).reshape(8, 1) % 3,
        x_test=rng.random((4, 5, 6)),
        y_test=np.array([0, 1, 2, 6]),
    )
    data = load_dataset(f"npz:{path}")
    assert data.input_shape == (1, 5, 6) and data.x_train.dtype == torch.float32
    assert data.y_train.shape == (8,) and data.num_classes == 7  # the largest label in either split + 1


def test_npz_missing_key_missing_file_and_garbage(tmp_path):
    path = tmp_path / "partial.npz"
    np.savez(path, x_train=np.zeros((2, 4, 4, 3)), y_train=np.zeros(2, np.uint8), x_test=np.zeros((1, 4, 4, 3)))
    with pytest.raises(DataError, match="lacks y_test") as excinfo:
        load_dataset(f"npz:{path}")
    one_line_error(excinfo)
    with pytest.raises(DataError, match="not found") as excinfo:
        load_dataset(f"npz:{tmp_path / 'absent.npz'}")
    one_line_error(excinfo)
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="cannot read") as excinfo:
        load_dataset(f"npz:{tmp_path / 'garbage.npz'}")
    one_line_error(excinfo)


# ---- registry ------------------------------------------------------------------------------------------


def test_unknown_name_lists_the_choices():
    with pytest.raises(DataError) as excinfo:
        load_dataset("foo")
    message = one_line_error(excinfo)
    assert message.startswith("unknown dataset 'foo'; choose from: ")
    assert all(name in message for name in dataset_names())
    assert {"mnist", "cifar10", "cifar100", "synthetic", "synthetic-image", "npz:<path>"} == set(dataset_names())


def test_resolve_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("GROWBENCH_DATA_DIR", raising=False)
    assert resolve_data_dir(None) == benchmarks.ROOT / "data"
    monkeypatch.setenv("GROWBENCH_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"


@pytest.fixture
def one_thread():
    """Tiny matmuls on a busy 2-core machine run ~100x slower with torch's default 2 threads than with 1."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_synthetic_is_fixed_and_learnable(one_thread):
    data = load_dataset("synthetic")
    assert data.input_shape == (1, 4, 4) and len(data.y_train) == 512 and len(data.y_test) == 256
    assert torch.equal(data.x_train, load_dataset("synthetic").x_train)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        for x, y in data.train_batches(64, generator):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    accuracy = (net(data.x_test).argmax(1) == data.y_test).float().mean().item()
    majority = torch.bincount(data.y_test).max().item() / len(data.y_test)
    assert accuracy > majority + 0.3


def test_synthetic_image_is_balanced_and_separable():
    data = load_dataset("synthetic-image")
    assert data.input_shape == (3, 32, 32) and data.x_train.shape[0] == 256 and data.x_test.shape[0] == 128
    assert torch.bincount(data.y_train).tolist() == [26] * 6 + [25] * 4
    centroids = torch.stack([data.x_train[data.y_train == c].mean(0) for c in range(10)]).flatten(1)
    nearest = torch.cdist(data.x_test.flatten(1), centroids).argmin(1)
    assert (nearest == data.y_test).float().mean() > 0.5  # chance is 0.1


# ---- batches and augmentation ----------------------------------------------------------------------------


def epoch(data: Data, batch_size: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(data.train_batches(batch_size, torch.Generator().manual_seed(seed)))


def test_train_batches_cover_every_sample_once_in_a_seeded_order():
    data = load_dataset("synthetic")
    batches = epoch(data, 100, seed=1)
    assert [len(y) for _, y in batches] == [100] * 5 + [12]  # the partial last batch is kept
    x = torch.cat([x for x, _ in batches])
    rows = {tuple(row.tolist()) for row in x.flatten(1)}
    assert rows == {tuple(row.tolist()) for row in data.x_train.flatten(1)} and len(rows) == 512
    assert torch.equal(torch.cat([y for _, y in batches]).sort().values, data.y_train.sort().values)
    assert torch.equal(x, torch.cat([x for x, _ in epoch(data, 100, seed=1)]))
    assert not torch.equal(x, torch.cat([x for x, _ in epoch(data, 100, seed=2)]))


def test_test_batches_are_in_order():
    data = load_dataset("synthetic")
    batches = list(data.test_batches(100))
    assert torch.equal(torch.cat([x for x, _ in batches]), data.x_test)
    assert torch.equal(torch.cat([y for _, y in batches]), data.y_test)


def test_subset_train_is_seeded_and_keeps_pairs():
    data = load_dataset("synthetic")
    small = data.subset_train(50, torch.Generator().manual_seed(3))
    assert small.x_train.shape == (50, 1, 4, 4) and torch.equal(small.x_test, data.x_test)
    keep = torch.randperm(512, generator=torch.Generator().manual_seed(3))[:50]
    assert torch.equal(small.x_train, data.x_train[keep]) and torch.equal(small.y_train, data.y_train[keep])
    with pytest.raises(DataError):
        data.subset_train(513, torch.Generator())


def crops_and_flips(image: torch.Tensor, pad: int = 4) -> list[torch.Tensor]:
    """All 2 * 81 images that random_crop_flip may make from one (C, H, W) image, the slow obvious way."""
    padded = torch.nn.functional.pad(image, (pad,) * 4)
    h, w = image.shape[1:]
    crops = [padded[:, i : i + h, j : j + w] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]
    return crops + [crop.flip(2) for crop in crops]


def test_random_crop_flip_makes_only_crops_and_flips():
    x = torch.randn(32, 3, 32, 32)
    out = random_crop_flip(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    made = []  # index into crops_and_flips of what each image became: 0..80 crops, 81..161 flipped crops
    for image, augmented in zip(x, out, strict=True):
        matches = [k for k, candidate in enumerate(crops_and_flips(image)) if torch.equal(augmented, candidate)]
        assert len(matches) == 1
        made += matches
    assert any(k < 81 for k in made) and any(k >= 81 for k in made)  # both mirrored and not
    assert len({k % 81 for k in made}) > 10  # many different crop offsets


def test_augmented_batches_are_seeded_and_change_images():
    data = load_dataset("synthetic-image", augment=True)
    assert data.augment
    ((x, y),) = epoch(data, 256, seed=5)
    order = torch.randperm(256, generator=torch.Generator().manual_seed(5))  # the first draw of the epoch
    assert torch.equal(y, data.y_train[order]) and x.shape == (256, 3, 32, 32)
    changed = (x != data.x_train[order]).flatten(1).any(1)
    assert changed.float().mean() > 0.9
    assert torch.equal(x, epoch(data, 256, seed=5)[0][0])
    assert not torch.equal(x, epoch(data, 256, seed=6)[0][0])
    assert torch.equal(epoch(load_dataset("synthetic-image"), 256, seed=5)[0][0], data.x_train[order])


def test_augment_refuses_non_32x32_images():
    with pytest.raises(DataError, match="32x32") as excinfo:
        load_dataset("synthetic", augment=True)
    one_line_error(excinfo)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device_with_cpu_generator():
    data = load_dataset("synthetic-image", device="cuda", augment=True)
    assert data.x_train.is_cuda and data.y_test.is_cuda
    ((x, y),) = epoch(data, 256, seed=5)
    assert x.is_cuda and y.is_cuda
    assert torch.equal(x, epoch(data, 256, seed=5)[0][0])
    cpu = load_dataset("synthetic-image", augment=True)
    assert torch.allclose(x.cpu(), epoch(cpu, 256, seed=5)[0][0], atol=1e-6)
