"""Method registry: names map to factories (classes), never to built instances.

A factory is a class with
- `Config`: a frozen dataclass of its options (methods/options.py), or None for a method without options;
- `__init__(self, cfg)`: cfg an instance of Config (no argument when Config is None);
- `run(self, task, tracker) -> Result` (methods/interface.py);
- optionally `DEFAULTS`: arch -> what a run of this method gets without flags on that arch
  (`widths`, training settings such as `epochs`, and `options`), over the dataset's recipe.

The built-in methods register themselves when their modules are imported, which happens on the first
lookup, not on `import methods` (so a command that needs no method does not pay for torch). Methods
from outside this package register with one call, `register("name")(Factory)`, or through the entry
point group `growbench.methods` (`name = "module:Factory"` in the plugin's pyproject.toml), which every
process of a sweep loads by itself.
"""

import importlib
import importlib.metadata

from methods import options as opts
from methods.errors import ConfigError

ENTRY_POINTS = "growbench.methods"
BUILTIN = ("methods.fixed", "methods.fs", "methods.tiny", "methods.gradmax", "methods.random_growth", "methods.prune",
           "methods.nas.method")

_METHODS: dict[str, type] = {}   # canonical name -> factory
_ALIASES: dict[str, str] = {}    # alias -> canonical name
_state = "unloaded"   # -> "loading" (built-ins and plugins being imported) -> "loaded"


def register(name: str, *aliases: str):
    """Class decorator (or one call, `register("mine")(Mine)`): `name` and its aliases run this factory.
    A name already taken by another factory is refused (ConfigError), built-in or not."""
    def deco(factory):
        if _state == "unloaded" and factory.__module__ not in BUILTIN:
            _load()   # the built-ins first, so that a taken name is refused now, not overwritten later
        for n in (name, *aliases):
            taken = _METHODS.get(_ALIASES.get(n, n))
            if taken is not None and taken is not factory:
                raise ConfigError(f"method name '{n}' is taken by {taken.__module__}.{taken.__qualname__}; "
                                  "register under another name")
        _METHODS[name] = factory
        _ALIASES.update({a: name for a in aliases})
        return factory
    return deco


def _load() -> None:
    """Import the built-in methods and the entry-point plugins, once (again after a plugin failed, so that
    every lookup reports the failure, not a registry missing the plugins after it)."""
    global _state
    if _state != "unloaded":
        return
    _state = "loading"
    try:
        for module in BUILTIN:
            importlib.import_module(module)
        for ep in importlib.metadata.entry_points(group=ENTRY_POINTS):
            try:
                factory = ep.load()
                if _METHODS.get(ep.name) is not factory:   # a plugin module may register itself on import
                    register(ep.name)(factory)
            except Exception as e:
                raise ConfigError(f"method plugin '{ep.name}' ({ep.value}) failed to load: "
                                  f"{type(e).__name__}: {e}") from e
    except BaseException:
        _state = "unloaded"
        raise
    _state = "loaded"


def registered() -> dict[str, type]:
    """Canonical name -> factory: the built-ins in BUILTIN's order (whichever was imported first), then
    plugins as they registered."""
    _load()
    order = {module: i for i, module in enumerate(BUILTIN)}
    return {name: _METHODS[name] for name in sorted(_METHODS, key=lambda n: order.get(_METHODS[n].__module__,
                                                                                       len(BUILTIN)))}


def aliases() -> dict[str, str]:
    _load()
    return dict(_ALIASES)


def names_text() -> str:
    """'fixed, fs, tiny, ..., ours (= tiny)': every name a run accepts."""
    return ", ".join([*registered(), *(f"{a} (= {c})" for a, c in aliases().items())])


def canonical_name(name: str) -> str:
    _load()
    name = _ALIASES.get(name, name)
    if name not in _METHODS:
        raise ConfigError(f"unknown method '{name}'; choose from: {names_text()}")
    return name


def config_class(name: str) -> type | None:
    return getattr(_METHODS[canonical_name(name)], "Config", None)


def option_specs(name: str) -> list[opts.OptionSpec]:
    config = config_class(name)
    return opts.specs(config) if config else []


def parse_options(name: str, options: dict) -> dict:
    """The options typed and checked (unknown ones refused): the form a run's config.json records."""
    name = canonical_name(name)
    config = config_class(name)
    if config is None:
        return opts.parse(None, options, name)
    return {k: opts.recorded(v) for k, v in vars(opts.build(config, options, name)).items() if k in options}


def method_defaults(name: str, arch: str) -> dict:
    """What a run of `name` on `arch` gets without flags (the factory's DEFAULTS for that arch, or {})."""
    return dict(getattr(_METHODS[canonical_name(name)], "DEFAULTS", {}).get(arch, {}))


def make_method(name: str, **options):
    """The method `name` built from its options (text or Python values), checked before any work."""
    name = canonical_name(name)
    config = config_class(name)
    if config is None:
        opts.parse(None, options, name)   # refuses any option
        return _METHODS[name]()
    return _METHODS[name](opts.build(config, options, name))
