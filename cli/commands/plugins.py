"""``minidl-run plugins``: every plugin, where it comes from, and what it registers."""

from __future__ import annotations

from typing import Any

import click

import minidl
from minidl.spec import settings

from ..output import echo_json


def listing() -> list[dict[str, Any]]:
    """The registry's records, built-ins first, each name with its settings and defaults."""
    tables = minidl.registry.tables()
    records = sorted(minidl.registry.plugins(), key=lambda r: (r["source"] != "builtin", r["name"]))
    for r in records:
        r["status"] = "broken" if r["error"] else "ok"
        r["settings"] = {
            kind: {name: _plain(settings(tables[kind][name].factory, kind)) for name in names}
            for kind, names in r.get("registers", {}).items()
        }
    return records


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """JSON data: a tuple of numbers becomes a list, anything else not JSON its repr."""

    def plain(v: Any) -> Any:
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        return v if isinstance(v, bool | int | float | str | None) else repr(v)

    return {k: plain(v) for k, v in values.items()}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def plugins(as_json: bool) -> None:
    """List plugins: name, distribution and version, hooks, the names each registers by
    kind (with their settings), and status (ok, or broken with its error)."""
    records = listing()
    if as_json:
        echo_json({"plugins": records})
        return
    for r in records:
        origin = (
            f"{r.get('distribution', '')} {r.get('version', '')}".strip() or "loaded for this run"
        )
        kind = "built-in" if r["source"] == "builtin" else "plugin"
        click.echo(f"{r['name']}  [{kind}, {origin}]  {r['status']}")
        if r.get("hooks"):
            click.echo(f"    hooks: {', '.join(r['hooks'])}")
        for kind_name, names in r.get("registers", {}).items():
            shown = [
                f"{n}({', '.join(f'{k}={v!r}' for k, v in r['settings'][kind_name][n].items())})"
                if r["settings"][kind_name][n]
                else n
                for n in names
            ]
            click.echo(f"    {kind_name}: {', '.join(shown)}")
        if r.get("conflicts"):  # using such a name is an error saying how to pick one
            click.echo(f"    also registered by another plugin: {', '.join(r['conflicts'])}")
        if r["error"]:
            click.echo(f"    error: {r['error']}")


@minidl.hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(plugins)
