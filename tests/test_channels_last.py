"""Growth on a channels-last network (methods/speed.py: conv weights and images NHWC) computes what it computes
on the NCHW one: the statistics agree within float32 round-off, a growth step at γ = 0 keeps the function and
leaves the grown weights channels-last, and a short TINY run ends at the same widths and accuracies."""

import copy
import json

import pytest
import torch

from benchmarks.runs.config import RunConfig, RunnerConfig
from benchmarks.runs.harness import run
from methods.growth.stats import collect
from methods.growth.step import apply
from methods.nets import NetSpec, build_network, parse_widths
from methods.tiny import TinyChooser, TinyConfig
from methods.train import TrainConfig

CL = torch.channels_last
NETS = [("resnet18", "1/32"), ("vgg", "1/32")]


def channels_last(t: torch.Tensor) -> bool:
    """Stored NHWC, and not also NCHW (a tensor with one channel or a 1x1 map is both)."""
    return t.is_contiguous(memory_format=CL) and not t.is_contiguous()


def nets(arch: str, widths: str, n: int = 24):
    """(NCHW model, channels-last copy with the same weights, NCHW images, the same images NHWC, labels)."""
    torch.manual_seed(0)
    model = build_network(NetSpec(arch, parse_widths(widths, arch), (3, 16, 16), 10))
    x, y = torch.randn(n, 3, 16, 16), torch.randint(0, 10, (n,))
    cl = copy.deepcopy(model).to(memory_format=CL)
    assert any(channels_last(p) for p in cl.parameters())
    return model, cl, x, x.contiguous(memory_format=CL), y


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


@pytest.mark.parametrize("arch,widths", NETS)
@pytest.mark.parametrize("fan_out", ["full", "centre"])
@pytest.mark.parametrize("norms", ["train", "eval"])
def test_statistics_of_a_channels_last_model_equal_the_nchw_ones(arch, widths, fan_out, norms):
    model, cl, x, x_cl, y = nets(arch, widths)
    ref, _, _ = collect(model, model.growable_pairs(), x, y, fan_out=fan_out, norms=norms, batch_size=16)
    got, _, _ = collect(cl, cl.growable_pairs(), x_cl, y, fan_out=fan_out, norms=norms, batch_size=16)
    for name, r in ref.items():
        g = got[name]
        for key in ("S1", "M1", "S2", "M2", "C"):
            assert rel_err(getattr(g, key), getattr(r, key)) < 1e-5, (name, key)
        assert abs(g.gsq - r.gsq) <= 1e-5 * r.gsq


@pytest.mark.parametrize("arch,widths", NETS)
def test_a_growth_step_at_zero_amplitude_keeps_a_channels_last_function_and_format(arch, widths):
    _, cl, _, x_cl, y = nets(arch, widths, n=32)
    cl.eval()
    with torch.no_grad():
        before = cl(x_cl)
    pairs = cl.growable_pairs()
    st, _, _ = collect(cl, pairs, x_cl, y)
    chooser = TinyChooser(TinyConfig(move_existing=True))
    props = [chooser.propose(p, st[p.name], 2, torch.Generator()) for p in pairs]   # before any pair grows
    props = [q for q in props if q is not None]
    assert len(props) >= len(pairs) - 1
    for prop in props:
        apply(prop, 0.0)   # γ = 0: zero fan-in, fan-out and move (padded where a neighbour grew: VGG)
        weights = [w for w in (prop.pair.first.weight, prop.pair.second.weight) if w.dim() == 4]
        assert all(channels_last(w) for w in weights), prop.pair.name
    with torch.no_grad():
        after = cl(x_cl)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)


def tiny_run(tmp_path, channels_last: bool) -> tuple[dict, list[dict]]:
    """(summary, growth events) of a short TINY run."""
    config = RunConfig(method="tiny", dataset="synthetic-image", arch="resnet18", widths=(1,) * 8, seed=0,
                       train=TrainConfig(epochs=1, batch_size=32, lr=0.01),
                       options={"target": "2,2,3,3,3,3,4,4", "growth_steps": 3, "grow_every": 0.25,
                                "min_samples": 32, "max_samples": 32, "line_search_samples": 64, "after_samples": 0})
    out = tmp_path / str(channels_last)
    runner = RunnerConfig(out=str(out), device="cpu", wandb="disabled", channels_last=channels_last)
    summary = run(config, runner)[0]
    history = [json.loads(line) for line in next(out.rglob("history.jsonl")).read_text().splitlines()]
    return summary, [e for e in history if e["kind"] == "growth"]


def test_a_tiny_run_channels_last_ends_where_the_nchw_run_ends(tmp_path):
    (nhwc, grown_nhwc), (nchw, grown_nchw) = tiny_run(tmp_path, True), tiny_run(tmp_path, False)
    assert nhwc["widths"] == nchw["widths"]
    # The first growth step, before any SGD step: the same choices, losses equal within round-off.
    first = lambda events: [e for e in events if e["growth_step"] == 0]
    assert first(grown_nhwc), "the run made no growth step"
    assert [(e["layer"], e["added"]) for e in first(grown_nhwc)] == \
        [(e["layer"], e["added"]) for e in first(grown_nchw)]
    for a, b in zip(first(grown_nhwc), first(grown_nchw), strict=True):
        assert a["gamma"] == pytest.approx(b["gamma"], rel=1e-5)   # the line search starts from λ: continuous
        # The new neurons solve against S1 and S2 of a width-1 net, which agree only within ~1e-5 (the statistics
        # test above); over step 0's 8 growths the running loss moves 4e-6 to 1.1e-5 apart by machine, against
        # decreases of 3e-5 to 3e-3 per growth and 8e-3 in all.
        assert a["loss_after"] == pytest.approx(b["loss_after"], rel=1e-4)
        assert a["lambdas"][0] == pytest.approx(b["lambdas"][0], rel=1e-2)
    # float32 round-off (~1e-7) grows through 3 line searches and 8 SGD steps to ~1e-3 of the loss (a fixed
    # net alone ends 1e-3 apart). The accuracies are not compared: after 8 steps the net is at chance, its
    # predictions turn on logits equal within that round-off.
    assert nhwc["test_loss"] == pytest.approx(nchw["test_loss"], rel=1e-2)
