"""Float64 sums of the statistics pass's float32 batch products (stats.py).

`sum64 += t32` makes torch convert t32 into a fresh float64 tensor before adding, and at the sizes of the
conv statistics fresh pages cost more than the add: the full fan-out's M2 and C of ResNet-18's last
block, 584 x 4608 x 3 x 3 floats at 1/64 width (1.7 GB in float64 at its standard widths), take 60 ms
that way on this project's 2-core CPU, 19 ms through a float64 buffer that is reused. Sums converts
every product after a key's first (which becomes the sum's own float64 copy) into one such buffer, as
large as the largest product added so far: the same float64 additions in the same order, so the same
bits. The statistics pass drops the buffer after its last batch.
"""

import torch


class Sums(dict):
    """key -> float64 sum over the batches (a dict: read, pop and test keys as usual; other values, such
    as Python floats, may sit beside the sums)."""

    def __init__(self):
        super().__init__()
        self.buffer: torch.Tensor | None = None   # flat float64, the conversion of one product at a time

    def add(self, key, batch_sum: torch.Tensor) -> None:
        """self[key] += batch_sum in float64 (a new contiguous float64 tensor for a new key)."""
        if key in self:
            self[key].add_(self.float64(batch_sum))
        else:
            self[key] = torch.empty(batch_sum.shape, dtype=torch.float64, device=batch_sum.device).copy_(batch_sum)

    def float64(self, t: torch.Tensor) -> torch.Tensor:
        """t in float64: t itself if it already is, else a contiguous copy in the reused buffer (valid
        until the next call)."""
        if t.dtype == torch.float64:
            return t
        n = t.numel()
        if self.buffer is None or self.buffer.numel() < n or self.buffer.device != t.device:
            self.buffer = torch.empty(n, dtype=torch.float64, device=t.device)
        return self.buffer[:n].view(t.shape).copy_(t)
