"""methods.nets: the growable networks (MLP, VGG-11, CIFAR ResNet-18), width parsing, and add_units.

Expected values are computed here from the architectures' definitions (parameter formulas, layer lists),
not read back from the networks under test.
"""

import pytest
import torch
from torch import nn

import benchmarks  # noqa: F401  (puts this repository's `datasets` ahead of HuggingFace's)
from methods.errors import ConfigError
from methods.nets import STANDARD_WIDTHS, NetSpec, add_units, build_network, parse_widths

RESNET_STANDARD = (64, 64, 128, 128, 256, 256, 512, 512)
VGG_STANDARD = (64, 128, 256, 256, 512, 512, 512, 512)
CIFAR, MNIST = (3, 32, 32), (1, 28, 28)

# Small widths so that every test here runs in milliseconds.
SMALL = {"mlp": (6, 5), "vgg": (2, 4, 8, 8, 16, 16, 16, 16), "resnet18": (1, 1, 2, 2, 4, 4, 8, 8)}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def resnet18_params(widths, in_ch=3, classes=10) -> int:
    """Parameter count of the CIFAR ResNet-18 with inner widths `widths`, from its definition."""
    outer, strides = (64, 128, 256, 512), (1, 2, 2, 2)
    total = in_ch * 64 * 9 + 2 * 64  # stem conv (no bias) + BN
    c = 64
    for stage in range(4):
        for j in range(2):
            inner, out, stride = widths[2 * stage + j], outer[stage], strides[stage] if j == 0 else 1
            total += c * inner * 9 + 2 * inner + inner * out * 9 + 2 * out
            if stride != 1 or c != out:
                total += c * out + 2 * out  # 1x1 projection + BN
            c = out
    return total + 512 * classes + classes


def randomize_bn(model: nn.Module, gen: torch.Generator) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters, so that misplaced entries show."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen))
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.randn(n, generator=gen))
                m.bias.copy_(torch.randn(n, generator=gen))


def new_units(pair, k: int, gen: torch.Generator, zero_fan_out: bool = True):
    fan_in = torch.randn(k, *pair.first.weight.shape[1:], generator=gen)
    out_shape = (pair.second.weight.shape[0], k, *pair.second.weight.shape[2:])
    fan_out = torch.zeros(out_shape) if zero_fan_out else torch.randn(out_shape, generator=gen)
    bias = torch.randn(k, generator=gen) if pair.first.bias is not None else None
    return fan_in, fan_out, bias


def small_net(arch: str, input_shape=CIFAR, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = build_network(NetSpec(arch, SMALL[arch], input_shape, 10))
    randomize_bn(model, torch.Generator().manual_seed(seed + 1))
    return model


# ---- architectures ------------------------------------------------------------------------------------


def test_resnet18_standard_widths_is_the_standard_cifar_resnet18():
    model = build_network(NetSpec("resnet18", RESNET_STANDARD, CIFAR, 10))
    assert n_params(model) == 11_173_962
    assert resnet18_params(RESNET_STANDARD) == 11_173_962  # the formula below is checked against the known count
    assert model.widths == RESNET_STANDARD
    assert tuple(STANDARD_WIDTHS["resnet18"]) == RESNET_STANDARD


@pytest.mark.parametrize("widths", [(1, 1, 2, 2, 4, 4, 8, 8), (3, 5, 7, 9, 11, 13, 15, 17)])
@pytest.mark.parametrize("input_shape", [CIFAR, MNIST])
def test_resnet18_params_match_formula_at_other_widths(widths, input_shape):
    model = build_network(NetSpec("resnet18", widths, input_shape, 10))
    assert n_params(model) == resnet18_params(widths, in_ch=input_shape[0])


def test_vgg_and_mlp_params_match_formula():
    vgg = build_network(NetSpec("vgg", SMALL["vgg"], CIFAR, 10))
    expected, c = 0, 3
    for w in SMALL["vgg"]:
        expected += c * w * 9 + 2 * w  # conv (no bias) + BN
        c = w
    assert n_params(vgg) == expected + c * 10 + 10
    mlp = build_network(NetSpec("mlp", (128, 64), MNIST, 10))
    assert n_params(mlp) == 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10


@pytest.mark.parametrize("arch,widths", [("mlp", (128, 64)), ("vgg", VGG_STANDARD), ("resnet18", RESNET_STANDARD),
                                         ("vgg", SMALL["vgg"]), ("resnet18", SMALL["resnet18"])])
@pytest.mark.parametrize("input_shape", [CIFAR, MNIST])
def test_forward_shapes(arch, widths, input_shape):
    torch.manual_seed(0)
    model = build_network(NetSpec(arch, widths, input_shape, 7)).eval()
    with torch.no_grad():
        out = model(torch.randn(3, *input_shape))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()
    assert model.widths == widths


# ---- parse_widths -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,arch,expected", [
    ("1/64", "resnet18", (1, 1, 2, 2, 4, 4, 8, 8)),
    ("1/4", "resnet18", (16, 16, 32, 32, 64, 64, 128, 128)),
    ("1/1", "resnet18", RESNET_STANDARD),
    ("1/4", "vgg", (16, 32, 64, 64, 128, 128, 128, 128)),
    ("1/1000", "vgg", (1,) * 8),   # at least one unit each
    ("128,64", "mlp", (128, 64)),
    (" 8 , 4 ", "mlp", (8, 4)),
    ("300", "mlp", (300,)),
    ("1,2,3,4,5,6,7,8", "vgg", (1, 2, 3, 4, 5, 6, 7, 8)),
])
def test_parse_widths(text, arch, expected):
    assert parse_widths(text, arch) == expected


