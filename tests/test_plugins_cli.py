"""Plugin failures as `minidl-run` shows them: one line naming the plugin, exit code 2 for a
plugin that was asked for and cannot load, and the rest of the CLI still working."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from test_plugins import GOOD, install, site_fixture  # noqa: F401  (the fixture `site`)

from minidl import registry
from minidl.cli import cli

FAST = ["--epochs", "1", "--n-train", "50", "--n-test", "20"]


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(registry.PLUGINS_ENV, raising=False)
    commands = dict(cli.commands)
    registry.reset()
    try:
        yield
    finally:
        fresh_process()
        cli.commands.clear()
        cli.commands.update(commands)


def fresh_process() -> None:
    """What a new `minidl-run` process starts from: no plugin loaded yet."""
    registry.reset()
    cli._hooked = None  # type: ignore[attr-defined]


def invoke(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, list(args), prog_name="minidl-run")
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def only_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_a_broken_installed_plugin_is_one_warning_and_listed_as_broken(site: Path) -> None:
    install(site, "good-dist", "good_plugin", GOOD, "good")
    install(site, "bad-dist", "bad_plugin", "import scipy_not_here\n", "bad")
    result = invoke("plugins")
    assert only_line(result.stderr) == (
        "Warning: Error importing plugin 'bad' (bad-dist 1.2.3): ModuleNotFoundError: "
        "No module named 'scipy_not_here' (site/bad_plugin.py, line 1)"
    )
    assert "bad  [plugin, bad-dist 1.2.3]  broken" in result.stdout
    assert "good  [plugin, good-dist 1.2.3]  ok" in result.stdout
    registry.reset()
    trained = invoke("train", "--activation", "double", *FAST)  # the good one works
    assert "accuracy" in trained.stdout and trained.stderr.count("Warning:") == 1


def test_a_hook_that_raises_is_listed_as_broken_and_the_run_goes_on(site: Path) -> None:
    install(
        site,
        "raising-dist",
        "raising_plugin",
        """
        from minidl import hookimpl

        @hookimpl
        def register_datasets(register):
            raise KeyError("MINIDL_DATA_DIR")
        """,
        "raising",
    )
    result = invoke("train", *FAST)
    assert only_line(result.stderr) == (
        "Warning: Error in plugin 'raising' (raising-dist 1.2.3): its hook register_datasets "
        "raised KeyError: 'MINIDL_DATA_DIR' (line 6)"
    )
    registry.reset()
    records = json.loads(invoke("plugins", "--json").stdout)["plugins"]
    assert next(r for r in records if r["name"] == "raising")["status"] == "broken"


def test_a_misspelled_hook_in_a_layer_plugin_stops_the_run(tmp_path: Path) -> None:
    path = tmp_path / "typo.py"
    path.write_text(
        "from minidl import hookimpl\n\n@hookimpl\ndef register_layer(register):\n    pass\n"
    )
    result = invoke("--layer-plugin", str(path), "train", *FAST, code=2)
    assert only_line(result.stderr) == (
        f"Error: Invalid value for '--layer-plugin': Error in plugin {str(path.resolve())!r}: "
        "unknown hook 'register_layer'; did you mean 'register_layers'?"
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (None, "no such file"),
        ("def register_layers(register)\n", "syntax error at line 1: expected ':'"),
        (
            "import torch\nx = torch.nope\n",
            "AttributeError: module 'torch' has no attribute 'nope' (line 2)",
        ),
    ],
)
def test_a_layer_plugin_that_cannot_be_imported(
    tmp_path: Path, source: str | None, expected: str
) -> None:
    path = tmp_path / "plugin.py"
    if source is not None:
        path.write_text(source)
    result = invoke("--layer-plugin", str(path), "plugins", code=2)
    assert only_line(result.stderr) == (
        f"Error: Invalid value for '--layer-plugin': Error importing plugin "
        f"{str(path.resolve())!r}: {expected}"
    )


def test_two_plugins_one_name_then_each_way_to_pick(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(site, "first-dist", "first_plugin", GOOD, "first")
    install(site, "second-dist", "second_plugin", GOOD, "second")
    result = invoke("train", "--model", "linear(4), double, linear(1)", *FAST, code=2)
    line = only_line(result.stderr)
    assert "layer 'double' is registered by more than one plugin" in line
    assert "'first' (first-dist 1.2.3) and 'second' (second-dist 1.2.3)" in line
    assert "--layer-plugin no:first" in line and "MINIDL_PLUGINS" in line
    listing = invoke("plugins").stdout
    assert listing.count("also registered by another plugin: layer double") == 2

    registry.reset()
    result = invoke("--layer-plugin", "no:first", "train", "--activation", "double", *FAST)
    assert result.stderr == ""
    registry.reset()
    monkeypatch.setenv(registry.PLUGINS_ENV, "second")
    assert invoke("train", "--activation", "double", *FAST).stderr == ""


def test_blocking_a_builtin_is_refused() -> None:
    result = invoke("--layer-plugin", "no:optimizers", "train", *FAST, code=2)
    assert only_line(result.stderr).startswith(
        "Error: Invalid value for '--layer-plugin': cannot block 'optimizers': built-in "
        "plugins always load"
    )


def test_minidl_plugins_empty_loads_none(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(site, "bad-dist", "bad_plugin", "raise SystemError('never imported')\n", "bad")
    monkeypatch.setenv(registry.PLUGINS_ENV, "")
    result = invoke("plugins", "--json")
    assert result.stderr == ""
    assert all(r["builtin"] for r in json.loads(result.stdout)["plugins"])


def test_a_plugin_command_and_a_clashing_one(tmp_path: Path) -> None:
    path = tmp_path / "cmds.py"
    path.write_text(
        textwrap.dedent(
            """
            import click
            from minidl import hookimpl

            @hookimpl
            def register_commands(cli):
                @cli.command("greet")
                def greet():
                    click.echo("hello from a plugin")

                @cli.command("predict")
                def predict():
                    click.echo("hijacked")
            """
        )
    )
    first = invoke("--layer-plugin", str(path), "greet")
    assert first.stdout == "hello from a plugin\n"
    assert "replaced the built-in command 'predict'" in only_line(first.stderr)
    fresh_process()
    result = invoke("--layer-plugin", str(path), "predict", "--help")
    assert "hijacked" not in result.stdout
    assert "replaced the built-in command 'predict'" in only_line(result.stderr)
