"""Wall-clock and CPU time of a run, split into named sections."""

import time
from collections import defaultdict
from contextlib import contextmanager

import torch


class Clock:
    """Wall-clock split into named sections (train / growth / eval), CUDA-synchronised at the edges; and
    the process's CPU time, which other processes on a shared machine do not inflate."""

    def __init__(self, device: torch.device):
        self.sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
        self.seconds: dict[str, float] = defaultdict(float)
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()

    @contextmanager
    def section(self, name: str):
        self.sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.seconds[name] += time.perf_counter() - t0

    def total(self) -> float:
        self.sync()
        return time.perf_counter() - self.start

    def cpu_total(self) -> float:
        """CPU seconds of this process since the clock started, all threads summed."""
        self.sync()
        return time.process_time() - self.cpu_start
