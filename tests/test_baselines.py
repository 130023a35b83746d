"""The baselines one by one, in float64 where it matters:

- GradMax: zero fan-in, so the function is unchanged at the step; fan-out = top right singular vectors
  of M2 at 0.5 x the mean norm of the existing fan-out; its fan-in learns under relu1, not under ReLU;
  back-to-back steps add new directions, not copies;
- random growth: the function-preserving variant preserves the function, "both" does not; new vectors
  at the existing mean norm; a bad variant is a one-line UserError;
- unstructured pruning removes exactly the weights torch.nn.utils.prune.global_unstructured would, and
  they stay zero through fine-tuning; effective MACs count non-zero weights;
- structured pruning really shrinks the widths: MACs equal the analytic count, the network is a
  network of those widths, and the least important units go;
- FS from a finished run takes its final widths, arch, dataset and training settings, and names it;
  a missing or unfinished run is a one-line UserError.
"""

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune as torch_prune

from benchmarks.errors import UserError
from benchmarks.runs.config import RunConfig, RunnerConfig
from benchmarks.runs.flags import run_config
from benchmarks.runs.harness import run
from methods import make_method
from methods.errors import ConfigError
from methods.gradmax import GradMaxChooser, GradMaxConfig
from methods.growth.layout import to_m2_space
from methods.growth.stats import collect
from methods.growth.step import apply
from methods.nets import NetSpec, build_network
from methods.nets.cost import count_macs, count_params
from methods.prune import GradientMasks, effective_macs, global_magnitude_masks, prunable
from methods.pruning_units import keep_widths, unit_importance
from methods.random_growth import RandomChooser, RandomConfig
from methods.train import TrainConfig

DT = torch.float64


def make_mlp(activation="relu1", widths=(6, 5), d_in=8, classes=4, seed=0):
    torch.manual_seed(seed)
    return build_network(NetSpec("mlp", widths, (d_in,), classes, activation=activation)).to(DT)


def make_data(n=256, d_in=8, classes=4, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=gen, dtype=DT)
    return x, (x @ torch.randn(d_in, classes, generator=gen, dtype=DT)).argmax(1)


def stats_of(model, x, y, index):
    pair = model.growable_pairs()[index]
    return pair, collect(model, [pair], x, y)[0][pair.name]


def outputs(model, x):
    with torch.no_grad():
        return model(x)


# ---------------------------------------------------------------------------------------------- GradMax
@pytest.mark.parametrize("index", [0, 1])
def test_gradmax_leaves_the_function_unchanged_and_follows_M2(index):
    model, (x, y) = make_mlp(), make_data()
    pair, st = stats_of(model, x, y, index)
    existing = pair.second.weight.detach().clone()
    before = outputs(model, x)
    p = GradMaxChooser(GradMaxConfig()).propose(pair, st, 3, torch.Generator())
    assert p.k == 3 and p.gamma == 1.0 and p.predicted == 0.0
    assert torch.count_nonzero(p.fan_in) == 0 and torch.count_nonzero(p.fan_in_bias) == 0
    # fan-out: the top-3 right singular vectors of M2 (up to sign), each at 0.5 x the mean column norm
    norms = p.fan_out.norm(dim=0)
    torch.testing.assert_close(norms, torch.full((3,), 0.5 * float(existing.norm(dim=0).mean()), dtype=DT))
    Vh = torch.linalg.svd(st.M2, full_matrices=False).Vh[:3]
    torch.testing.assert_close((Vh @ (p.fan_out / norms)).abs(), torch.eye(3, dtype=DT), atol=1e-10, rtol=0)
    assert p.score == pytest.approx(float((st.M2 @ p.fan_out).pow(2).sum()))
    apply(p, p.gamma)
    assert model.widths[index] == (6, 5)[index] + 3
    torch.testing.assert_close(outputs(model, x), before, rtol=1e-13, atol=1e-14)   # up to summation order


@pytest.mark.parametrize("activation,learns", [("relu1", True), ("relu", False)])
def test_gradmax_fan_in_learns_only_with_a_slope_at_zero(activation, learns):
    model, (x, y) = make_mlp(activation), make_data()
    pair, st = stats_of(model, x, y, 0)
    p = GradMaxChooser(GradMaxConfig()).propose(pair, st, 2, torch.Generator())
    apply(p, p.gamma)
    F.cross_entropy(model(x), y, reduction="sum").backward()
    grad = pair.first.weight.grad[-2:]                   # (2, d_in): the new fan-in's gradient
    assert (float(grad.norm()) > 1e-3) == learns
    if learns:   # the gradient is σ'(0)·M2 ω, per sample: n·(M2 ω)ᵀ without the bias row
        torch.testing.assert_close(grad, len(y) * (st.M2[:-1] @ p.fan_out).T)


