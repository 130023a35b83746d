"""Architecture registry: name -> factory. A network is rebuilt from a NetSpec (FS and pruning need it)."""

from dataclasses import dataclass, replace
from fractions import Fraction

from torch import nn

from methods.errors import ConfigError
from methods.nets import resnet, vgg
from methods.nets.mlp import MLP

# Widths the literature calls "full width"; `1/4` on the CLI means a quarter of these.
STANDARD_WIDTHS = {"vgg": vgg.STANDARD_WIDTHS, "resnet18": resnet.STANDARD_WIDTHS}
DEFAULT_WIDTHS = {"mlp": (128, 128), **STANDARD_WIDTHS}


@dataclass(frozen=True)
class NetSpec:
    arch: str                        # a key of ARCHS
    widths: tuple[int, ...]          # the growable widths, in the order of growable_pairs()
    input_shape: tuple[int, ...]     # one sample, e.g. (1, 28, 28)
    num_classes: int
    activation: str = "relu"         # σ of the growable widths (methods/nets/activations.py)

    def with_widths(self, widths) -> "NetSpec":
        return replace(self, widths=tuple(int(w) for w in widths))


ARCHS = {
    "mlp": lambda s: MLP(s.input_shape, s.widths, s.num_classes, s.activation),
    "vgg": lambda s: vgg.VGG(s.input_shape, s.widths, s.num_classes, s.activation),
    "resnet18": lambda s: resnet.ResNet18(s.input_shape, s.widths, s.num_classes, s.activation),
}


def build_network(spec: NetSpec) -> nn.Module:
    check_widths(spec.arch, spec.widths)
    return ARCHS[spec.arch](spec)


def check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ConfigError(f"unknown arch '{arch}'; choose from: {', '.join(ARCHS)}")


def check_widths(arch: str, widths: tuple[int, ...]) -> None:
    check_arch(arch)
    if not widths or any(w < 1 for w in widths):
        raise ConfigError(f"widths must be positive integers, got {','.join(map(str, widths)) or 'nothing'}")
    need = len(STANDARD_WIDTHS.get(arch, widths))
    if len(widths) != need:
        raise ConfigError(f"arch '{arch}' takes {need} widths, got {len(widths)}")


def parse_widths(text: str, arch: str) -> tuple[int, ...]:
    """'128,64' -> (128, 64); '1/4' -> a quarter of the arch's standard widths (at least 1 each)."""
    check_arch(arch)
    text = text.strip()
    if "/" in text and "," not in text:
        if arch not in STANDARD_WIDTHS:
            raise ConfigError(f"a width fraction like '{text}' needs an arch with standard widths: "
                            f"{', '.join(STANDARD_WIDTHS)}")
        try:
            frac = Fraction(text)
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"bad width fraction '{text}'; use e.g. 1/4") from None
        if not 0 < frac <= 1:
            raise ConfigError(f"width fraction must be in (0, 1], got {text}")
        widths = tuple(max(1, int(w * frac)) for w in STANDARD_WIDTHS[arch])
    else:
        try:
            widths = tuple(int(w) for w in text.split(","))
        except ValueError:
            raise ConfigError(f"bad widths '{text}'; use comma-separated positive integers like 128,64 "
                            "or a fraction of the standard widths like 1/4") from None
    check_widths(arch, widths)
    return widths
