"""What a loader is asked for, and the wording its errors share (kept apart so loaders need not import the registry)."""

from dataclasses import dataclass
from pathlib import Path

import torch

DATA_DIR_ENV = "GROWBENCH_DATA_DIR"
POINT_AT_COPY = f"point --data-dir (or {DATA_DIR_ENV}) at a folder that has them"


@dataclass(frozen=True)
class LoadRequest:
    name: str  # registry name as given; npz:<path> carries its path here
    data_dir: Path  # already resolved: argument > $GROWBENCH_DATA_DIR > <repo>/data
    device: torch.device
    download: bool  # may torchvision try to download missing files


def last_line(exc: BaseException) -> str:
    """The most specific line of a possibly multi-line message (torchvision's download errors list every mirror)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
