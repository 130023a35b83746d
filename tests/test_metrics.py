"""methods.nets.cost and benchmarks.runs.timing: MACs per sample (fvcore) against hand counts and torch's
own FLOP counter, side effects of counting, parameter counts, and the wall-clock sections."""

import time

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import benchmarks  # noqa: F401  (puts this repository's `datasets` ahead of HuggingFace's)
from benchmarks.runs import timing
from benchmarks.runs.timing import Clock
from methods.nets import NetSpec, add_units, build_network
from methods.nets.cost import count_macs, count_params

CIFAR, MNIST = (3, 32, 32), (1, 28, 28)
VGG_16TH = (4, 8, 16, 16, 32, 32, 32, 32)             # VGG-11 widths / 16
RESNET_64TH = (1, 1, 2, 2, 4, 4, 8, 8)                 # ResNet-18 inner widths / 64
RESNET_STANDARD = (64, 64, 128, 128, 256, 256, 512, 512)


def net(arch, widths, input_shape, classes=10):
    torch.manual_seed(0)
    return build_network(NetSpec(arch, tuple(widths), input_shape, classes))


def torch_macs(model: nn.Module, input_shape) -> float:
    """torch.utils.flop_counter's count of one sample's forward pass, in MACs (it counts 2 FLOPs per MAC)."""
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    return counter.get_total_flops() / 2


def conv_macs(c_in, c_out, k, h_out, w_out):
    return c_out * c_in * k * k * h_out * w_out


def vgg_macs(widths, input_shape, classes=10):
    """VGG-11 ('A'): stages of 1, 1, 2, 2, 2 3x3 same-padding convs, a 2x2 max-pool after each stage
    (skipped once the map is 1x1), global average pool, one linear layer."""
    c, size, total, i = input_shape[0], input_shape[1], 0, 0
    for n_convs in (1, 1, 2, 2, 2):
        for _ in range(n_convs):
            total += conv_macs(c, widths[i], 3, size, size)
            c, i = widths[i], i + 1
        if size >= 2:
            size //= 2
    return total + c * classes


def resnet18_macs(inner, input_shape, classes=10):
    """CIFAR ResNet-18: 3x3 stem to 64 channels at full resolution; 4 stages of 2 BasicBlocks with 64, 128,
    256, 512 channels, the first block of stages 2-4 at stride 2 (3x3, padding 1) with a 1x1 projection
    shortcut; global average pool; linear classifier."""
    c, size = input_shape[0], input_shape[1]
    total = conv_macs(c, 64, 3, size, size)
    c = 64
    for stage, out in enumerate((64, 128, 256, 512)):
        for j in range(2):
            stride = 2 if stage > 0 and j == 0 else 1
            size_out = (size - 1) // stride + 1     # 3x3 conv, padding 1
            w = inner[2 * stage + j]
            total += conv_macs(c, w, 3, size_out, size_out) + conv_macs(w, out, 3, size_out, size_out)
            if stride != 1 or c != out:
                total += conv_macs(c, out, 1, size_out, size_out)
            c, size = out, size_out
    return total + 512 * classes


# ---- MACs ---------------------------------------------------------------------------------------------


def test_mlp_784_128_10():
    model = net("mlp", (128,), MNIST)
    assert count_macs(model, MNIST) == 784 * 128 + 128 * 10 == 101_632


def test_mlp_two_hidden_layers():
    model = net("mlp", (64, 32), MNIST)
    assert count_macs(model, MNIST) == 784 * 64 + 64 * 32 + 32 * 10


def test_mlp_on_synthetic_shape():
    model = net("mlp", (8,), (1, 4, 4), classes=4)
    assert count_macs(model, (1, 4, 4)) == 16 * 8 + 8 * 4 == 160


def test_vgg_sixteenth_width_cifar_by_hand():
    # (C_in, C_out, H_out): the 3x3 convs at 32, 16, 8, 8, 4, 4, 2, 2 pixels, then the 32 -> 10 classifier.
    layers = [(3, 4, 32), (4, 8, 16), (8, 16, 8), (16, 16, 8), (16, 32, 4), (32, 32, 4), (32, 32, 2), (32, 32, 2)]
    by_hand = sum(conv_macs(cin, cout, 3, h, h) for cin, cout, h in layers) + 32 * 10
    assert by_hand == vgg_macs(VGG_16TH, CIFAR) == 700_736
    assert count_macs(net("vgg", VGG_16TH, CIFAR), CIFAR) == by_hand


def test_vgg_on_mnist_shape_by_hand():
    # 28 -> pool 14 -> pool 7 -> pool 3 -> pool 1 -> (1x1: no pool)
    layers = [(1, 4, 28), (4, 8, 14), (8, 16, 7), (16, 16, 7), (16, 32, 3), (32, 32, 3), (32, 32, 1), (32, 32, 1)]
    by_hand = sum(conv_macs(cin, cout, 3, h, h) for cin, cout, h in layers) + 32 * 10
    assert by_hand == vgg_macs(VGG_16TH, MNIST)
    assert count_macs(net("vgg", VGG_16TH, MNIST), MNIST) == by_hand


@pytest.mark.parametrize("input_shape", [CIFAR, MNIST])
def test_resnet18_64th_width_matches_formula(input_shape):
    assert count_macs(net("resnet18", RESNET_64TH, input_shape), input_shape) == resnet18_macs(RESNET_64TH, input_shape)


