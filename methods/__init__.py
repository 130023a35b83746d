"""Methods behind one interface (methods.interface) and one registry (methods.registry).

Importing this package registers every method.
"""

from methods import fixed, fs, gradmax, prune, random_growth, tiny  # noqa: F401  (registers)
from methods.registry import ALIASES, METHODS, canonical_name, make_method

__all__ = ["ALIASES", "METHODS", "canonical_name", "make_method"]
