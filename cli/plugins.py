"""``minidl-run plugins``: every plugin, where it comes from, and what it registers."""

from __future__ import annotations

import click

from minidl import registry

from .output import echo_json


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def plugins(as_json: bool) -> None:
    """List plugins: name, distribution and version, hooks, the names each registers by
    kind, and status (ok, or broken with its error). Built-ins are listed too."""
    # Built-ins first, in the registry's order, then the others by name.
    order = {name: i for i, name in enumerate(registry.BUILTIN_PLUGINS)}
    records = sorted(
        registry.plugins(), key=lambda r: (order.get(r["name"], len(order)), r["name"])
    )
    if as_json:
        echo_json({"plugins": records})
        return
    for r in records:
        origin = (
            f"{r['distribution']} {r['version']}".strip() or "not installed (loaded for this run)"
        )
        kind = "built-in" if r["builtin"] else "plugin"
        click.echo(f"{r['name']}  [{kind}, {origin}]  {r['status']}")
        if r["hooks"]:
            click.echo(f"    hooks: {', '.join(r['hooks'])}")
        for kind_name, names in r["registers"].items():
            click.echo(f"    {kind_name}: {', '.join(names)}")
        if r.get("conflicts"):
            # Using such a name is an error that says how to pick one of the plugins.
            click.echo(f"    also registered by another plugin: {', '.join(r['conflicts'])}")
        if r["error"]:
            click.echo(f"    error: {r['error']}")
