"""The plugin manager: pluggy's, plus the little pluggy lacks.

Plugins are installed distributions' entry points in the ``minidl`` group (minidl's own
built-ins among them), and for one run a ``.py`` file or a dotted module
(:meth:`Registry.load`). What pluggy does not do is written here: loading each plugin in
isolation (one that raises, even ``SystemExit``, is *broken*: unregistered, named in one
warning, and every other plugin keeps working), one-file plugins, and the name tables,
which know every plugin claiming a name so a clash names both.
"""

from __future__ import annotations

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .errors import DuplicateNameError, PluginError, UnknownNameError

ENTRY_POINT_GROUP = "minidl"
#: Comma-separated names of installed plugins to load; set but empty loads none.
#: minidl's own plugins always load.
PLUGINS_ENV = "MINIDL_PLUGINS"
#: kind -> the hook that fills its table
KINDS = {
    "layer": "register_layers",
    "loss": "register_losses",
    "optimizer": "register_optimizers",
    "dataset": "register_datasets",
    "initializer": "register_initializers",
    "schedule": "register_schedules",
}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class PluginWarning(RuntimeWarning):
    """A plugin is broken: one line naming it and its error."""


@dataclass
class Entry:
    factory: Callable[..., Any]
    plugin: str
    rivals: list[str] = field(default_factory=list)  # other plugins claiming the same name


def describe(e: BaseException, filename: str | None = None) -> str:
    """``Type: message (where)`` on one line: the deepest frame in ``filename`` (the
    plugin's own file) or else outside importlib."""
    if isinstance(e, PluginError):
        return e.message
    if isinstance(e, SyntaxError) and e.lineno is not None:
        return f"syntax error in {Path(e.filename or '?').name} at line {e.lineno}: {e.msg}"
    if isinstance(e, pluggy.PluginValidationError):
        lines = str(e).splitlines()
        if lines[0].startswith("unknown hook"):
            hook = lines[0].split("'")[1]
            close = difflib.get_close_matches(hook, [*KINDS.values(), "register_commands"], 1)
            return f"unknown hook {hook!r}" + (f"; did you mean {close[0]!r}?" if close else "")
        return "; ".join(line.strip() for line in lines[1:] if line.strip())
    frames = [
        f
        for f in traceback.extract_tb(e.__traceback__)
        if (
            f.filename == filename
            if filename
            else f.filename[:1] != "<" and f"{os.sep}importlib{os.sep}" not in f.filename
        )
    ]
    where = ""
    if frames:
        place = "" if filename else "/".join(Path(frames[-1].filename).parts[-2:]) + ", "
        where = f" ({place}line {frames[-1].lineno})"
    return f"{type(e).__name__}: {' '.join(str(e).split()) or '(no message)'}{where}"


