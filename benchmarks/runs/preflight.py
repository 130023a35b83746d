"""Checks made before any work, so that bad input is one line and exit code 2 rather than a traceback minutes
into a run, or into every run of a sweep: the device is on this machine, the records folder can be written,
the network can fit in the device's memory. Nothing here creates a file or folder.
"""

import functools
import os
from pathlib import Path

from benchmarks.errors import UserError
from benchmarks.runs.config import RunConfig

BYTES = 4          # float32: parameters, gradients and activations
GIB = 2 ** 30      # bytes
FEWEST_CLASSES = 2   # an npz's class count is known only once it is read: a lower bound


def check_device(name: str) -> None:
    """`name` (auto | cpu | cuda | cuda:N, as benchmarks.runs.flags.device_flag lets through) is a device
    of this machine."""
    import torch

    if name in ("auto", "cpu"):
        return
    if not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for, but torch sees no CUDA GPU; use --device cpu")
    count, index = torch.cuda.device_count(), int(name.partition(":")[2] or 0)
    if index >= count:
        raise UserError(f"--device {name}: torch sees {count} GPU{'s' * (count != 1)} here (cuda:0 to "
                        f"cuda:{count - 1}); use one of those, or --device cuda")


def check_folder(path: str | Path, flag: str) -> None:
    """`path` is, or can be made, a folder to write in (made by whoever writes: bad input leaves none behind)."""
    _check_ancestor(Path(path), Path(path), flag)


def check_file(path: str | Path, flag: str) -> None:
    """`path` can be written as a file: not a folder, and in a folder that is, or can be made, writable."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{flag} {path} is not writable; give another {flag}")
    _check_ancestor(path.parent, path, flag)


def _check_ancestor(folder: Path, given: Path, flag: str) -> None:
    """The first existing ancestor of `folder` (itself included) is a folder this process may write in."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())   # '.' or '/' at worst
    if not existing.is_dir():
        raise UserError(f"{flag} {given}: {existing} is a file, not a folder; give another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {given}: {existing} is not writable; give another {flag}")


def memory_limit(device: str) -> tuple[int, str] | None:
    """(bytes, what) of all the memory `device` has: the GPU's, or the machine's RAM (None: unknown)."""
    import torch

    if device.startswith("cuda") or device == "auto" and torch.cuda.is_available():
        index = int(device.partition(":")[2] or 0)
        return torch.cuda.get_device_properties(index).total_memory, f"cuda:{index}'s memory"
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's RAM"
    except (ValueError, OSError):   # a platform without these names
        return None


def largest_widths(config: RunConfig) -> tuple[int, ...]:
    """The start widths, or a growth run's target widths where they are given (`-o target=`) and larger."""
    from methods.errors import ConfigError
    from methods.nets import parse_widths

    target = config.options.get("target")
    if not isinstance(target, str) or not target:
        return config.widths
    try:
        target = parse_widths("1/1" if target == "standard" else target, config.arch)
    except ConfigError:   # the run's schedule refuses it, with its own message
        return config.widths
    return tuple(map(max, config.widths, target)) if len(target) == len(config.widths) else config.widths


@functools.lru_cache(maxsize=256)   # a sweep's runs share a few networks
def training_bytes(arch: str, widths: tuple[int, ...], input_shape: tuple[int, ...], batch: int) -> int:
    """What one training step holds, on the low side: the parameters and their gradients, and the outputs of
    the layers with weights (linear, convolution, norm) for one batch, float32 (backward keeps about as many
    values: each layer's input, and the activations' outputs, which are the next layer's inputs). The network
    is built on the meta device: shapes only, no memory."""
    import torch

    from methods.nets import NetSpec, build_network

    try:
        with torch.device("meta"):
            net = build_network(NetSpec(arch, widths, input_shape, FEWEST_CLASSES))
    except (RuntimeError, TypeError, OverflowError) as e:   # torch's sizes are int64 bytes
        raise UserError(f"{arch} at widths {','.join(map(str, widths))} is too large for torch even to size "
                        "(a tensor beyond 2^63 bytes); use smaller --widths") from e
    outputs = []
    for module in net.modules():
        if next(module.parameters(recurse=False), None) is not None:
            module.register_forward_hook(lambda m, i, out: outputs.append(out.numel()))
    with torch.no_grad():
        net.train()(torch.empty(batch, *input_shape, device="meta"))
    return BYTES * (2 * sum(p.numel() for p in net.parameters()) + sum(outputs))


def check_fits(config: RunConfig, device: str) -> None:
    """Refuse a run that clearly cannot fit in `device`'s memory: training_bytes of its network at its largest
    widths against all the memory the device has. The data, the optimizer's state, growth statistics and the
    framework's own share come on top, so a run that passes may still not fit; one that fails does not."""
    from datasets import input_shape, train_size

    limit = memory_limit(device)
    if limit is None:
        return
    widths, train = largest_widths(config), config.train
    batch = min(train.batch_size, train.train_subset or train.batch_size, train_size(config.dataset))
    need = training_bytes(config.arch, widths, input_shape(config.dataset), batch)
    if need > limit[0]:
        raise UserError(f"{config.arch} at widths {','.join(map(str, widths))} needs at least {need / GIB:,.1f} GiB "
                        f"to train (parameters, gradients and the activations of a batch of {batch}), more than "
                        f"the {limit[0] / GIB:,.1f} GiB of {limit[1]}; use smaller --widths or --batch-size")