def test_gradmax_back_to_back_steps_add_new_directions():
    model, (x, y) = make_mlp(), make_data()
    chooser = GradMaxChooser(GradMaxConfig())
    pair, st = stats_of(model, x, y, 0)
    first = chooser.propose(pair, st, 2, torch.Generator())
    apply(first, first.gamma)
    pair, st = stats_of(model, x, y, 0)   # function unchanged: the same M2
    second = chooser.propose(pair, st, 2, torch.Generator())
    overlap = (first.fan_out / first.fan_out.norm(dim=0)).T @ (second.fan_out / second.fan_out.norm(dim=0))
    assert float(overlap.abs().max()) < 1e-8   # orthogonal to the untrained units, not copies of them
    Vh = torch.linalg.svd(st.M2, full_matrices=False).Vh[2:4]   # the next two singular directions
    torch.testing.assert_close((Vh @ (second.fan_out / second.fan_out.norm(dim=0))).abs(), torch.eye(2, dtype=DT))


def test_gradmax_never_adds_more_units_than_the_rank_of_M2():
    model, (x, y) = make_mlp(widths=(6, 2)), make_data()
    pair, st = stats_of(model, x, y, 0)   # dout = 2: at most two directions
    assert GradMaxChooser(GradMaxConfig()).propose(pair, st, 5, torch.Generator()).k == 2


# --------------------------------------------------------------------------------------- random growth
@pytest.mark.parametrize("variant", ["zero_fan_out", "both"])
def test_random_growth_variants(variant):
    model, (x, _) = make_mlp("relu"), make_data()
    pair = model.growable_pairs()[0]
    w1, w2 = pair.first.weight.detach().clone(), pair.second.weight.detach().clone()
    before = outputs(model, x)
    p = RandomChooser(RandomConfig(variant=variant)).propose(pair, None, 4, torch.Generator().manual_seed(0))
    assert p.k == 4 and p.gamma == 1.0
    at_half_mean = lambda w, dim: torch.full((4,), 0.5 * float(w.norm(dim=dim).mean()), dtype=DT)
    torch.testing.assert_close(p.fan_in.norm(dim=1), at_half_mean(w1, 1))
    assert torch.count_nonzero(p.fan_in_bias) == 0
    if variant == "both":
        torch.testing.assert_close(p.fan_out.norm(dim=0), at_half_mean(w2, 0))
    else:
        assert torch.count_nonzero(p.fan_out) == 0
    apply(p, p.gamma)
    changed = float((outputs(model, x) - before).abs().max())
    assert (changed < 1e-13) == (variant == "zero_fan_out")


def test_random_growth_rejects_an_unknown_variant():
    with pytest.raises(ConfigError, match="variant='half' expects one of zero_fan_out, both"):
        make_method("random", variant="half")


# ------------------------------------------------------------------------------- unstructured pruning
def test_unstructured_masks_match_torch_global_unstructured():
    torch.manual_seed(0)
    model = build_network(NetSpec("vgg", (3, 4, 5, 4, 3, 4, 5, 4), (3, 8, 8), 10))
    oracle = copy.deepcopy(model)
    masks = global_magnitude_masks(prunable(model), 0.7)
    targets = [(m, "weight") for m in oracle.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=0.7)
    for mask, (module, _) in zip(masks, targets, strict=True):
        assert torch.equal(mask, module.weight_mask.bool())
    n = sum(m.numel() for m in masks)
    assert sum(int(m.sum()) for m in masks) == n - round(0.7 * n)


def test_pruned_weights_stay_zero_through_training():
    model, (x, y) = make_mlp("relu", widths=(16, 16)), make_data()
    masks = global_magnitude_masks(prunable(model), 0.6)
    held = GradientMasks()
    held.set(prunable(model), masks)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    for w, m in zip(prunable(model), masks, strict=True):
        assert torch.count_nonzero(w[~m]) == 0 and torch.count_nonzero(w[m]) == int(m.sum())
    held.remove()
    assert all(not w._backward_hooks for w in prunable(model))


@pytest.mark.parametrize("arch", ["mlp", "vgg", "resnet18"])
def test_effective_macs_count_nonzero_weights(arch):
    torch.manual_seed(0)
    widths = {"mlp": (8, 6), "vgg": (3, 4, 5, 4, 3, 4, 5, 4), "resnet18": (2, 3, 2, 3, 2, 2, 2, 2)}[arch]
    model = build_network(NetSpec(arch, widths, (3, 8, 8), 10))
    assert effective_macs(model, (3, 8, 8)) == count_macs(model, (3, 8, 8))   # dense: fvcore's count
    layer = prunable(model)[0]
    with torch.no_grad():
        layer[0].zero_()   # one output unit of the first layer: its weights times its positions
    positions = 1 if arch == "mlp" else 64
    assert effective_macs(model, (3, 8, 8)) == count_macs(model, (3, 8, 8)) - layer[0].numel() * positions