class Registry(pluggy.PluginManager):
    """minidl's plugin manager; :data:`registry` is the one instance."""

    def __init__(self) -> None:
        super().__init__("minidl")
        self.add_hookspecs(hookspecs)
        self.errors: dict[str, str] = {}  # broken plugin -> its one-line error
        self.sources: dict[str, str] = {}  # plugin -> builtin, entry point, file or module
        self._loaded = False
        self._warned: set[str] = set()
        self._tables: tuple[list[Any], dict[str, dict[str, Entry]]] = ([], {})

    # pytest's rule: a function named like a hook is one, marked or not.
    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith("register_"):
            if inspect.isroutine(inspect.getattr_static(plugin, name, None)):
                return {}
        return opts

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            warnings.warn(message, PluginWarning, stacklevel=4)

    @contextmanager
    def guard(self, name: str, doing: str, strict: bool = False) -> Iterator[None]:
        """Run a plugin's code: anything it raises, ``SystemExit`` included, breaks that
        plugin alone (with ``strict``, or for a built-in, it raises PluginError)."""
        try:
            yield
        except (Exception, SystemExit) as e:
            file = name if name.endswith(".py") else None
            message = f'Error {doing} plugin "{name}": {describe(e, file)}'
            self.errors[name] = message
            if self.has_plugin(name):
                self.unregister(name=name)
            if name in self._builtins() or strict:
                raise PluginError(message) from None
            self._warn(message)

    def add(self, plugin: object, name: str, source: str, strict: bool = False) -> None:
        """Register one plugin object, checking its hooks; a bad one is broken."""
        self.sources.setdefault(name, source)
        with self.guard(name, "in", strict):
            self.register(plugin, name=name)
            self.check_pending()

    def load_plugins(self) -> None:
        """Register every installed plugin, once: minidl's own, and the others that
        :data:`PLUGINS_ENV` selects (all when it is unset)."""
        if self._loaded:
            return
        self._loaded = True
        selected = os.environ.get(PLUGINS_ENV)
        chosen = None if selected is None else {s.strip() for s in selected.split(",")} - {""}
        installed = entry_points(group=ENTRY_POINT_GROUP)
        for name in sorted((chosen or set()) - set(installed.names)):
            self._warn(f"{PLUGINS_ENV} names {name!r}, which is not an installed plugin")
        for ep in installed:
            builtin = ep.dist is not None and ep.dist.name == "minidl"
            if builtin or chosen is None or ep.name in chosen:
                self._load_entry_point(ep.name, "builtin" if builtin else "entry point")

    def _load_entry_point(self, name: str, source: str, strict: bool = False) -> None:
        if self.has_plugin(name) or self.is_blocked(name) or name in self.errors:
            return
        self.sources.setdefault(name, source)
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
        self.load_plugins()
        if spec.endswith(".py") or os.sep in spec or "/" in spec:
            name = str(Path(spec).expanduser().resolve())
            if not self.has_plugin(name):
                with self.guard(name, "importing", strict=True):
                    module = _import_file(Path(name))
                self.add(module, name, "file", strict=True)
        elif spec in entry_points(group=ENTRY_POINT_GROUP).names:
            name = spec
            if self.is_blocked(name):
                raise PluginError(f'plugin "{name}" is blocked for this run by no:{name}')
            self._load_entry_point(name, "entry point", strict=True)
            if name in self.errors and not self.has_plugin(name):
                raise PluginError(self.errors[name])
        else:
            with self.guard(spec, "importing", strict=True):
                module = _import_module(spec, sorted(self._installed()))
            name = self.get_name(module) or spec  # an installed plugin, named by its module
            if not self.has_plugin(name):
                self.add(module, name, "module", strict=True)
        self.tables()  # run its hooks now, so that one that raises is reported at once
        return name

    def block(self, name: str) -> str:
        """Keep an installed plugin from loading in this process (unregister it if loaded)."""
        if name in self._builtins():
            raise PluginError(f'cannot block "{name}": minidl\'s own plugins always load')
        installed = sorted(self._installed())
        if name not in installed and not self.has_plugin(name):
            raise PluginError(
                f'cannot block "{name}": no plugin has that name; installed: '
                f"{', '.join(installed) or '(none)'}"
            )
        self.set_blocked(name)
        return name

    def _builtins(self) -> set[str]:
        own = {n for n, source in self.sources.items() if source == "builtin"}
        eps = entry_points(group=ENTRY_POINT_GROUP)
        return own | {ep.name for ep in eps if ep.dist is not None and ep.dist.name == "minidl"}

    def _installed(self) -> set[str]:
        return set(entry_points(group=ENTRY_POINT_GROUP).names) - self._builtins()

    def tables(self) -> dict[str, dict[str, Entry]]:
        """kind -> name -> Entry, rebuilt whenever the set of registered plugins changes."""
        self.load_plugins()
        while True:
            key = [p for _, p in self.list_name_plugin() if p is not None]
            cached_key, cached = self._tables
            # The objects, not their ids: ids of dead objects get reused.
            same = len(key) == len(cached_key) and all(map(operator.is_, key, cached_key))
            if cached and same:
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
            plugins = " and ".join(f'"{p}"' for p in [entry.plugin, *entry.rivals])
            raise DuplicateNameError(
                f"{kind} {name.lower()!r} is registered by more than one plugin: {plugins}; "
                f"block one with no:NAME (or leave it out of {PLUGINS_ENV}), or rename it"
            )
        return entry.factory

    def names(self, kind: str) -> list[str]:
        return sorted(self.table(kind))

    def name_of(self, kind: str, factory: Any) -> str | None:
        """The name under which ``factory`` (a layer's class, say) is registered."""
        return next((n for n, e in self.table(kind).items() if e.factory is factory), None)

    def plugins(self) -> list[dict[str, Any]]:
        """One record per plugin, loaded or broken: ``name``, ``source``, ``distribution``,
        ``version``, ``hooks``, ``registers`` (kind -> names), ``conflicts`` and ``error``."""
        tables = self.tables()
        dists = {self.get_name(p): d for p, d in self.list_plugin_distinfo()}
        records = []
        for name, plugin in self.list_name_plugin():
            if plugin is None:
                continue  # blocked
            mine = {
                kind: sorted(n for n, e in table.items() if name in (e.plugin, *e.rivals))
                for kind, table in tables.items()
            }
            dist = dists.get(name)
            records.append(
                {
                    "name": name,
                    "source": self.sources.get(name, "module"),
                    "distribution": dist.project_name if dist else "",
                    "version": dist.version if dist else "",
                    "hooks": sorted(h.name for h in self.get_hookcallers(plugin) or []),
                    "registers": {k: v for k, v in mine.items() if v},
                    "conflicts": [
                        f"{k} {n}" for k, v in mine.items() for n in v if tables[k][n].rivals
                    ],
                    "error": "",
                }
            )
        for name, error in self.errors.items():
            if not self.has_plugin(name):
                records.append({"name": name, "source": self.sources.get(name, ""), "error": error})
        return records

    def reset(self) -> None:
        """Forget every plugin, block and error: as if freshly imported (for tests)."""
        for name, plugin in self.list_name_plugin():
            if plugin is None:
                self.unblock(name)
            else:
                self.unregister(plugin=plugin, name=name)
        self._plugin_distinfo.clear()
        self.errors.clear()
        self.sources.clear()
        self._warned.clear()
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


def _import_module(spec: str, installed: list[str]) -> object:
    try:
        found = importlib.util.find_spec(spec)
    except ModuleNotFoundError:
        found = None
    if found is None:
        raise PluginError(
            f"no such file, installed plugin or module (installed plugins: "
            f"{', '.join(installed) or 'none'})"
        )
    return importlib.import_module(spec)


def _import_file(path: Path) -> object:
    if not path.is_file():
        raise PluginError("it is a directory" if path.is_dir() else "no such file")
    # One module name per file, so two files with the same stem do not replace each other.
    modname = f"minidl_plugin_{re.sub(r'[^0-9a-zA-Z_]', '_', str(path))}"
    module_spec = importlib.util.spec_from_file_location(modname, path)
    if module_spec is None or module_spec.loader is None:
        raise PluginError("not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[modname] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[modname]
        raise
    return module


#: The one plugin manager.
registry = Registry()