@pytest.mark.parametrize("text,arch", [
    ("0", "mlp"), ("-3", "mlp"), ("abc", "mlp"), ("128,0", "mlp"), ("8,,4", "mlp"), ("1.5", "mlp"), ("", "mlp"),
    ("1/0", "resnet18"), ("0/4", "vgg"), ("2/1", "vgg"), ("-1/4", "vgg"), ("a/b", "vgg"),
    ("1/4", "mlp"),                         # a fraction needs standard widths
    ("64,64", "resnet18"), ("64", "vgg"),   # wrong count
    ("1,2,3,4,5,6,7,8,9", "resnet18"),
    ("8", "nosuch"),                        # unknown arch
])
def test_parse_widths_rejects(text, arch):
    with pytest.raises(ConfigError) as excinfo:
        parse_widths(text, arch)
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize("arch,widths", [("mlp", ()), ("mlp", (4, 0)), ("resnet18", (1,) * 7), ("vgg", (1,) * 9)])
def test_build_network_rejects_bad_widths(arch, widths):
    with pytest.raises(ConfigError):
        build_network(NetSpec(arch, widths, CIFAR, 10))


# ---- growable pairs -----------------------------------------------------------------------------------


def out_size(layer):
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def in_size(layer):
    return layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels


@pytest.mark.parametrize("arch", ["mlp", "vgg", "resnet18"])
def test_growable_pairs_agree_with_widths(arch):
    model = small_net(arch)
    pairs = model.growable_pairs()
    assert len(pairs) == len(model.widths) == len(SMALL[arch])
    assert len({p.name for p in pairs}) == len(pairs)
    modules = set(map(id, model.modules()))
    for pair, width in zip(pairs, SMALL[arch], strict=True):
        assert id(pair.first) in modules and id(pair.second) in modules
        assert pair.width == width
        assert pair.first.weight.shape[0] == out_size(pair.first) == width
        assert pair.second.weight.shape[1] == in_size(pair.second) == width
        for bn in pair.between:
            assert bn.num_features == bn.weight.shape[0] == bn.running_mean.shape[0] == width
        assert pair.activation == "relu"
    if arch == "resnet18":  # the inner width of each BasicBlock; the residual stream is never a pair
        assert [p.first.stride[0] for p in pairs] == [1, 1, 2, 1, 2, 1, 2, 1]
        assert [p.second.out_channels for p in pairs] == [64, 64, 128, 128, 256, 256, 512, 512]


def test_growable_pairs_are_the_networks_own_modules_in_forward_order():
    """The pair's `first` produces the hidden units that `second` consumes (checked with forward hooks)."""
    model = small_net("mlp", MNIST).eval()
    seen = {}
    hooks = [p.second.register_forward_pre_hook(lambda m, args, n=p.name: seen.__setitem__(n, args[0]))
             for p in model.growable_pairs()]
    hooks += [p.first.register_forward_hook(lambda m, args, out, n=p.name: seen.__setitem__(n + "/pre", out))
              for p in model.growable_pairs()]
    with torch.no_grad():
        model(torch.randn(2, *MNIST))
    for h in hooks:
        h.remove()
    for p in model.growable_pairs():
        torch.testing.assert_close(seen[p.name], torch.relu(seen[p.name + "/pre"]))


