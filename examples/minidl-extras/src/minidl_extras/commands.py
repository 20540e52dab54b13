"""``minidl-run extras-info``: a command, added through the register_commands hook."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from minidl import registry
from minidl.cli.commands.plugins import records


def _record() -> dict[str, Any]:
    """This plugin's entry in minidl's plugin list, whichever name it was loaded under."""
    name = registry.get_name(sys.modules[__package__ or "minidl_extras"])
    return next((r for r in records() if r["name"] == name), {})


@click.command("extras-info")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def extras_info(as_json: bool) -> None:
    """Show what the minidl-extras plugin registered."""
    from . import __version__

    record = _record()
    info = {
        "plugin": record.get("name", ""),
        "version": __version__,
        "registers": record.get("registers", {}),
    }
    if as_json:
        click.echo(json.dumps(info))
        return
    click.echo(f"minidl-extras {__version__} (plugin {info['plugin']!r})")
    for kind, names in info["registers"].items():
        click.echo(f"  {kind}: {', '.join(names)}")
