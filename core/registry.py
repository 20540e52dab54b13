"""The plugin manager: pluggy's, plus the little pluggy lacks.

Plugins are the entry points of installed distributions in the ``minidl`` group (minidl's
own built-ins among them) and, for one run, a ``.py`` file or a dotted module
(:meth:`Registry.load`). Written here is only what pluggy does not do: loading each plugin
in isolation (one that raises, even ``SystemExit``, is *broken*: unregistered, named in one
warning, and every other plugin keeps working), one-file plugins, and name tables that
know every plugin claiming a name, so that a clash names both.
"""

from __future__ import annotations

import inspect
import operator
import os
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .errors import DuplicateNameError, PluginError, UnknownNameError
from .loading import import_file, import_module, plugin_error_message

ENTRY_POINT_GROUP = "minidl"
#: Comma-separated names of installed plugins to load (set but empty: none); minidl's own
#: plugins always load.
PLUGINS_ENV = "MINIDL_PLUGINS"
#: kind -> the hook that fills its table
KINDS = {
    "layer": "register_layers",
    "loss": "register_losses",
    "optimizer": "register_optimizers",
    "dataset": "register_datasets",
    "initializer": "register_initializers",
    "schedule": "register_schedules",
    "callback": "register_callbacks",
}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class PluginWarning(RuntimeWarning):
    """A plugin is broken: one line naming it and its error."""


@dataclass
class Entry:
    factory: Callable[..., Any]
    plugin: str
    rivals: list[str] = field(default_factory=list)  # other plugins claiming the same name


