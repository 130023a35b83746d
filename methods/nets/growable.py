"""Growable pairs of layers and the one operation growth needs: append hidden units to a pair (and its
inverse, keep_units, for structured pruning).

A pair is two consecutive layers joined by a hidden width: `first` produces it (its output units or
channels), `second` consumes it (its input units or channels), and anything in between that is sized
by it (BatchNorm) grows with it. Every growth method acts only through `add_units`.

Parameters are widened in place (`param.data = ...`): the Parameter objects stay the same, so an
optimizer and its LR scheduler keep working; optimizer state tensors of the old shape (momentum,
Adam moments) are padded with zeros for the new entries.
"""

from dataclasses import dataclass

import torch
from torch import nn

Layer = nn.Linear | nn.Conv2d


@dataclass(frozen=True)
class GrowablePair:
    name: str                              # e.g. "hidden.0", "layer2.1"
    first: Layer                           # output units/channels = the hidden width
    second: Layer                          # input units/channels = the hidden width
    between: tuple[nn.Module, ...] = ()    # BatchNorm layers sized by the hidden width
    activation: str = "relu"               # σ applied to the hidden width

    @property
    def width(self) -> int:
        return self.first.weight.shape[0]


def memory_format(*weights: torch.Tensor) -> torch.memory_format:
    """The memory format of a pair's conv weights, which the tensors replacing them keep: channels-last when
    one of them is stored so (a channels-last model, methods/speed.py), else contiguous. (A weight with one
    input or output channel is both, so the pair's weights decide together.) torch.cat and index_select
    return contiguous tensors from such inputs, which would turn a channels-last conv back."""
    cl = any(w.dim() == 4 and w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
             for w in weights)
    return torch.channels_last if cl else torch.contiguous_format


def in_format(t: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    """t in memory format `fmt` if it is 4-D (no copy when it already is); other tensors as they are."""
    return t.contiguous(memory_format=fmt) if t.dim() == 4 else t


def _grow_param(param: nn.Parameter, extra: torch.Tensor, dim: int, optimizer=None,
                fmt: torch.memory_format = torch.contiguous_format) -> None:
    """Concatenate `extra` to `param` along `dim`, keeping the Parameter object and optimizer state; 4-D
    tensors (the parameter, its momentum) in memory format `fmt`."""
    old_shape = param.shape
    param.data = in_format(torch.cat([param.data, extra.to(param.dtype)], dim=dim), fmt)
    param.grad = None
    if optimizer is None or param not in optimizer.state:
        return
    state = optimizer.state[param]
    for key, value in state.items():
        if torch.is_tensor(value) and value.shape == old_shape:
            pad_shape = list(old_shape)
            pad_shape[dim] = extra.shape[dim]
            state[key] = in_format(torch.cat([value, value.new_zeros(pad_shape)], dim=dim), fmt)


@torch.no_grad()
def add_units(pair: GrowablePair, fan_in: torch.Tensor, fan_out: torch.Tensor,
              fan_in_bias: torch.Tensor | None = None, optimizer=None) -> None:
    """Append K hidden units to `pair`.

    fan_in:  (K, *first.weight.shape[1:])    new rows of `first`, e.g. (K, d_in) or (K, C_in, kh, kw)
    fan_out: (second.weight.shape[0], K, ...) new columns of `second`, e.g. (d_out, K) or (C_out, K, kh, kw)
    fan_in_bias: (K,) new entries of `first.bias` (zeros if None and `first` has a bias).
    New BatchNorm entries start as the identity (γ=1, β=0, running mean 0, running var 1).
    """
    k = fan_in.shape[0]
    first, second = pair.first, pair.second
    if fan_out.shape[1] != k:
        raise ValueError(f"fan_out has {fan_out.shape[1]} new units, fan_in has {k}")
    fmt = memory_format(first.weight, second.weight)
    _grow_param(first.weight, fan_in, 0, optimizer, fmt)
    if first.bias is not None:
        bias = fan_in_bias if fan_in_bias is not None else fan_in.new_zeros(k)
        _grow_param(first.bias, bias, 0, optimizer)
    _grow_param(second.weight, fan_out, 1, optimizer, fmt)
    for bn in pair.between:
        _grow_param(bn.weight, bn.weight.new_ones(k), 0, optimizer)
        _grow_param(bn.bias, bn.bias.new_zeros(k), 0, optimizer)
        bn.running_mean = torch.cat([bn.running_mean, bn.running_mean.new_zeros(k)])
        bn.running_var = torch.cat([bn.running_var, bn.running_var.new_ones(k)])
        bn.num_features += k
    _set_sizes(first, second, pair.width)


@torch.no_grad()
def keep_units(pair: GrowablePair, keep: torch.Tensor) -> None:
    """Keep only the hidden units `keep` (indices, ascending) of `pair`: the inverse of add_units, for
    structured pruning. Parameters stay the same objects; optimizer state is not adjusted (build the
    optimizer afterwards)."""
    first, second = pair.first, pair.second
    params = [(first.weight, 0), (second.weight, 1)]   # (parameter, its dim of hidden units)
    params += [(first.bias, 0)] if first.bias is not None else []
    params += [(t, 0) for bn in pair.between for t in (bn.weight, bn.bias)]
    fmt = memory_format(first.weight, second.weight)
    for param, dim in params:
        param.data = in_format(param.data.index_select(dim, keep), fmt)
        param.grad = None
    for bn in pair.between:
        bn.running_mean = bn.running_mean[keep]
        bn.running_var = bn.running_var[keep]
        bn.num_features = len(keep)
    _set_sizes(first, second, pair.width)


def _set_sizes(first: Layer, second: Layer, width: int) -> None:
    """Keep the modules' size attributes true (they show in repr and are read by rebuilds)."""
    if isinstance(first, nn.Linear):
        first.out_features = width
    else:
        first.out_channels = width
    if isinstance(second, nn.Linear):
        second.in_features = width
    else:
        second.in_channels = width


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm of `model`: the layers whose output depends on train or eval mode."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
