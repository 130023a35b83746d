"""Method registry: names map to factories (classes or functions), never to built instances."""

from benchmarks.errors import UserError

METHODS = {}   # canonical name -> factory(**options) -> Method
ALIASES = {}   # alias -> canonical name


def register(name: str, *aliases: str):
    def deco(factory):
        METHODS[name] = factory
        ALIASES.update({a: name for a in aliases})
        return factory
    return deco


def canonical_name(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in METHODS:
        valid = ", ".join([*METHODS, *(f"{a} (= {c})" for a, c in ALIASES.items())])
        raise UserError(f"unknown method '{name}'; choose from: {valid}")
    return name


def make_method(name: str, **options):
    factory = METHODS[canonical_name(name)]
    known = getattr(factory, "OPTIONS", ())
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise UserError(f"method '{name}' has no option {', '.join(unknown)}; "
                        f"its options: {', '.join(known) or 'none'}")
    try:
        return factory(**options)
    except (TypeError, ValueError) as e:  # a value of the wrong kind
        raise UserError(f"method '{name}': {e}") from None