# --------------------------------------------------------------------------------- structured pruning
def vgg_macs(widths, size=8, classes=10, in_ch=3):
    """Analytic MACs of methods/nets/vgg.py: 3x3 'same' convs, a 2x2 pool after each stage, linear head."""
    total, i = 0, 0
    for n_convs in (1, 1, 2, 2, 2):
        for _ in range(n_convs):
            total += size * size * in_ch * widths[i] * 9
            in_ch, i = widths[i], i + 1
        size = size // 2 if size >= 2 else size
    return total + in_ch * classes


@pytest.mark.parametrize("arch", ["mlp", "vgg"])
def test_structured_pruning_macs_equal_the_analytic_count(arch):
    torch.manual_seed(0)
    widths = (12, 10) if arch == "mlp" else (4, 8, 8, 8, 8, 8, 8, 8)
    shape = (3, 8, 8)
    model = build_network(NetSpec(arch, widths, shape, 10))
    target = [max(1, round(w * 0.5)) for w in widths]
    keep_widths(model, target)
    assert list(model.widths) == target == [p.width for p in model.growable_pairs()]
    analytic = (192 * 6 + 6 * 5 + 5 * 10) if arch == "mlp" else vgg_macs(target)
    assert count_macs(model, shape) == effective_macs(model, shape) == analytic
    assert count_params(model) == count_params(build_network(NetSpec(arch, tuple(target), shape, 10)))
    model.train()
    F.cross_entropy(model(torch.randn(4, *shape)), torch.tensor([0, 1, 2, 3])).backward()   # still trains


def test_structured_pruning_keeps_the_important_units_and_their_weights():
    torch.manual_seed(0)
    model = build_network(NetSpec("resnet18", (6,) * 8, (3, 8, 8), 10))
    pair = model.growable_pairs()[3]
    with torch.no_grad():
        pair.first.weight[[1, 4]] *= 0.01      # make units 1 and 4 the least important
        pair.between[0].weight[[1, 4]] *= 0.01
        pair.second.weight[:, [1, 4]] *= 0.01
    assert set(torch.topk(unit_importance(pair), 2, largest=False).indices.tolist()) == {1, 4}
    kept_in, kept_bn = pair.first.weight[[0, 2, 3, 5]].clone(), pair.between[0].running_var[[0, 2, 3, 5]].clone()
    keep_widths(model, [6, 6, 6, 4, 6, 6, 6, 6])
    assert model.widths == (6, 6, 6, 4, 6, 6, 6, 6)
    assert torch.equal(pair.first.weight, kept_in) and torch.equal(pair.between[0].running_var, kept_bn)
    assert pair.second.in_channels == pair.second.weight.shape[1] == pair.between[0].num_features == 4


# ------------------------------------------------------------------------------------------------- FS
RUNNER = dict(device="cpu", wandb="disabled")


def grown_run(out):
    config = RunConfig(method="random", dataset="synthetic", arch="mlp", widths=(1, 1), seed=0,
                       train=TrainConfig(epochs=2, batch_size=64, lr=0.07),
                       options={"grow_every": 0.5, "growth_steps": 3, "target": "4,4"})
    return run(config, RunnerConfig(out=str(out), **RUNNER))


def test_fs_takes_the_final_structure_of_a_finished_run(tmp_path):
    summary, record, _ = grown_run(tmp_path)
    assert summary["widths"] != [1, 1]
    config = run_config(["--method", "fs", "--from-run", record.id, "--seed", "3"], str(tmp_path))
    assert (config.dataset, config.arch, list(config.widths)) == ("synthetic", "mlp", summary["widths"])
    assert (config.train.epochs, config.train.batch_size, config.train.lr) == (2, 64, 0.07)
    assert config.options == {"from_run": record.id} and config.seed == 3
    fs, fs_record, _ = run(config, RunnerConfig(out=str(tmp_path), **RUNNER))
    assert fs["from_run"] == record.id and fs["widths"] == summary["widths"] and fs["params"] == summary["params"]
    assert fs["growth_flops"] == 0
    assert json.loads((fs_record.path / "config.json").read_text())["options"]["from_run"] == record.id