# ---- add_units ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["mlp", "vgg", "resnet18"])
@pytest.mark.parametrize("input_shape", [CIFAR, MNIST])
def test_add_units_with_zero_fan_out_keeps_the_function(arch, input_shape):
    model = small_net(arch, input_shape).eval()
    x = torch.randn(4, *input_shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        before = model(x)
    gen = torch.Generator().manual_seed(7)
    for pair in model.growable_pairs():
        fan_in, fan_out, bias = new_units(pair, 3, gen)
        add_units(pair, fan_in, fan_out, fan_in_bias=bias)
    assert model.widths == tuple(w + 3 for w in SMALL[arch])
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["mlp", "vgg", "resnet18"])
def test_add_units_with_nonzero_fan_out_changes_the_function(arch):
    """Guards the test above: the new units are wired into the forward pass."""
    model = small_net(arch).eval()
    x = torch.randn(4, *CIFAR, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        before = model(x)
    gen = torch.Generator().manual_seed(7)
    pair = model.growable_pairs()[-1]
    fan_in, fan_out, bias = new_units(pair, 2, gen, zero_fan_out=False)
    add_units(pair, fan_in, fan_out, bias)
    with torch.no_grad():
        assert (model(x) - before).abs().max() > 1e-3


@pytest.mark.parametrize("arch", ["mlp", "vgg", "resnet18"])
def test_add_units_grows_shapes_consistently(arch):
    model = small_net(arch)
    gen = torch.Generator().manual_seed(3)
    index = 1
    pair = model.growable_pairs()[index]
    w = pair.width
    old_first, old_second = pair.first.weight.detach().clone(), pair.second.weight.detach().clone()
    old_bn = [(bn.weight.detach().clone(), bn.bias.detach().clone(), bn.running_mean.clone(), bn.running_var.clone())
              for bn in pair.between]
    fan_in, fan_out, bias = new_units(pair, 4, gen, zero_fan_out=False)
    add_units(pair, fan_in, fan_out, bias)

    expected = list(SMALL[arch])
    expected[index] += 4
    assert model.widths == tuple(expected)
    pair = model.growable_pairs()[index]
    assert pair.width == w + 4
    assert out_size(pair.first) == pair.first.weight.shape[0] == w + 4
    assert in_size(pair.second) == pair.second.weight.shape[1] == w + 4
    assert pair.first.weight.shape[1:] == old_first.shape[1:]
    assert pair.second.weight.shape[0] == old_second.shape[0]
    torch.testing.assert_close(pair.first.weight[:w], old_first, rtol=0, atol=0)
    torch.testing.assert_close(pair.first.weight[w:], fan_in, rtol=0, atol=0)
    torch.testing.assert_close(pair.second.weight[:, :w], old_second, rtol=0, atol=0)
    torch.testing.assert_close(pair.second.weight[:, w:], fan_out, rtol=0, atol=0)
    if pair.first.bias is not None:
        assert pair.first.bias.shape == (w + 4,)
        torch.testing.assert_close(pair.first.bias[w:], bias, rtol=0, atol=0)
    assert len(pair.between) == (0 if arch == "mlp" else 1)
    for bn, (gamma, beta, mean, var) in zip(pair.between, old_bn, strict=True):
        assert bn.num_features == w + 4
        for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
            assert t.shape == (w + 4,)
        assert torch.equal(bn.weight[:w], gamma) and torch.equal(bn.bias[:w], beta)
        assert torch.equal(bn.running_mean[:w], mean) and torch.equal(bn.running_var[:w], var)
        assert torch.equal(bn.weight[w:], torch.ones(4)) and torch.equal(bn.bias[w:], torch.zeros(4))
        assert torch.equal(bn.running_mean[w:], torch.zeros(4)) and torch.equal(bn.running_var[w:], torch.ones(4))
        assert "running_mean" in dict(bn.named_buffers())   # still a buffer (state_dict, .to(device))
    # The other pairs are untouched.
    assert [p.width for i, p in enumerate(model.growable_pairs()) if i != index] == \
        [x for i, x in enumerate(SMALL[arch]) if i != index]
    # Training mode still runs forward and backward at the new widths.
    model.train()
    model(torch.randn(2, *CIFAR)).sum().backward()
    assert pair.first.weight.grad.shape == pair.first.weight.shape


def test_add_units_rejects_mismatched_unit_counts():
    model = small_net("mlp")
    pair = model.growable_pairs()[0]
    with pytest.raises(ValueError):
        add_units(pair, torch.zeros(3, pair.first.weight.shape[1]), torch.zeros(pair.second.weight.shape[0], 2))


@pytest.mark.parametrize("arch", ["mlp", "vgg", "resnet18"])
def test_add_units_keeps_parameter_objects(arch):
    model = small_net(arch)
    before = dict(model.named_parameters())
    gen = torch.Generator().manual_seed(0)
    for pair in model.growable_pairs():
        fan_in, fan_out, bias = new_units(pair, 2, gen)
        add_units(pair, fan_in, fan_out, bias)
    after = dict(model.named_parameters())
    assert list(after) == list(before)
    assert all(after[name] is before[name] for name in before)
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in after.values())