class Registry(pluggy.PluginManager):
    """minidl's plugin manager; :data:`registry` is the one instance."""

    def __init__(self) -> None:
        super().__init__("minidl")
        self.add_hookspecs(hookspecs)
        self.errors: dict[str, str] = {}  # broken plugin -> its one-line error
        self.sources: dict[str, str] = {}  # plugin -> builtin, entry point, file or module
        self._loaded = False
        self._loading = ""  # the plugin load() is loading: it must load, its hooks too
        self._warned: set[str] = set()
        self._tables: tuple[list[Any], dict[str, dict[str, Entry]]] = ([], {})

    # pytest's rule: a function named like a hook is one, marked or not.
    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith("register_"):
            if inspect.isroutine(inspect.getattr_static(plugin, name, None)):
                return {}
        return opts

    @contextmanager
    def guard(self, name: str, doing: str, strict: bool = False) -> Iterator[None]:
        """Run a plugin's code: anything it raises, ``SystemExit`` included, breaks that
        plugin alone (with ``strict``, or for a built-in, it raises PluginError)."""
        try:
            yield
        except (Exception, SystemExit) as e:
            message = f'Error {doing} plugin "{name}": {plugin_error_message(e, name if name.endswith(".py") else None)}'
            self.errors[name] = message
            if self.has_plugin(name):
                self.unregister(name=name)
            if strict or name == self._loading or self.builtin(name):
                raise PluginError(message) from None
            if message not in self._warned:
                self._warned.add(message)
                warnings.warn(message, PluginWarning, stacklevel=3)

    def add(self, plugin: object, name: str, source: str, strict: bool = False) -> None:
        """Register one plugin object, checking its hooks; a bad one is broken."""
        self.sources.setdefault(name, source)
        with self.guard(name, "in", strict):
            self.register(plugin, name=name)
            self.check_pending()

    def builtin(self, name: str) -> bool:
        """Whether the plugin is minidl's own (those always load and cannot be blocked)."""
        self.installed()
        return self.sources.get(name) == "builtin"

    def installed(self) -> dict[str, EntryPoint]:
        """Every installed plugin's entry point by name; minidl's own are marked builtin."""
        found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
        for name, ep in found.items():
            if ep.dist is not None and ep.dist.name == "minidl":
                self.sources[name] = "builtin"
        return found

    def load_plugins(self) -> None:
        """Register every installed plugin, once: minidl's own, and the others that
        :data:`PLUGINS_ENV` selects (all when it is unset)."""
        if self._loaded:
            return
        self._loaded = True
        selected = os.environ.get(PLUGINS_ENV)
        chosen = None if selected is None else {s.strip() for s in selected.split(",")} - {""}
        installed = self.installed()
        for name in sorted((chosen or set()) - set(installed)):
            message = f"{PLUGINS_ENV} names {name!r}, which is not an installed plugin"
            warnings.warn(message, PluginWarning, stacklevel=2)
        for name in installed:
            if self.sources.get(name) == "builtin" or chosen is None or name in chosen:
                self._load_entry_point(name)

    def _load_entry_point(self, name: str, strict: bool = False) -> None:
        if strict and name in self.errors:
            raise PluginError(self.errors[name])
        if self.has_plugin(name) or self.is_blocked(name) or name in self.errors:
            return
        self.sources.setdefault(name, "entry point")
        with self.guard(name, "importing", strict):
            self.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=name)
            self.check_pending()

    def load(self, spec: str) -> str:
        """Load one plugin for this process and return its name, as pytest's ``-p``:
        ``no:NAME`` blocks an installed plugin; otherwise a ``.py`` file, an installed
        plugin's name or a dotted module. It must load: a failure raises PluginError."""
        spec = spec.strip()
        if spec.startswith("no:"):
            return self.block(spec[3:].strip())
        name = spec
        if spec in self.installed():  # before the others: it fails once, here, if at all
            if self.is_blocked(spec):
                raise PluginError(f'plugin "{spec}" is blocked for this run by no:{spec}')
            self._load_entry_point(spec, strict=True)
            self.load_plugins()
        elif spec.endswith(".py") or os.sep in spec or "/" in spec:
            self.load_plugins()
            name = str(Path(spec).expanduser().resolve())
            if not self.has_plugin(name):
                with self.guard(name, "importing", strict=True):
                    module = import_file(Path(name))
                self.add(module, name, "file", strict=True)
        else:
            self.load_plugins()
            with self.guard(spec, "importing", strict=True):
                module = import_module(spec, self.installed())
            name = self.get_name(module) or spec  # an installed plugin, named by its module
            if not self.has_plugin(name):
                self.add(module, name, "module", strict=True)
        self._loading = name
        try:
            self.tables()  # run its hooks now: one that raises is an error, here
        finally:
            self._loading = ""
        return name

    def block(self, name: str) -> str:
        """Keep an installed plugin from loading in this process (unregister it if loaded)."""
        installed = self.installed()
        if self.builtin(name):
            raise PluginError(f'cannot block "{name}": minidl\'s own plugins always load')
        if name not in installed and not self.has_plugin(name):
            others = [n for n in installed if self.sources.get(n) != "builtin"]
            raise PluginError(
                f'cannot block "{name}": no plugin has that name; installed: '
                f"{', '.join(sorted(others)) or '(none)'}"
            )
        self.set_blocked(name)
        return name

    def tables(self) -> dict[str, dict[str, Entry]]:
        """kind -> name -> Entry, rebuilt whenever the set of registered plugins changes."""
        self.load_plugins()
        while True:
            # The plugin objects themselves, not their ids: ids of dead objects get reused.
            key = [p for _, p in self.list_name_plugin() if p is not None]
            cached_key, cached = self._tables
            if cached and len(key) == len(cached_key) and all(map(operator.is_, key, cached_key)):
                return cached
            tables = self._collect()
            if tables is not None:
                self._tables = (key, tables)
                return tables

    def _collect(self) -> dict[str, dict[str, Entry]] | None:
        tables: dict[str, dict[str, Entry]] = {}
        for kind, hookname in KINDS.items():
            found = tables[kind] = {}
            for impl in getattr(self.hook, hookname).get_hookimpls():
                mine: dict[str, Callable[..., Any]] = {}
                with self.guard(impl.plugin_name, f"in hook {hookname} of"):
                    impl.function(*[{"register": _registrar(kind, mine)}[a] for a in impl.argnames])
                if not self.has_plugin(impl.plugin_name):
                    return None  # it broke: collect again without it
                for name, factory in mine.items():
                    if name in found:  # an error only when the name is used (get)
                        found[name].rivals.append(impl.plugin_name)
                    else:
                        found[name] = Entry(factory, impl.plugin_name)
        return tables

    def table(self, kind: str) -> dict[str, Entry]:
        if kind not in KINDS:
            raise UnknownNameError("kind", kind, KINDS)
        return self.tables()[kind]

    def get(self, kind: str, name: str) -> Callable[..., Any]:
        """The factory registered as ``name`` for ``kind`` (``"layer"``, ``"optimizer"``...)."""
        entries = self.table(kind)
        entry = entries.get(name.lower()) if isinstance(name, str) else None
        if entry is None:
            raise UnknownNameError(kind, str(name), entries)
        if entry.rivals:
            claimants = [entry.plugin, *entry.rivals]
            ways = [
                f'block "{p}" with no:{p}'
                if self.sources.get(p) == "entry point"
                else f'stop loading "{p}"'
                for p in claimants
                if not self.builtin(p)
            ]
            names = " and ".join(f'"{p}"' for p in claimants)
            raise DuplicateNameError(
                f"{kind} {name.lower()!r} is registered by more than one plugin: {names}; "
                f"to keep one, {' or '.join(ways) or 'rename it in one of them'}"
            )
        return entry.factory

    def names(self, kind: str) -> list[str]:
        return sorted(self.table(kind))

    def name_of(self, kind: str, factory: Any) -> str | None:
        """The name under which ``factory`` (a layer's class, say) is registered."""
        return next((n for n, e in self.table(kind).items() if e.factory is factory), None)

    def reset(self) -> None:
        """Forget every plugin, block and error: as if freshly imported (for tests)."""
        for name, plugin in self.list_name_plugin():
            if plugin is None:
                self.unblock(name)
            else:
                self.unregister(plugin=plugin, name=name)
        for store in (self._plugin_distinfo, self.errors, self.sources, self._warned):
            store.clear()
        self._loaded = False


def _registrar(kind: str, mine: dict[str, Callable[..., Any]]) -> Callable[..., None]:
    def register(name: str, factory: Callable[..., Any]) -> None:
        if not isinstance(name, str) or not _NAME.match(name.lower()):
            raise ValueError(
                f"{kind} name {name!r} is not valid: use letters, digits and underscores, "
                "starting with a letter"
            )
        if not callable(factory):
            raise TypeError(f"{kind} {name!r}: factory {factory!r} is not callable")
        if name.lower() in mine:
            raise ValueError(f"{kind} {name!r} is registered twice by the same plugin")
        mine[name.lower()] = factory

    return register


#: The one plugin manager.
registry = Registry()