@pytest.mark.parametrize("state", ["missing", "unfinished"])
def test_fs_from_a_missing_or_unfinished_run_is_a_user_error(tmp_path, state):
    if state == "unfinished":
        (tmp_path / "half").mkdir()
        (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(UserError, match=f"is {state}") as e:
        run_config(["--method", "fs", "--from-run", "nope" if state == "missing" else "half"], str(tmp_path))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("argv,message", [
    (["--method", "fs"], "give --from-run RUN_ID or --widths"),
    (["--method", "fs", "--from-run", "x", "--widths", "4"], "not both"),
    (["--method", "fixed", "--from-run", "x"], "--from-run is an option of --method fs"),
])
def test_fs_flags_that_do_not_fit(tmp_path, argv, message):
    with pytest.raises(UserError, match=message):
        run_config(argv, str(tmp_path))


def test_fs_with_explicit_widths(tmp_path):
    config = run_config(["--method", "fs", "--widths", "7,3", "--dataset", "synthetic"], str(tmp_path))
    assert config.widths == (7, 3) and config.options == {} and config.train.epochs == 3   # MNIST-family default


def resnet_block(fan_out: str):
    """The first pair of a ResNet-18 at widths 3 (conv1 -> BN -> relu1 -> conv2, eval mode, float64), 16
    random 8x8 images and the pair's statistics with the given conv fan-out."""
    torch.manual_seed(0)
    model = build_network(NetSpec("resnet18", (3,) * 8, (3, 8, 8), 10, activation="relu1")).to(DT).eval()
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 3, 8, 8, generator=gen, dtype=DT), torch.randint(0, 10, (16,), generator=gen)
    pair = model.growable_pairs()[0]
    return model, x, y, pair, collect(model, [pair], x, y, fan_out=fan_out)[0][pair.name]


@pytest.mark.parametrize("fan_out", ["centre", "full"])
def test_gradmax_on_a_conv_pair_is_the_gradient_of_its_fan_in(fan_out):
    """ResNet block (conv1 -> BN -> relu1 -> conv2), eval mode: the function is unchanged, and the new
    fan-in's gradient is the BN scale times n·M2 ω in the fan-in's layout, for both fan-out layouts."""
    model, x, y, pair, st = resnet_block(fan_out)
    before = outputs(model, x)
    p = GradMaxChooser(GradMaxConfig()).propose(pair, st, 2, torch.Generator())
    assert p.fan_out.shape == (64, 2, 3, 3)
    assert (torch.count_nonzero(p.fan_out[:, :, 0, 0]) == 0) == (fan_out == "centre")
    apply(p, p.gamma)
    torch.testing.assert_close(outputs(model, x), before, rtol=1e-12, atol=1e-13)
    F.cross_entropy(model(x), y, reduction="sum").backward()
    bn = pair.between[0]
    scale = float(bn.weight.detach()[-1] / (bn.running_var[-1] + bn.eps).sqrt())
    omega = p.fan_out[:, :, 1, 1] if fan_out == "centre" else p.fan_out.transpose(0, 1).flatten(1).T
    expected = (len(y) * scale * st.M2 @ omega).T.reshape(2, 64, 3, 3)
    torch.testing.assert_close(pair.first.weight.grad[-2:], expected)
    Vh = torch.linalg.svd(st.M2, full_matrices=False).Vh[:2]   # and ω are M2's top right singular vectors
    torch.testing.assert_close((Vh @ (omega / omega.norm(dim=0))).abs(), torch.eye(2, dtype=DT), atol=1e-10, rtol=0)


@pytest.mark.parametrize("fan_out", ["centre", "full"])
def test_gradmax_the_tiny_authors_variant_has_fan_out_norm_1e_3(fan_out):
    """-o fan_out_norm=1e-3: each new fan-out vector, in M2's layout, has norm 1e-3 and is M2's singular
    vector; the fan-in is zero, so the function is unchanged."""
    model, x, y, pair, st = resnet_block(fan_out)
    before = outputs(model, x)
    p = GradMaxChooser(GradMaxConfig(fan_out_norm=1e-3)).propose(pair, st, 2, torch.Generator())
    omega = to_m2_space(p.fan_out, st.M2.shape[1])
    torch.testing.assert_close(omega.norm(dim=0), torch.full((2,), 1e-3, dtype=DT))
    Vh = torch.linalg.svd(st.M2, full_matrices=False).Vh[:2]
    torch.testing.assert_close((Vh @ omega / 1e-3).abs(), torch.eye(2, dtype=DT), atol=1e-10, rtol=0)
    apply(p, p.gamma)
    torch.testing.assert_close(outputs(model, x), before, rtol=1e-12, atol=1e-13)