@pytest.mark.parametrize("arch", ["mlp", "vgg", "resnet18"])
def test_add_units_pads_sgd_momentum_with_zeros(arch):
    model = small_net(arch).train()
    lr, momentum = 0.1, 0.9
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(4, *CIFAR, generator=gen), torch.randint(0, 10, (4,), generator=gen)

    def step():
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    pair = model.growable_pairs()[-1]
    w = pair.width
    tracked = [pair.first.weight, pair.second.weight] + [t for bn in pair.between for t in (bn.weight, bn.bias)]
    dims = [0, 1] + [0, 0] * len(pair.between)
    old_bufs = [opt.state[p]["momentum_buffer"].clone() for p in tracked]
    fan_in, fan_out, bias = new_units(pair, 3, gen, zero_fan_out=False)
    add_units(pair, fan_in, fan_out, bias, optimizer=opt)

    for p, dim, old in zip(tracked, dims, old_bufs, strict=True):
        buf = opt.state[p]["momentum_buffer"]
        assert buf.shape == p.shape
        assert torch.equal(buf.narrow(dim, 0, w), old)
        assert torch.equal(buf.narrow(dim, w, 3), torch.zeros_like(buf.narrow(dim, w, 3)))

    # A further step runs and uses the padded buffer: p <- p - lr * (momentum * buf + grad) (torch's SGD).
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    expected = [p.detach() - lr * (momentum * opt.state[p]["momentum_buffer"] + p.grad) for p in tracked]
    opt.step()
    for p, e in zip(tracked, expected, strict=True):
        torch.testing.assert_close(p.detach(), e)
    step()  # and one more, with every buffer at its new shape


def test_add_units_pads_adam_moments():
    model = small_net("vgg")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(2, *CIFAR)).square().mean().backward()
    opt.step()
    pair = model.growable_pairs()[0]
    w = pair.width
    add_units(pair, *new_units(pair, 2, torch.Generator().manual_seed(0))[:2], optimizer=opt)
    state = opt.state[pair.second.weight]
    for key in ("exp_avg", "exp_avg_sq"):
        assert state[key].shape == pair.second.weight.shape
        assert not state[key][:, w:].any()
    assert state["step"].shape == ()  # a scalar is not padded
    opt.zero_grad()
    model(torch.randn(2, *CIFAR)).square().mean().backward()
    opt.step()


@pytest.mark.parametrize("arch", ["mlp", "vgg", "resnet18"])
def test_rebuild_from_grown_widths_matches(arch):
    model = small_net(arch).eval()
    gen = torch.Generator().manual_seed(2)
    for i, pair in enumerate(model.growable_pairs()):
        fan_in, fan_out, bias = new_units(pair, i % 3 + 1, gen, zero_fan_out=False)
        add_units(pair, fan_in, fan_out, bias)
    rebuilt = build_network(NetSpec(arch, model.widths, CIFAR, 10)).eval()
    assert rebuilt.widths == model.widths
    assert n_params(rebuilt) == n_params(model)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert repr(rebuilt) == repr(model)  # module attributes (in/out sizes, num_features) follow the growth
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(3, *CIFAR)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))
