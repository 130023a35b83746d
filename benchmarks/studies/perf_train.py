"""`perf` part (d) train: images per second of the project's Trainer (methods.train) against the textbook PyTorch
loop, on the same network and the same batches, beside the machine's float32 matmul rate.

Configurations (methods.speed.Speed), float32: eager NCHW; channels-last (weights and the stored images NHWC, as
a run has them); compiled (channels-last + torch.compile of the loss, forward and backward, for both loops
alike); on CUDA also bf16 (compiled, the forward under bf16 autocast: the Trainer's CUDA default). The plain loop
is model(x), F.cross_entropy, zero_grad, backward, torch.optim.SGD step with momentum 0.9. The Trainer is set to
compute the same updates (timm's non-Nesterov "momentum" SGD, no weight decay, a constant LR; tests/test_perf.py
checks the parameters agree), so the two differ only in what the Trainer's train_epoch does around the step:
FLOPs bookkeeping, the clock section, tqdm, the loss summed on the device. (The cosine schedule it runs with by
default costs ~2 µs a step: timm's step_update, measured apart.)

Each case builds one network (seed 0) and `batches` random batches. Per configuration the Trainer trains on a Data
of exactly those batches (Batches: in order; each step timed from inside train_epoch, as the time between two
batch requests) and the plain loop steps through the same ones. First a warm-up epoch of each (its first step
compiles: warmup_s, the warm-up epoch's time beyond its steps at the median, is the compile time), then `repeats`
timed epochs of each, interleaved so that a change of the machine's load hits both alike; ms per step are medians
over all timed steps. Training GFLOP/s = 3 x 2 x MACs per image (methods.nets.cost) x images/s.
"""

import copy
import statistics
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.studies.common import Quiet
from datasets import Data
from methods.nets import NetSpec, build_network, parse_widths
from methods.nets.cost import TRAIN_FLOPS_PER_FORWARD, count_macs
from methods.speed import Speed
from methods.train import TrainConfig, Trainer

CLASSES = 10
LR, MOMENTUM = 0.05, 0.9
# float32 throughout, both loops; on CUDA also "bf16": the Trainer's default there (bf16 autocast), compiled.
CONFIGS = {"eager": Speed(channels_last=False, compile=False, autocast=False),
           "channels_last": Speed(channels_last=True, compile=False, autocast=False),
           "compiled": Speed(channels_last=True, compile=True, autocast=False),
           "bf16": Speed(channels_last=True, compile=True, autocast=True)}
MATMUL_N, QUICK_MATMUL_N = 2048, 256   # square float32 torch.mm side


@dataclass(frozen=True)
class TrainCase:
    arch: str
    widths: str                         # as on the command line: "128,128" or "1/64"
    batch: int                          # images per step
    batches: int                        # steps per epoch (each a different batch)
    side: int = 32                      # conv nets: random 3 x side x side images; the MLP: 1 x 28 x 28
    configs: tuple[str, ...] = tuple(CONFIGS)   # "bf16" on CUDA only

    @property
    def shape(self) -> tuple[int, ...]:
        return (1, 28, 28) if self.arch == "mlp" else (3, self.side, self.side)

    @property
    def label(self) -> str:
        return f"{self.arch} {self.widths}, batch {self.batch} x {'x'.join(map(str, self.shape))}"


# ResNet-18 and VGG at 1/4 take batch 64: at 256 a step takes seconds on a 2-core CPU and the part tens of minutes.
# 4 batches a conv net: single steps of ResNet-18 1/64 vary by ±20% on a 2-core CPU, medians of 12 by a few %.
CASES = [TrainCase("mlp", "128,128", 256, 20), TrainCase("vgg", "1/64", 256, 4), TrainCase("vgg", "1/4", 64, 4),
         TrainCase("resnet18", "1/64", 256, 4), TrainCase("resnet18", "1/4", 64, 4)]
# --quick: tiny shapes; only the MLP compiles (a conv net's compilation takes ~30 s whatever its size)
QUICK_CASES = [TrainCase("mlp", "16,16", 8, 2),
               TrainCase("resnet18", "1/64", 4, 2, side=16, configs=("eager", "channels_last"))]


