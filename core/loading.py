"""Importing a plugin that is not installed (a ``.py`` file, a dotted module), and saying
in one line what a plugin raised, and where."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import traceback
from importlib.metadata import EntryPoint
from pathlib import Path

import pluggy

from . import hookspecs
from .errors import PluginError

#: The hooks a misspelt hook name is compared with.
HOOKS = [name for name in dir(hookspecs) if name.startswith("register_")]


def plugin_error_message(e: BaseException, filename: str | None = None) -> str:
    """``Type: message (where)`` on one line; where is the deepest frame in ``filename``
    (the plugin's own file), or else outside importlib."""
    if isinstance(e, PluginError):
        return e.message
    if isinstance(e, SyntaxError) and e.lineno is not None:
        return f"syntax error in {Path(e.filename or '?').name} at line {e.lineno}: {e.msg}"
    if isinstance(e, pluggy.PluginValidationError):
        first, *rest = str(e).splitlines()
        asks = re.search(r"definition: (\w+)\((.*)\)", str(e))
        if asks and asks[1] in HOOKS:  # a hook that asks for an argument it is not given
            passes = ", ".join(inspect.signature(getattr(hookspecs, asks[1])).parameters)
            return f"its {asks[1]}({asks[2]}) asks for arguments the hook does not pass; the hook passes: {passes}"
        if not first.startswith("unknown hook"):
            return "; ".join(line.strip() for line in rest if line.strip())
        hook = first.split("'")[1]
        close = difflib.get_close_matches(hook, HOOKS, 1)
        return f"unknown hook {hook!r}" + (f"; did you mean {close[0]!r}?" if close else "")
    frames = [
        f
        for f in traceback.extract_tb(e.__traceback__)
        if (f.filename == filename if filename else f"{os.sep}importlib{os.sep}" not in f.filename)
        and f.filename[:1] != "<"
    ]
    where = ""
    if frames:
        place = "" if filename else "/".join(Path(frames[-1].filename).parts[-2:]) + ", "
        where = f" ({place}line {frames[-1].lineno})"
    return f"{type(e).__name__}: {' '.join(str(e).split()) or '(no message)'}{where}"


def import_module(spec: str, installed: dict[str, EntryPoint]) -> object:
    try:
        found = importlib.util.find_spec(spec)
    except ModuleNotFoundError:
        found = None
    if found is None:
        names = ", ".join(
            sorted(n for n, ep in installed.items() if ep.dist is None or ep.dist.name != "minidl")
        )
        raise PluginError(
            f"no such file, installed plugin or module (installed plugins: {names or 'none'})"
        )
    return importlib.import_module(spec)


def import_file(path: Path) -> object:
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
