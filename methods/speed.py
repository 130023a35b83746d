"""How fast the shared Trainer runs a network: memory format, torch.compile and, on CUDA, bf16 autocast and
cuDNN autotuning. Channels-last and compile agree with the plain NCHW float32 path within round-off, bf16 within
its precision; none of this is part of a run's identity (benchmarks.runs.config.RunnerConfig carries it, the
summary records it)."""

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Speed:
    channels_last: bool = True   # conv nets: images, weights and gradients NHWC (oneDNN / cuDNN's fast layout)
    compile: bool = False        # torch.compile the loss (forward + backward); one recompilation per shape change
    autocast: bool = True        # CUDA only: bf16 autocast for training and evaluation forwards

    def layout(self, model: nn.Module) -> torch.memory_format:
        """The memory format of `model`'s images and conv weights: NHWC for a conv net when channels_last."""
        convs = any(isinstance(m, nn.Conv2d) for m in model.modules())
        return torch.channels_last if self.channels_last and convs else torch.contiguous_format

    def prepare(self, model: nn.Module) -> nn.Module:
        """`model` in its memory format (in place: the parameters stay the same objects, so an optimizer's hold
        on them survives). Called again after growth replaces parameters."""
        fmt = self.layout(model)
        if fmt == torch.channels_last:
            for p in model.parameters():
                # .to, not .contiguous: a kernel whose strides fit both formats (1 input channel, 1x1) counts as
                # contiguous in either and would keep its NCHW strides, which send oneDNN to slower kernels (ResNet-18
                # at 1/64, CPU: 1.5x the step time); .to gives it NHWC strides and leaves an NHWC weight as it is.
                if p.dim() == 4:
                    p.data = p.data.to(memory_format=fmt)
        return model

    def autocast_context(self, device: torch.device):
        """bf16 autocast on CUDA (float32 elsewhere): growth statistics run outside it, in float32."""
        if self.autocast and device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()


def configure_device(device: torch.device) -> None:
    """Process-wide settings for a CUDA run: cuDNN picks the fastest convolution per shape (a growth step's new
    shapes are tuned once each)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
