"""``minidl-run plugins``: every plugin, where it comes from, and what it registers."""

from __future__ import annotations

from typing import Any

import click

import minidl
from minidl.spec import settings

from ..output import echo_json


def records() -> list[dict[str, Any]]:
    """One record per plugin, loaded or broken, built-ins first: ``name``, ``source``
    (builtin, entry point, file, module), ``distribution``, ``version``, ``hooks``,
    ``registers`` (kind -> names), ``settings`` (kind -> name -> setting -> default),
    ``conflicts`` (names another plugin claims too), ``status`` and ``error``."""
    registry = minidl.registry
    tables = registry.tables()
    dists = {registry.get_name(p): d for p, d in registry.list_plugin_distinfo()}
    found = []
    for name, plugin in registry.list_name_plugin():
        if plugin is None:
            continue  # blocked
        mine = {
            kind: sorted(n for n, e in table.items() if name in (e.plugin, *e.rivals))
            for kind, table in tables.items()
        }
        mine = {kind: names for kind, names in mine.items() if names}
        dist = dists.get(name)
        found.append(
            {
                "name": name,
                "source": registry.sources.get(name, "module"),
                "distribution": dist.project_name if dist else "",
                "version": dist.version if dist else "",
                "hooks": sorted(h.name for h in registry.get_hookcallers(plugin) or []),
                "registers": mine,
                "settings": {
                    kind: {n: _plain(settings(tables[kind][n].factory, kind)) for n in names}
                    for kind, names in mine.items()
                },
                "conflicts": [
                    f"{k} {n}" for k, v in mine.items() for n in v if tables[k][n].rivals
                ],
                "status": "ok",
                "error": "",
            }
        )
    for name, error in registry.errors.items():
        if not registry.has_plugin(name):
            source = registry.sources.get(name, "")
            found.append({"name": name, "source": source, "status": "broken", "error": error})
    return sorted(found, key=lambda r: (r["source"] != "builtin", r["name"]))


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
    listed = records()
    if as_json:
        echo_json({"plugins": listed})
        return
    for r in listed:
        origin = f"{r.get('distribution', '')} {r.get('version', '')}".strip()
        if not origin:
            origin = (
                f"minidl {minidl.__version__}"
                if r["source"] == "builtin"
                else "loaded for this run"
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
