"""Typed method options. A method declares its options as a frozen dataclass whose fields carry a type,
a default and a one-line help (`opt`); values given as text (`-o KEY=VALUE` on the command line) are
converted by the field's type and checked before any work, values given from Python are checked the
same way, and an option the method does not have is refused.

Types understood: bool (true/false, yes/no, on/off, 1/0), int (an integer, not 1.5), float (finite:
nan and inf are refused), str, typing.Literal[...] (one of the listed values), and any of these
`| None` (the text `none` gives None). Ranges beyond that are the dataclass's own `__post_init__`,
whose ValueError reaches the user as a ConfigError naming the method.
"""

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field

from methods.errors import ConfigError

TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def opt(default, help: str):
    """A config field with its default and a one-line help (shown by `python -m benchmarks list --method`)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class OptionSpec:
    name: str
    type: str        # as `list --method` shows it: float, bool, one of a|b, int or none, ...
    default: object
    help: str


def _parts(tp) -> tuple[object, bool]:
    """(the type without None, whether None is allowed)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def type_text(tp) -> str:
    base, optional = _parts(tp)
    text = ("one of " + "|".join(map(str, typing.get_args(base))) if typing.get_origin(base) is typing.Literal
            else base.__name__)
    return f"{text} or none" if optional else text


def specs(config: type) -> list[OptionSpec]:
    """Every option of a config dataclass, in declaration order."""
    hints = typing.get_type_hints(config)
    return [OptionSpec(f.name, type_text(hints[f.name]), f.default, f.metadata.get("help", ""))
            for f in dataclasses.fields(config)]


def _convert_text(base, text: str):
    low = text.strip().lower()
    if base is bool:
        if low in TRUE or low in FALSE:
            return low in TRUE
        raise ValueError("expects true or false")
    if base is int:
        try:
            return int(low)
        except ValueError:
            raise ValueError("expects an integer") from None
    if base is float:
        try:
            return float(low)
        except ValueError:
            raise ValueError("expects a number") from None
    return text


def convert(tp, value):
    """`value` (text from the command line, or a Python value) as type `tp`; ValueError says what is wrong."""
    base, optional = _parts(tp)
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null"))):
        return None
    literal = typing.get_origin(base) is typing.Literal
    if isinstance(value, str) and not literal:
        value = _convert_text(base, value)
    if literal:
        if value not in typing.get_args(base):
            raise ValueError(f"expects one of {', '.join(map(str, typing.get_args(base)))}")
    elif base is float and isinstance(value, int | float) and not isinstance(value, bool):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError("expects a finite number")
    elif base is not str and not isinstance(value, base) or isinstance(value, bool) and base is not bool:
        raise ValueError(f"expects {type_text(tp)}")
    elif base is str and not isinstance(value, str):
        raise ValueError("expects text")
    return value


class Checked:
    """Base of option and settings dataclasses: on construction every field is checked against its type (and
    converted: text by its type, an int given for a float to float), from the command line or from Python
    alike. `what` names the fields in messages ("option", "training setting")."""

    what = "option"

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            try:
                object.__setattr__(self, f.name, convert(hints[f.name], value))
            except ValueError as e:
                raise ValueError(f"{self.what} {f.name}={value!r} {e}") from None


def parse(config: type | None, options: dict, method: str) -> dict:
    """The options converted to their fields' types (the canonical form a run's config.json records), or a
    ConfigError naming the first unknown or bad one."""
    names = [f.name for f in dataclasses.fields(config)] if config else []
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ConfigError(f"method '{method}' has no option {', '.join(unknown)}; its options: "
                          f"{', '.join(names) or 'none'} (python -m benchmarks list --method {method})")
    hints = typing.get_type_hints(config) if config else {}
    out = {}
    for name, value in options.items():
        try:
            out[name] = recorded(convert(hints[name], value))
        except ValueError as e:
            raise ConfigError(f"method '{method}': option {name}={value!r} {e}") from None
    return out


def recorded(value):
    """How a run's config.json records an option: a whole-number float as an integer, so that
    `grow_every=1`, `grow_every=1.0` and Python's 1 give one run id (the dataclass still gets a float)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def build(config: type, options: dict, method: str):
    """The config dataclass from options (parsed first); its own range checks as a ConfigError."""
    values = parse(config, options, method)
    try:
        return config(**values)
    except ValueError as e:   # __post_init__'s range checks
        raise ConfigError(f"method '{method}': {e}") from None
