"""Methods behind one interface (methods.interface) and one registry (methods.registry).

The built-in methods are imported on the first registry lookup, not here: `import methods` is cheap.
"""

from methods.registry import (
    aliases,
    canonical_name,
    make_method,
    method_defaults,
    names_text,
    option_specs,
    parse_options,
    register,
    registered,
)

__all__ = ["aliases", "canonical_name", "make_method", "method_defaults", "names_text", "option_specs",
           "parse_options", "register", "registered"]
