"""What `nas` searches: the growable widths of the arch, in groups, within a budget of inference MACs.

A group is the widths that share one searched value: each hidden width of an MLP alone; on a convnet the
widths whose standard widths are equal and adjacent, i.e. a stage (ResNet-18: 4 stages of 2 blocks; VGG:
64 | 128 | 256 x 2 | 512 x 4), so a trial picks 4 channel counts, not 8, and a stage keeps one width as the
standard nets do. Each group's width is sampled uniformly (on a log scale most trials would be far below the
budget, where the best network seldom is) between min_width and the smaller of
max_scale times its reference width (the widths the budget is stated by) and the largest width that fits the
budget with every other group at min_width (the box around every network within the budget): without the first
bound an MLP's last hidden layer could take thousands of units beside a first layer of 8 (on MNIST at the
MACs of 128,128: up to 6,208). A sample over the budget is scaled down, all its groups by one factor (shape
kept), to the largest widths that fit: every trial is within the budget, none is wasted, and the sampler sees
its own parameters unchanged.
"""

from collections.abc import Callable

from methods.errors import ConfigError
from methods.growth.config import GrowthConfig
from methods.growth.schedule import target_widths
from methods.nets import STANDARD_WIDTHS, NetSpec, build_network
from methods.nets.cost import count_macs


def stage_groups(arch: str, n: int) -> list[list[int]]:
    """Indices of the widths each searched value sets: runs of equal adjacent standard widths, else one each."""
    ref = STANDARD_WIDTHS.get(arch)
    if ref is None:
        return [[i] for i in range(n)]
    groups: list[list[int]] = []
    for i, w in enumerate(ref):
        if groups and ref[groups[-1][0]] == w:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def largest(fits: Callable[[int], bool], lo: int) -> int:
    """The largest integer x >= lo with fits(x), for fits true at lo and monotone (true up to x, false above)."""
    hi = lo + 1
    while fits(hi):
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


class Cost:
    """Inference MACs per sample of the network whose groups have widths g. Exactly quadratic in g (every
    convolution and matrix product multiplies at most two widths, the rest are constants), so it is interpolated
    once from (n+1)(n+2)/2 counts by fvcore around `base` (Newton's forward differences, in integers) and then
    costs nothing to evaluate: the budget projection below asks it a few hundred times."""

    def __init__(self, spec: NetSpec, groups: list[list[int]], base: int):
        self.spec, self.groups, self.base = spec, groups, base
        n = len(groups)
        unit = [tuple(int(i == k) for i in range(n)) for k in range(n)]
        f = lambda *steps: self.count([base + sum(e[k] for e in steps) for k in range(n)])   # at b + Σ steps
        self.f0 = f()
        self.first = [f(e) - self.f0 for e in unit]   # f(b + e_i) - f(b)
        # second differences: f(b+e_i+e_j) - f(b+e_i) - f(b+e_j) + f(b); for i = j twice the coefficient of d_i²
        self.second = [[f(unit[i], unit[j]) - self.first[i] - self.first[j] - self.f0 for j in range(n)]
                       for i in range(n)]

    def widths(self, g) -> tuple[int, ...]:
        """The per-pair widths (the network's order) of group widths g."""
        out = [0] * sum(map(len, self.groups))
        for value, members in zip(g, self.groups, strict=True):
            for i in members:
                out[i] = int(value)
        return tuple(out)

    def count(self, g) -> int:
        """MACs counted by fvcore, as the harness counts them (slow: builds and traces the network)."""
        return count_macs(build_network(self.spec.with_widths(self.widths(g))), self.spec.input_shape)

    def __call__(self, g) -> int:
        d = [v - self.base for v in g]
        n = len(d)
        total = self.f0 + sum(self.first[i] * d[i] + self.second[i][i] * (d[i] * (d[i] - 1) // 2) for i in range(n))
        return total + sum(self.second[i][j] * d[i] * d[j] for i in range(n) for j in range(i + 1, n))


def reference_widths(spec: NetSpec, target: str, max_macs: int) -> tuple[int, ...]:
    """The widths the budget is stated by: `target`, the standard shape scaled up to `max_macs` (the growth
    methods' rule, from widths 1), or the run's widths."""
    if not target and not max_macs:
        return spec.widths
    return target_widths(GrowthConfig(target=target, max_macs=max_macs), spec.with_widths((1,) * len(spec.widths)))


class WidthSpace:
    """The searched widths of `spec`'s arch within `budget` MACs per sample, each group's at least `min_width`."""

    def __init__(self, spec: NetSpec, budget: int, min_width: int, ceiling: tuple[int, ...] | None = None):
        """ceiling: per-pair widths no group exceeds (a group: its members' largest); None: the budget alone."""
        self.budget, self.min_width = budget, min_width
        self.groups = stage_groups(spec.arch, len(spec.widths))
        self.cost = Cost(spec, self.groups, min_width)
        n = len(self.groups)
        smallest = self.cost([min_width] * n)
        if smallest > budget:
            raise ConfigError(f"min_width={min_width}: the smallest network ({smallest:,} MACs) is over the budget "
                              f"of {budget:,} MACs; lower min_width or raise the budget")
        alone = lambda k, v: [v if i == k else min_width for i in range(n)]
        box = [largest(lambda v, k=k: self.cost(alone(k, v)) <= budget, min_width) for k in range(n)]
        cap = [max(min_width, *(ceiling[i] for i in members)) if ceiling else b for members, b in zip(self.groups, box,
                                                                                                     strict=True)]
        self.high = list(map(min, box, cap))

    def names(self) -> list[str]:
        return [f"width_{k}" for k in range(len(self.groups))]

    def suggest(self, trial) -> tuple[int, ...]:
        """A trial's per-pair widths: its group widths (Optuna parameters width_0, ...), scaled into the budget."""
        g = [trial.suggest_int(name, self.min_width, hi) for name, hi in zip(self.names(), self.high, strict=True)]
        return self.cost.widths(self.within(g))

    def within(self, g: list[int]) -> list[int]:
        """g, or when over the budget g scaled by the largest m / max(g) that fits (each group at least min_width)."""
        if self.cost(g) <= self.budget:
            return g
        top = max(g)
        scaled = lambda m: [max(self.min_width, v * m // top) for v in g]
        return scaled(largest(lambda m: self.cost(scaled(m)) <= self.budget, self.min_width))

    def params(self, widths: tuple[int, ...]) -> dict[str, int]:
        """Optuna parameters for per-pair widths (each group's first width, clipped to its range): the reference
        network as the study's first trial."""
        return {name: min(max(widths[members[0]], self.min_width), hi)
                for name, members, hi in zip(self.names(), self.groups, self.high, strict=True)}
