"""Networks whose hidden widths can grow: MLP, VGG-style CNN, CIFAR ResNet-18."""

from methods.nets.growable import GrowablePair, add_units, keep_units
from methods.nets.registry import ARCHS, DEFAULT_WIDTHS, STANDARD_WIDTHS, NetSpec, build_network, parse_widths

__all__ = ["ARCHS", "DEFAULT_WIDTHS", "STANDARD_WIDTHS", "GrowablePair", "NetSpec", "add_units", "keep_units",
           "build_network", "parse_widths"]
