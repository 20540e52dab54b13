"""The plugin manager and the name -> factory tables built from its hooks.

Built-in plugins and third-party ones (entry points in the ``minidl`` group) register
through the same hooks. Plugins load once, lazily, on the first lookup.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .errors import DuplicateNameError, PluginError, UnknownNameError

ENTRY_POINT_GROUP = "minidl"
#: Comma-separated entry-point names to load; set but empty loads none. Unset loads all.
PLUGINS_ENV = "MINIDL_PLUGINS"

BUILTIN_PLUGINS = (
    "minidl.plugins.layers",
    "minidl.plugins.losses",
    "minidl.plugins.optimizers",
    "minidl.plugins.datasets",
    "minidl.plugins.initializers",
    "minidl.plugins.schedules",
)

#: kind -> the hook that fills its table
KINDS = {
    "layer": "register_layers",
    "loss": "register_losses",
    "optimizer": "register_optimizers",
    "dataset": "register_datasets",
    "initializer": "register_initializers",
    "schedule": "register_schedules",
}

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")

pm = pluggy.PluginManager("minidl")
pm.add_hookspecs(hookspecs)

_loaded = False
#: plugin name -> one-line error, for plugins that failed to load or whose hooks raised
broken: dict[str, str] = {}
#: plugin name -> (distribution, version) for plugins that came from entry points
_dists: dict[str, tuple[str, str]] = {}


@dataclass
class Entry:
    factory: Callable[..., Any]
    plugin: str
    rivals: list[str] = field(default_factory=list)  # other plugins claiming the same name


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _mark_broken(plugin: str, message: str) -> None:
    if broken.get(plugin) != message:
        broken[plugin] = message
        _warn(message)


def load_plugins() -> None:
    """Register the built-ins, then each selected entry point in the ``minidl`` group."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for modname in BUILTIN_PLUGINS:
        if not pm.has_plugin(modname):
            pm.register(importlib.import_module(modname), name=modname)
    selected = os.environ.get(PLUGINS_ENV)
    allowed = None if selected is None else {s.strip() for s in selected.split(",") if s.strip()}
    eps = list(entry_points(group=ENTRY_POINT_GROUP))
    unknown = sorted((allowed or set()) - {ep.name for ep in eps})
    if unknown:
        _warn(
            f"{PLUGINS_ENV} names {', '.join(map(repr, unknown))}, which no installed plugin "
            f"provides; installed: {', '.join(sorted({ep.name for ep in eps})) or '(none)'}"
        )
    for ep in eps:
        if allowed is not None and ep.name not in allowed:
            continue
        if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
            continue
        _register_entry_point(ep, strict=False)
    check_hooks()


def _register_entry_point(ep: Any, strict: bool) -> None:
    if ep.dist is not None:
        _dists[ep.name] = (ep.dist.name, ep.dist.version)
    try:
        module = ep.load()
        pm.register(module, name=ep.name)
    except Exception as e:
        message = f"Error importing plugin {ep.name!r}: {type(e).__name__}: {e}"
        if strict:
            raise PluginError(message) from e
        _mark_broken(ep.name, message)


