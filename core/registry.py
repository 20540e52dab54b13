"""The plugin manager and the name -> factory tables built from its hooks.

Built-in plugins and third-party ones register through the same hooks. Third-party
plugins come from three places: installed distributions (entry points in the ``minidl``
group, loaded once, lazily, on the first lookup), and, for one run, ``--layer-plugin SPEC``
(a ``.py`` file or a dotted module, see :func:`load_plugin`).

A plugin that fails (its import raises, a hook raises, it implements a hook that does not
exist) is *broken*: it is unregistered whole, one warning names it and its error, and
every other plugin keeps working. :func:`plugins` lists it with its error.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import inspect
import operator
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import TracebackType
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

HOOKS = (*KINDS.values(), "register_commands")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class PluginWarning(RuntimeWarning):
    """A plugin is broken, or a command it adds was refused; one line naming the plugin."""


pm = pluggy.PluginManager("minidl")
pm.add_hookspecs(hookspecs)

_loaded = False
#: plugin name -> one-line error, for plugins that failed to load or whose hooks raised
broken: dict[str, str] = {}
#: plugin name -> (distribution, version) for plugins that came from entry points
_dists: dict[str, tuple[str, str]] = {}
#: plugin name -> "builtin", "entry point", "file" or "module"
_sources: dict[str, str] = {}
#: resolved path -> name of each file plugin imported (module names are numbered by it)
_files: dict[Path, str] = {}
#: names blocked with ``no:NAME``
_blocked: set[str] = set()
#: every spec given to load_plugin, in order: a worker process replays them (see replay)
loaded_specs: list[str] = []
_warned: set[str] = set()
#: broken plugins that failed to load (import or register), as opposed to hooks that raised
_unimportable: set[str] = set()
#: while load_plugin loads its plugin: a failure raises rather than warns
_strict = False
#: id -> plugin object already checked by _check_plugin
_checked: dict[int, object] = {}


@dataclass
class Entry:
    factory: Callable[..., Any]
    plugin: str
    rivals: list[str] = field(default_factory=list)  # other plugins claiming the same name


def _warn(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, PluginWarning, stacklevel=3)


def _mark_broken(plugin: str, message: str) -> None:
    """Record the error, warn once, and take the plugin out whole: half a plugin is worse
    than none, since its names would appear and vanish depending on which hook ran first."""
    if plugin in BUILTIN_PLUGINS:
        raise PluginError(message)  # a bug in minidl itself: do not hide it
    broken.setdefault(plugin, message)
    if not _strict:  # load_plugin raises instead: one line, not two
        _warn(message)
    if pm.has_plugin(plugin):
        pm.unregister(name=plugin)


def _import_failed(plugin: str, message: str) -> None:
    """A plugin that could not even be imported: load_plugin raises for it every time."""
    _unimportable.add(plugin)
    _mark_broken(plugin, message)


def _describe(e: BaseException, filename: str | None = None) -> str:
    """``Type: message (line N)``, on one line; the line is the deepest frame in
    ``filename`` (the plugin's own file) or else the deepest frame outside importlib."""
    if isinstance(e, SyntaxError) and e.lineno is not None:
        where = Path(e.filename).name if e.filename else "?"
        return f"syntax error in {where} at line {e.lineno}: {e.msg}"
    text = " ".join(str(e).split()) or "(no message)"
    if isinstance(e, pluggy.PluginValidationError):
        lines = [line.strip() for line in str(e).splitlines()[1:] if line.strip()]
        return "; ".join(lines) or text
    line = _line_in(e.__traceback__, filename)
    return f"{type(e).__name__}: {text}{line}"


def _line_in(tb: TracebackType | None, filename: str | None) -> str:
    frames = [f for f in traceback.extract_tb(tb) if not f.filename.startswith("<")]
    if filename is not None:
        frames = [f for f in frames if f.filename == filename]
    else:
        frames = [f for f in frames if f"{os.sep}importlib{os.sep}" not in f.filename]
    if not frames:
        return ""
    frame = frames[-1]
    if filename is not None:
        return f" (line {frame.lineno})"
    return f" ({'/'.join(Path(frame.filename).parts[-2:])}, line {frame.lineno})"


def _register(plugin: object, name: str, source: str) -> bool:
    """Register one plugin object; on failure mark it broken. True if it is registered."""
    problem = _check_arguments(plugin)
    if problem:
        _mark_broken(name, f"Error in plugin {_label(name)}: {problem}")
        return False
    try:
        if pm.register(plugin, name=name) is None:
            return False  # blocked
    except Exception as e:
        _mark_broken(name, f"Error in plugin {_label(name)}: {_describe(e)}")
        return False
    _sources[name] = source
    _checked[id(plugin)] = plugin
    problem = _check_plugin(plugin, name)
    if problem:
        _mark_broken(name, f"Error in plugin {_label(name)}: {problem}")
        return False
    return True


def _check_plugin(plugin: object, name: str) -> str:
    """What is wrong with a registered plugin's hooks, or ``""``."""
    callers = pm.get_hookcallers(plugin) or []
    for caller in callers:
        if caller.has_spec():
            continue
        close = difflib.get_close_matches(caller.name, HOOKS, 1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; hooks: {', '.join(HOOKS)}"
        return f"unknown hook {caller.name!r}{hint}"
    marked = {
        impl.function.__name__
        for caller in callers
        for impl in caller.get_hookimpls()
        if impl.plugin is plugin
    }
    for attr in dir(plugin):
        if not attr.startswith("register_") or attr in marked:
            continue
        value = inspect.getattr_static(plugin, attr, None)
        if inspect.isfunction(value) or inspect.ismethod(value):
            return f"{attr}() is not marked with @minidl.hookimpl, so minidl would never call it"
    if not callers:
        return (
            f"it implements none of minidl's hooks ({', '.join(HOOKS)}); mark them with "
            "@minidl.hookimpl"
        )
    return ""


def _check_arguments(plugin: object) -> str:
    """A hook implementation asking for an argument its hook does not pass, or ``""``
    (pluggy would refuse it too, in a message of several lines)."""
    for attr in HOOKS:
        value = inspect.getattr_static(plugin, attr, None)
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if not callable(value) or pm.parse_hookimpl_opts(plugin, attr) is None:
            continue
        spec = getattr(pm.hook, attr).spec
        assert spec is not None
        params = [p for p in inspect.signature(value).parameters if p != "self"]
        extra = [p for p in params if p not in spec.argnames]
        if extra:
            return (
                f"its {attr}({', '.join(params)}) asks for {', '.join(map(repr, extra))}, "
                f"which the hook does not pass; the hook passes: {', '.join(spec.argnames)}"
            )
    return ""


def _label(name: str) -> str:
    dist = _dists.get(name)
    return f"{name!r} ({dist[0]} {dist[1]})" if dist else repr(name)


def load_plugins() -> None:
    """Register the built-ins, then each selected entry point in the ``minidl`` group.

    Runs once; later calls return at once. :func:`get` and the other lookups call it.
    """
    global _loaded
    if _loaded:
        return
    _loaded = True
    for modname in BUILTIN_PLUGINS:
        if not pm.has_plugin(modname):
            pm.register(importlib.import_module(modname), name=modname)
            _sources[modname] = "builtin"
    selected = os.environ.get(PLUGINS_ENV)
    allowed = None if selected is None else {s.strip() for s in selected.split(",") if s.strip()}
    installed = _entry_points()
    if allowed:
        for name in sorted(allowed - {ep.name for ep in installed}):
            _warn(
                f"{PLUGINS_ENV} names {name!r}, which is not an installed plugin; installed: "
                f"{', '.join(sorted({ep.name for ep in installed})) or '(none)'}"
            )
    for ep in installed:
        if allowed is not None and ep.name not in allowed:
            continue
        if ep.name in _blocked or pm.has_plugin(ep.name) or ep.name in broken:
            continue
        _load_entry_point(ep)


def _entry_points() -> list[EntryPoint]:
    seen: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in seen:
            first = seen[ep.name]
            _warn(
                f"two installed distributions declare the plugin {ep.name!r}: "
                f"{_dist_name(first)} and {_dist_name(ep)}; loading the first"
            )
            continue
        seen[ep.name] = ep
    return list(seen.values())


def _dist_name(ep: EntryPoint) -> str:
    return f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "(unknown)"


def _load_entry_point(ep: EntryPoint) -> bool:
    plugin = _import_entry_point(ep)
    return plugin is not None and _register(plugin, ep.name, "entry point")


def _import_entry_point(ep: EntryPoint) -> object | None:
    if ep.dist is not None:
        _dists[ep.name] = (ep.dist.name, ep.dist.version)
    try:
        plugin: object = ep.load()
    except Exception as e:
        _import_failed(ep.name, f"Error importing plugin {_label(ep.name)}: {_describe(e)}")
        return None
    return plugin


def call_hook(hookname: str, **kwargs: Any) -> None:
    """Call each plugin's implementation of ``hookname`` on its own, in registration order,
    so that one that raises breaks only itself.

    For ``register_commands(cli)``, a plugin may not replace a command that minidl or
    another plugin already added: the clash is reported and the original command kept.
    """
    load_plugins()
    _tables_now()
    caller = getattr(pm.hook, hookname)
    cli = kwargs.get("cli")
    commands: dict[str, Any] | None = getattr(cli, "commands", None)
    for impl in caller.get_hookimpls():  # registration order
        plugin = impl.plugin_name
        if not pm.has_plugin(plugin):
            continue  # broken by an earlier call
        before = dict(commands) if commands is not None else {}
        try:
            impl.function(*[kwargs[name] for name in impl.argnames])
        except Exception as e:
            if commands is not None:
                commands.clear()
                commands.update(before)
            _mark_broken(
                plugin,
                f"Error in plugin {_label(plugin)}: its hook {hookname} raised "
                f"{_describe(e, impl.function.__code__.co_filename)}",
            )
            continue
        if commands is not None:
            _check_commands(plugin, before, commands, _owners(cli))


def _owners(cli: Any) -> dict[str, str]:
    """command name -> the plugin that added it, kept on the group itself: the group
    outlives a :func:`reset`, and its commands with it."""
    owners: dict[str, str] | None = getattr(cli, "_minidl_command_owners", None)
    if owners is None:
        owners = {}
        with contextlib.suppress(AttributeError):
            cli._minidl_command_owners = owners
    return owners


def _check_commands(
    plugin: str, before: dict[str, Any], commands: dict[str, Any], owners: dict[str, str]
) -> None:
    for name, command in list(commands.items()):
        if name in before and before[name] is command:
            continue
        # Who added the command it replaces; an owner recorded for a command that is gone
        # (a test rebuilt the group, say) is stale.
        owner = owners.get(name, "minidl-run") if name in before else None
        if owner is None or owner == plugin:
            owners[name] = plugin
            continue
        commands[name] = before[name]
        if owner == "minidl-run":
            _warn(
                f"plugin {_label(plugin)} replaced the built-in command {name!r}; the built-in "
                "one is kept: give the plugin's command another name"
            )
        else:
            _warn(
                f"plugin {_label(plugin)} replaced the command {name!r} of plugin {owner!r}; "
                "the first one is kept: give one of them another name"
            )


_tables: dict[str, dict[str, Entry]] = {}
_tables_key: list[object] = []


def table(kind: str) -> dict[str, Entry]:
    """name -> Entry for one kind. Rebuilt whenever the set of registered plugins changes."""
    if kind not in KINDS:
        raise UnknownNameError("kind", kind, KINDS)
    load_plugins()
    return _tables_now()[kind]


def _tables_now() -> dict[str, dict[str, Entry]]:
    """Every kind's table at once, so a hook that raises breaks its plugin before any of
    its names is handed out, whichever kind is looked up first."""
    global _tables, _tables_key
    while True:
        # The plugin objects themselves, not their ids: ids of dead objects get reused.
        key = [p for _, p in pm.list_name_plugin() if p is not None]
        if _tables and len(key) == len(_tables_key) and all(map(operator.is_, key, _tables_key)):
            return _tables
        if _check_new_plugins():
            continue  # one was found broken and unregistered
        tables = _collect_all()
        if tables is not None:
            _tables, _tables_key = tables, key
            return _tables
        # a plugin broke and was unregistered: collect again without it


def _check_new_plugins() -> bool:
    """Check plugins not seen before, including any registered on ``pm`` directly.
    True if one was broken (and so unregistered)."""
    found_broken = False
    for name, plugin in pm.list_name_plugin():
        if plugin is None or _checked.get(id(plugin)) is plugin:
            continue
        _checked[id(plugin)] = plugin  # the object too, so that its id is not reused
        problem = "" if name in BUILTIN_PLUGINS else _check_plugin(plugin, name)
        if problem:
            _mark_broken(name, f"Error in plugin {_label(name)}: {problem}")
            found_broken = True
    return found_broken


def _collect_all() -> dict[str, dict[str, Entry]] | None:
    tables: dict[str, dict[str, Entry]] = {}
    for kind, hookname in KINDS.items():
        found: dict[str, Entry] = {}
        for impl in getattr(pm.hook, hookname).get_hookimpls():  # registration order
            plugin = impl.plugin_name
            mine: dict[str, Callable[..., Any]] = {}
            try:
                impl.function(*[{"register": _registrar(kind, mine)}[a] for a in impl.argnames])
            except Exception as e:
                _mark_broken(
                    plugin,
                    f"Error in plugin {_label(plugin)}: its hook {hookname} raised "
                    f"{_describe(e, impl.function.__code__.co_filename)}",
                )
                return None
            for name, factory in mine.items():
                if name in found:  # not an error until the name is used: see get()
                    found[name].rivals.append(plugin)
                else:
                    found[name] = Entry(factory, plugin)
        tables[kind] = found
    return tables


def _registrar(kind: str, mine: dict[str, Callable[..., Any]]) -> Callable[..., None]:
    def register(name: str, factory: Callable[..., Any]) -> None:
        if not isinstance(name, str) or not _NAME.match(name.lower()):
            raise ValueError(
                f"{kind} name {name!r} is not valid: use letters, digits and underscores, "
                "starting with a letter"
            )
        if not callable(factory):
            raise TypeError(f"{kind} {name!r}: factory {factory!r} is not callable")
        name = name.lower()
        if name in mine:
            raise ValueError(f"{kind} {name!r} is registered twice by the same plugin")
        mine[name] = factory

    return register


def _duplicate_message(kind: str, name: str, entry: Entry) -> str:
    plugins = [entry.plugin, *entry.rivals]
    ways = []
    for p in plugins:
        source = _sources.get(p)
        if source == "entry point":
            ways.append(
                f"block {p!r} with --layer-plugin no:{p} (or leave it out of {PLUGINS_ENV})"
            )
        elif source in ("file", "module"):
            ways.append(f"drop --layer-plugin {p}")
    how = "; or ".join(ways) if ways else "rename one of them"
    return (
        f"{kind} {name!r} is registered by more than one plugin: "
        f"{' and '.join(_label(p) for p in plugins)}; to pick one, {how}"
    )


def get(kind: str, name: str) -> Callable[..., Any]:
    """The factory registered as ``name`` for ``kind`` (``"layer"``, ``"optimizer"``, ...).

    Raises :class:`UnknownNameError` listing the available names, or
    :class:`DuplicateNameError` naming the plugins that claim ``name`` and how to pick one.
    """
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
    """One record per plugin, loaded or broken: ``name``, ``distribution``, ``version``,
    ``source`` (builtin, entry point, file, module), ``builtin``, ``hooks``, ``registers``
    (kind -> names), ``conflicts`` (``"kind name"`` claimed by another plugin too),
    ``status`` (``"ok"`` or ``"broken"``) and ``error`` (the one-line reason)."""
    load_plugins()
    tables = _tables_now()
    records = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue  # blocked
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        registers = {
            kind: sorted(n for n, e in tables[kind].items() if e.plugin == name or name in e.rivals)
            for kind in KINDS
        }
        conflicts = [
            f"{kind} {n}"
            for kind in KINDS
            for n, e in sorted(tables[kind].items())
            if e.rivals and (e.plugin == name or name in e.rivals)
        ]
        records.append(_record(name, hooks, {k: v for k, v in registers.items() if v}, conflicts))
    records.extend(_record(name, [], {}, []) for name in broken if not pm.has_plugin(name))
    order = {"builtin": 0}
    records.sort(key=lambda r: order.get(r["source"], 1))  # stable: registration order
    return records


def _record(
    name: str, hooks: list[str], registers: dict[str, list[str]], conflicts: list[str]
) -> dict[str, Any]:
    builtin = name in BUILTIN_PLUGINS
    dist, version = _dists.get(name, ("minidl", _version()) if builtin else ("", ""))
    return {
        "name": name,
        "distribution": dist,
        "version": version,
        "source": _sources.get(name, "entry point" if name in _dists else ""),
        "builtin": builtin,
        "hooks": hooks,
        "registers": registers,
        "conflicts": conflicts,
        "status": "broken" if name in broken else "ok",
        "error": broken.get(name, ""),
    }


def _version() -> str:
    from . import __version__

    return __version__


def installed_names() -> list[str]:
    """The entry-point names of every installed plugin, selected or not."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def block(name: str) -> None:
    """Keep a plugin from loading in this process (``--layer-plugin no:NAME``); unregister it
    if it is loaded. Built-in plugins cannot be blocked."""
    builtin = name if name in BUILTIN_PLUGINS else f"minidl.plugins.{name}"
    if builtin in BUILTIN_PLUGINS:
        raise PluginError(
            f"cannot block {name!r}: built-in plugins always load ({builtin} is part of "
            f"minidl); only installed plugins can be blocked: "
            f"{', '.join(installed_names()) or '(none)'}"
        )
    if name not in installed_names() and not pm.has_plugin(name) and name not in broken:
        raise PluginError(
            f"cannot block {name!r}: no plugin has that name; "
            f"installed: {', '.join(installed_names()) or '(none)'}"
        )
    _blocked.add(name)
    pm.set_blocked(name)  # also unregisters it


def load_plugin(spec: str) -> str:
    """Load one plugin for this process and return its name. ``spec`` is ``no:NAME``
    (block an installed plugin), a path to a ``.py`` file (named by its absolute path),
    the name of an installed plugin (it loads even when :data:`PLUGINS_ENV` leaves it
    out), or a dotted module name.

    Asked for by name, a plugin must load: one that cannot be imported, or whose hooks
    cannot be registered (misspelled, unmarked, asking for an argument the hook does not
    pass), raises :class:`PluginError`. One whose hook raises when called is broken like an
    installed plugin: a warning, and :func:`plugins` lists it.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise PluginError(f"--layer-plugin needs a path, module or plugin name, got {spec!r}")
    spec = spec.strip()
    loaded_specs.append(spec)
    if spec.startswith("no:"):
        block(spec[3:].strip())
        return spec[3:].strip()
    load_plugins()
    global _strict
    _strict = True
    try:
        name, plugin, source = _import_spec(spec)
        if plugin is not None and not _register(plugin, name, source) and name in broken:
            _unimportable.add(name)  # its hooks cannot even be registered
    finally:
        _strict = False
    if name in _unimportable:
        raise PluginError(broken[name])
    if plugin is not None:
        _tables_now()  # run its hooks now, so that one that raises is reported at once
    return name


def _import_spec(spec: str) -> tuple[str, object | None, str]:
    """(plugin name, the object to register or None if there is none to register, source);
    an import failure is recorded in ``broken`` and ``_unimportable``."""
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        return _import_file(spec)
    if spec in _blocked:
        raise PluginError(f"plugin {spec!r} is blocked for this run by --layer-plugin no:{spec}")
    ep = next((ep for ep in _entry_points() if ep.name == spec), None)
    if ep is not None:
        if pm.has_plugin(spec) or spec in broken:
            return spec, None, "entry point"
        return spec, _import_entry_point(ep), "entry point"
    return _import_module(spec)


def _import_module(spec: str) -> tuple[str, object | None, str]:
    if pm.has_plugin(spec) or spec in broken:
        return spec, None, "module"
    try:
        module = importlib.import_module(spec)
    except ModuleNotFoundError as e:
        if e.name is not None and spec.split(".")[0] == e.name.split(".")[0]:
            _import_failed(
                spec,
                f"Error importing plugin {spec!r}: no module named {e.name!r}, no such file and "
                f"no installed plugin of that name (a plugin is a path to a .py file, a dotted "
                f"module name or an installed plugin: "
                f"{', '.join(installed_names()) or 'none is installed'})",
            )
        else:
            _import_failed(spec, f"Error importing plugin {spec!r}: {_describe(e)}")
        return spec, None, "module"
    except Exception as e:
        _import_failed(spec, f"Error importing plugin {spec!r}: {_describe(e)}")
        return spec, None, "module"
    existing = pm.get_name(module)
    if existing is not None:  # e.g. an installed plugin named by its module
        return existing, None, "module"
    return spec, module, "module"


def _import_file(spec: str) -> tuple[str, object | None, str]:
    path = Path(spec).expanduser().resolve()
    name = str(path)  # absolute: saved models record it, and it is the same from any cwd
    if pm.has_plugin(name) or name in broken:
        return name, None, "file"
    if not path.is_file():
        why = "it is a directory" if path.is_dir() else "no such file"
        _import_failed(name, f"Error importing plugin {name!r}: {why}")
        return name, None, "file"
    if path.suffix != ".py":
        _import_failed(name, f"Error importing plugin {name!r}: not a .py file")
        return name, None, "file"
    # One module name per file, so two files with the same stem do not replace each other.
    _files[path] = name
    modname = f"minidl_plugin_{re.sub(r'[^0-9a-zA-Z_]', '_', path.stem)}_{len(_files)}"
    module_spec = importlib.util.spec_from_file_location(modname, path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[modname] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[modname]
        if isinstance(e, SyntaxError) and e.lineno is not None:
            detail = f"syntax error at line {e.lineno}: {e.msg}"
        else:
            detail = _describe(e, name)
        _import_failed(name, f"Error importing plugin {name!r}: {detail}")
        return name, None, "file"
    return name, module, "file"


def replay(specs: Iterable[str]) -> None:
    """Load the same ``--layer-plugin`` specs in another process (a worker), in order."""
    for spec in specs:
        if spec not in loaded_specs:
            load_plugin(spec)


def reset() -> None:
    """Forget every plugin but the built-ins, every block and error: as if freshly imported.

    For tests; the next lookup loads installed plugins again.
    """
    global _loaded, _tables, _tables_key
    for name, plugin in list(pm.list_name_plugin()):
        if plugin is None:
            pm.unblock(name)
        elif name not in BUILTIN_PLUGINS:
            pm.unregister(plugin=plugin, name=name)
    for store in (
        broken,
        _unimportable,
        _dists,
        _files,
        _blocked,
        _warned,
        _checked,
    ):
        store.clear()
    for name in list(_sources):
        if name not in BUILTIN_PLUGINS:
            del _sources[name]
    loaded_specs.clear()
    _tables, _tables_key = {}, []
    _loaded = False