@dataclass
class Batches(Data):
    """A Data whose training epoch is its training samples in order, in batches of the Trainer's batch size (no
    shuffle, no augmentation): the Trainer sees exactly the plain loop's batches. `stamps` gets the time of every
    batch request, the device synchronised first: their differences are the Trainer's steps, as train_epoch runs
    them."""

    stamps: list[float] = field(default_factory=list)

    def train_batches(self, batch_size: int, generator: torch.Generator):
        sync = torch.cuda.synchronize if self.y_train.is_cuda else (lambda: None)
        for start in range(0, len(self.y_train), batch_size):
            sync()
            self.stamps.append(time.perf_counter())
            yield self.x_train[start:start + batch_size], self.y_train[start:start + batch_size]
        sync()
        self.stamps.append(time.perf_counter())


def batches(x: torch.Tensor, y: torch.Tensor) -> Batches:
    return Batches("perf-batches", x, y, x[:1], y[:1], CLASSES)   # the test set is never used


def train_config(batch: int) -> TrainConfig:
    """The Trainer's settings under which it computes the plain loop's updates."""
    return TrainConfig(epochs=1, batch_size=batch, optimizer="momentum", lr=LR, momentum=MOMENTUM,
                       weight_decay=0.0, scheduler="none", train_eval_samples=1)


class Plain:
    """The textbook PyTorch training loop, in `speed`'s memory format and precision (on CUDA, the forward under
    bf16 autocast, the loss in float32) and, with speed.compile, its loss compiled as the Trainer's is
    (torch.compile of a function doing forward + loss; backward through AOTAutograd)."""

    def __init__(self, model: nn.Module, speed: Speed):
        self.model, self.speed, self.format = model.train(), speed, speed.layout(model)
        model.to(memory_format=self.format)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        self.loss = torch.compile(self.eager_loss) if speed.compile else self.eager_loss

    def eager_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self.speed.autocast_context(x.device):
            logits = self.model(x)
        return F.cross_entropy(logits.float(), y)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        loss = self.loss(x.to(memory_format=self.format), y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


def plain_epoch(plain: Plain, x: torch.Tensor, y: torch.Tensor, batch: int, sync) -> list[float]:
    """Seconds of each of the plain loop's steps over x, y in batches (as Batches yields them)."""
    seconds = []
    for start in range(0, len(y), batch):
        sync()
        t0 = time.perf_counter()
        plain.step(x[start:start + batch], y[start:start + batch])
        sync()
        seconds.append(time.perf_counter() - t0)
    return seconds


def trainer_epoch(trainer: Trainer) -> list[float]:
    """Seconds of each of the Trainer's steps in one train_epoch."""
    stamps = trainer.data.stamps
    stamps.clear()
    trainer.train_epoch()
    return [b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True)]


def measure_config(model: nn.Module, x, y, case: TrainCase, speed: Speed, repeats: int, sync, cold: bool) -> dict:
    """{"plain": {"step_s": median seconds per step, "warmup_s": the warm-up epoch's seconds beyond its steps at
    the median (compilation, when compiled)}, "trainer": the same} for one configuration."""
    x = x.contiguous(memory_format=speed.layout(model))   # stored as a run stores its images (harness): no copy a step
    plain = Plain(copy.deepcopy(model), speed)
    # After the plain loop's construction: the Trainer's refresh resets torch.compile's caches, then both compile.
    trainer = Trainer(copy.deepcopy(model), batches(x, y), train_config(case.batch), 0, Quiet(), speed=speed)
    epochs = {"plain": lambda: plain_epoch(plain, x, y, case.batch, sync), "trainer": lambda: trainer_epoch(trainer)}
    # cold: compilation without torch.compile's caches, else the second loop would reuse the first's graph (the
    # same network) and an earlier process's; each new shape a growth step makes is compiled cold.
    with torch.compiler.config.patch(force_disable_caches=cold):
        warm = {name: sum(epoch()) for name, epoch in epochs.items()}
    steps = {name: [] for name in epochs}
    for _ in range(repeats):
        for name, epoch in epochs.items():
            steps[name] += epoch()
    trainer.close()
    out = {}
    for name, s in steps.items():
        median = statistics.median(s)
        out[name] = {"step_s": median, "warmup_s": warm[name] - case.batches * median}
    return out