def check_hooks() -> None:
    """Unregister (and report) plugins that implement a hook that does not exist."""
    for hookname, caller in list(vars(pm.hook).items()):
        if hookname.startswith("_") or getattr(caller, "spec", None) is not None:
            continue
        for impl in caller.get_hookimpls():
            close = difflib.get_close_matches(hookname, [*KINDS.values(), "register_commands"], 1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            _mark_broken(
                impl.plugin_name,
                f"Error in plugin {impl.plugin_name!r}: unknown hook {hookname!r}{hint}",
            )
            pm.unregister(name=impl.plugin_name)


def call_hook(hookname: str, **kwargs: Any) -> None:
    """Call each plugin's implementation on its own, so one that raises breaks only itself."""
    load_plugins()
    caller = getattr(pm.hook, hookname)
    for impl in caller.get_hookimpls():  # registration order (pluggy *calls* them reversed)
        try:
            impl.function(*[kwargs[name] for name in impl.argnames])
        except Exception as e:
            _mark_broken(
                impl.plugin_name,
                f"Error in plugin {impl.plugin_name!r}: its hook {hookname} raised "
                f"{type(e).__name__}: {e}",
            )


_tables: dict[str, dict[str, Entry]] = {}
_tables_key: tuple[int, ...] = ()


def table(kind: str) -> dict[str, Entry]:
    """name -> Entry for one kind. Rebuilt whenever the set of registered plugins changes."""
    global _tables_key
    if kind not in KINDS:
        raise UnknownNameError("kind", kind, KINDS)
    load_plugins()
    key = tuple(id(p) for p in pm.get_plugins())
    if key != _tables_key:
        _tables.clear()
        _tables_key = key
    if kind not in _tables:
        _tables[kind] = _collect(kind)
    return _tables[kind]


def _collect(kind: str) -> dict[str, Entry]:
    found: dict[str, Entry] = {}
    hookname = KINDS[kind]
    for impl in getattr(pm.hook, hookname).get_hookimpls():  # registration order
        plugin = impl.plugin_name

        def register(name: str, factory: Callable[..., Any], plugin: str = plugin) -> None:
            if not isinstance(name, str) or not _NAME.match(name.lower()):
                raise ValueError(
                    f"{kind} name {name!r} is not valid: use letters, digits and underscores, "
                    "starting with a letter"
                )
            if not callable(factory):
                raise TypeError(f"{kind} {name!r}: factory {factory!r} is not callable")
            name = name.lower()
            if name in found:
                entry = found[name]
                if plugin != entry.plugin and plugin not in entry.rivals:
                    entry.rivals.append(plugin)
                    _warn(_duplicate_message(kind, name, entry))
                return
            found[name] = Entry(factory, plugin)

        try:
            impl.function(*[{"register": register}[a] for a in impl.argnames])
        except Exception as e:
            _mark_broken(
                plugin,
                f"Error in plugin {plugin!r}: its hook {hookname} raised {type(e).__name__}: {e}",
            )
    return found


def _duplicate_message(kind: str, name: str, entry: Entry) -> str:
    plugins = [entry.plugin, *entry.rivals]
    blockable = [p for p in plugins if p not in BUILTIN_PLUGINS]
    how = (
        f"block one for a run with --layer-plugin no:{blockable[-1]}, or choose the plugins "
        f"to load with {PLUGINS_ENV}"
        if blockable
        else "rename one of them"
    )
    return (
        f"{kind} {name!r} is registered by more than one plugin: "
        f"{', '.join(repr(p) for p in plugins)}; {how}"
    )


def get(kind: str, name: str) -> Callable[..., Any]:
    """The factory registered as ``name`` for ``kind`` (``"layer"``, ``"optimizer"``, ...)."""
    entries = table(kind)
    entry = entries.get(name.lower()) if isinstance(name, str) else None
    if entry is None:
        raise UnknownNameError(kind, str(name), entries)
    if entry.rivals:
        raise DuplicateNameError(_duplicate_message(kind, name.lower(), entry))
    return entry.factory


def names(kind: str) -> list[str]:
    return sorted(table(kind))


def plugin_of(kind: str, name: str) -> str:
    return table(kind)[name.lower()].plugin


def plugins() -> list[dict[str, Any]]:
    """One record per plugin, loaded or broken: name, distribution, version, hooks, names."""
    load_plugins()
    for kind in KINDS:
        table(kind)  # so that hooks that raise are marked broken before we report
    records = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin)
        if name is None:
            continue
        dist, version = _dists.get(
            name, ("minidl", _version()) if name in BUILTIN_PLUGINS else ("", "")
        )
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        registers = {
            kind: sorted(n for n, e in table(kind).items() if e.plugin == name or name in e.rivals)
            for kind in KINDS
        }
        records.append(
            {
                "name": name,
                "distribution": dist,
                "version": version,
                "builtin": name in BUILTIN_PLUGINS,
                "hooks": hooks,
                "registers": {k: v for k, v in registers.items() if v},
                "status": "broken" if name in broken else "ok",
                "error": broken.get(name, ""),
            }
        )
    for name, error in broken.items():
        if not pm.has_plugin(name):
            dist, version = _dists.get(name, ("", ""))
            records.append(
                {
                    "name": name,
                    "distribution": dist,
                    "version": version,
                    "builtin": False,
                    "hooks": [],
                    "registers": {},
                    "status": "broken",
                    "error": error,
                }
            )
    return records


def _version() -> str:
    from . import __version__

    return __version__


def block(name: str) -> None:
    """Keep an installed plugin from loading (``--layer-plugin no:NAME``)."""
    if name in BUILTIN_PLUGINS or f"minidl.plugins.{name}" in BUILTIN_PLUGINS:
        raise PluginError(
            f"cannot block {name!r}: built-in plugins always load; "
            f"installed plugins: {', '.join(installed_names()) or '(none)'}"
        )
    if pm.has_plugin(name):
        pm.unregister(name=name)
    pm.set_blocked(name)


def installed_names() -> list[str]:
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def load_plugin(spec: str) -> str:
    """Load one plugin for this process: ``no:NAME``, a ``.py`` path, an entry-point name or a
    dotted module. Returns the plugin's name. Unlike installed plugins, a failure raises."""
    if spec.startswith("no:"):
        block(spec[3:])
        return spec[3:]
    load_plugins()
    path = Path(spec)
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        module = _import_file(path)
        name = str(path.resolve())
    else:
        eps = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec]
        if eps:  # named explicitly, so it loads even if MINIDL_PLUGINS leaves it out
            if not pm.has_plugin(spec):
                _register_entry_point(eps[0], strict=True)
                check_hooks()
            return spec
        try:
            module = importlib.import_module(spec)
        except Exception as e:
            raise PluginError(
                f"Error importing plugin {spec!r}: {type(e).__name__}: {e} (expected a path to a "
                f".py file, a dotted module name or an installed plugin name; installed: "
                f"{', '.join(installed_names()) or '(none)'})"
            ) from e
        name = spec
    if not pm.has_plugin(name):
        pm.register(module, name=name)
        check_hooks()
        if name in broken:
            raise PluginError(broken[name])
    return name


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise PluginError(f"Error importing plugin {str(path)!r}: no such file")
    modname = "minidl_plugin_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"Error importing plugin {str(path)!r}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        del sys.modules[modname]
        raise PluginError(
            f"Error importing plugin {str(path)!r}: syntax error at line {e.lineno}: {e.msg}"
        ) from e
    except Exception as e:
        del sys.modules[modname]
        raise PluginError(f"Error importing plugin {str(path)!r}: {type(e).__name__}: {e}") from e
    return module