def test_resnet18_standard_width():
    expected = resnet18_macs(RESNET_STANDARD, CIFAR)
    assert expected == 555_422_720  # the "555.42M FLOPs" (MACs) pruning papers quote for CIFAR ResNet-18
    assert count_macs(net("resnet18", RESNET_STANDARD, CIFAR), CIFAR) == expected


@pytest.mark.parametrize("arch,widths,input_shape", [
    ("mlp", (128,), MNIST), ("mlp", (64, 32), MNIST), ("mlp", (8,), (1, 4, 4)),
    ("vgg", VGG_16TH, CIFAR), ("vgg", VGG_16TH, MNIST), ("vgg", (3, 5, 7, 9, 11, 13, 15, 17), CIFAR),
    ("resnet18", RESNET_64TH, CIFAR), ("resnet18", RESNET_64TH, MNIST), ("resnet18", (3, 1, 5, 2, 7, 3, 9, 4), CIFAR),
])
def test_count_macs_equals_torch_flop_counter(arch, widths, input_shape):
    model = net(arch, widths, input_shape)
    assert count_macs(model, input_shape) == torch_macs(model, input_shape)


@pytest.mark.parametrize("arch,widths", [("mlp", (6, 5)), ("vgg", VGG_16TH), ("resnet18", RESNET_64TH)])
def test_count_macs_follows_growth_and_training_continues(arch, widths):
    model = net(arch, widths, CIFAR).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(4, *CIFAR), torch.randint(0, 10, (4,))
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    count_macs(model, CIFAR)   # a count before growth must not pin the old shapes
    grown = list(widths)
    for i, pair in enumerate(model.growable_pairs()):
        k = i % 2 + 1
        fan_out = torch.randn(pair.second.weight.shape[0], k, *pair.second.weight.shape[2:])
        add_units(pair, torch.randn(k, *pair.first.weight.shape[1:]), fan_out, optimizer=opt)
        grown[i] += k
    assert model.widths == tuple(grown)
    expected = {"mlp": lambda: 3072 * 7 + 7 * 7 + 7 * 10, "vgg": lambda: vgg_macs(grown, CIFAR),
                "resnet18": lambda: resnet18_macs(grown, CIFAR)}[arch]()
    assert count_macs(model, CIFAR) == expected == torch_macs(model, CIFAR)
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


# ---- side effects -------------------------------------------------------------------------------------


def bn_state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


@pytest.mark.parametrize("arch,widths", [("vgg", VGG_16TH), ("resnet18", RESNET_64TH)])
@pytest.mark.parametrize("training", [True, False])
def test_count_macs_keeps_batchnorm_stats_and_mode(arch, widths, training):
    model = net(arch, widths, CIFAR)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):  # non-zero statistics: a forward in train mode would move them
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    model.train(training)
    before = bn_state(model)
    params = [p.detach().clone() for p in model.parameters()]
    count_macs(model, CIFAR)
    after = bn_state(model)
    assert after.keys() == before.keys() and after
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params, strict=True))
    assert model.training is training
    assert all(m.training is training for m in model.modules())


def test_count_macs_restores_mixed_module_modes():
    model = net("resnet18", RESNET_64TH, CIFAR).train()
    model.stem[1].eval()   # a frozen BatchNorm inside a training model
    count_macs(model, CIFAR)
    assert model.training and not model.stem[1].training


def test_count_macs_leaves_no_grad_state():
    model = net("mlp", (6,), CIFAR)
    count_macs(model, CIFAR)
    assert all(p.grad is None for p in model.parameters())
    assert torch.is_grad_enabled()


# ---- parameter counts ---------------------------------------------------------------------------------


def test_count_params():
    model = net("mlp", (6, 5), MNIST)
    assert count_params(model) == 784 * 6 + 6 + 6 * 5 + 5 + 5 * 10 + 10
    with torch.no_grad():
        model.layers[0].weight[:2].zero_()     # 2 x 784 zeros
        model.layers[1].bias.zero_()           # 5 zeros
    assert count_params(model, nonzero=True) == count_params(model) - 2 * 784 - 5


# ---- clock --------------------------------------------------------------------------------------------


class FakeTime:
    def __init__(self, *ticks):
        self.ticks = list(ticks)

    def __call__(self):
        return self.ticks.pop(0)


def test_clock_sections_accumulate(monkeypatch):
    fake = FakeTime(100.0, 101.0, 103.5, 110.0, 112.0, 120.0, 120.25, 130.0)
    monkeypatch.setattr(timing.time, "perf_counter", fake)
    clock = Clock(torch.device("cpu"))                    # start = 100
    with clock.section("train"):                          # 101 -> 103.5
        pass
    with clock.section("train"):                          # 110 -> 112
        pass
    with pytest.raises(RuntimeError), clock.section("eval"):  # 120 -> 120.25, counted although it raised
        raise RuntimeError("boom")
    assert clock.seconds["train"] == pytest.approx(4.5)
    assert clock.seconds["eval"] == pytest.approx(0.25)
    assert clock.seconds.get("growth", 0.0) == 0.0
    assert clock.total() == pytest.approx(30.0)           # 130 - 100
    assert not fake.ticks


def test_clock_real_time():
    clock = Clock("cpu")
    for _ in range(2):
        with clock.section("growth"):
            time.sleep(0.02)
    with clock.section("eval"):
        pass
    assert 0.04 <= clock.seconds["growth"] < 1.0
    assert clock.seconds["eval"] < clock.seconds["growth"]
    assert clock.total() >= clock.seconds["growth"] + clock.seconds["eval"]