def matmul_rate(n: int, repeats: int, device, sync) -> float:
    """GFLOP/s of a float32 n x n torch.mm: 2n³ FLOPs, median of `repeats` after a warm-up."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    seconds = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        a @ b
        sync()
        seconds.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(seconds) / 1e9


def train_case(case: TrainCase, repeats: int, device, sync, cold: bool = True) -> dict:
    torch.manual_seed(0)
    model = build_network(NetSpec(case.arch, parse_widths(case.widths, case.arch), case.shape, CLASSES)).to(device)
    x = torch.randn(case.batches * case.batch, *case.shape, device=device)
    y = torch.randint(0, CLASSES, (len(x),), device=device)
    flops_per_image = TRAIN_FLOPS_PER_FORWARD * 2 * count_macs(model, case.shape)
    configs = {}
    for name in (n for n in case.configs if n != "bf16" or device.type == "cuda"):
        measured = measure_config(model, x, y, case, CONFIGS[name], repeats, sync, cold)
        for m in measured.values():
            m["images_per_s"] = case.batch / m["step_s"]
            m["gflop_per_s"] = flops_per_image * m["images_per_s"] / 1e9
        configs[name] = {**measured, "trainer_vs_plain": measured["trainer"]["images_per_s"]
                         / measured["plain"]["images_per_s"]}
    base = configs["eager"]["plain"]["images_per_s"]   # the plain NCHW eager loop
    for c in configs.values():
        c["vs_plain_eager"] = {name: c[name]["images_per_s"] / base for name in ("plain", "trainer")}
    return {"case": case.label, "arch": case.arch, "widths": case.widths, "batch": case.batch,
            "train_gflop_per_image": flops_per_image / 1e9, "configs": configs}


def measure(repeats: int, quick: bool, device, sync) -> dict:
    """The part's result: the matmul rate, then every case in every configuration."""
    rate = matmul_rate(QUICK_MATMUL_N if quick else MATMUL_N, max(repeats, 3), device, sync)
    return {"matmul_gflop_per_s": rate, "matmul_n": QUICK_MATMUL_N if quick else MATMUL_N,
            "cases": [train_case(c, repeats, device, sync, cold=not quick) for c in (QUICK_CASES if quick else CASES)]}


def format_part(r: dict) -> list[str]:
    lines = [f"float32 matmul ({r['matmul_n']}²): {r['matmul_gflop_per_s']:.1f} GFLOP/s; ms per step (images/s), "
             "training GFLOP/s, x = speed against the plain NCHW eager loop, trainer/plain = images/s ratio",
             f"{'case':<38}{'config':<14}{'plain ms':>9}{'img/s':>8}{'GF/s':>7}{'x':>6}{'trainer ms':>11}"
             f"{'img/s':>8}{'GF/s':>7}{'x':>6}{'trainer/plain':>14}{'compile s p/t':>15}"]
    for case in r["cases"]:
        for name, c in case["configs"].items():
            p, t, x = c["plain"], c["trainer"], c["vs_plain_eager"]
            compiled = f"{p['warmup_s']:.1f}/{t['warmup_s']:.1f}" if CONFIGS[name].compile else ""
            lines.append(f"{case['case']:<38}{name:<14}{1e3 * p['step_s']:>9.1f}{p['images_per_s']:>8.0f}"
                         f"{p['gflop_per_s']:>7.1f}{x['plain']:>6.2f}{1e3 * t['step_s']:>11.1f}"
                         f"{t['images_per_s']:>8.0f}{t['gflop_per_s']:>7.1f}{x['trainer']:>6.2f}"
                         f"{c['trainer_vs_plain']:>14.2f}{compiled:>15}")
    worst = min(((c["trainer_vs_plain"], case["case"], name) for case in r["cases"]
                 for name, c in case["configs"].items()))
    lines.append("lowest trainer/plain: {:.2f} ({}, {})".format(*worst))
    return lines
