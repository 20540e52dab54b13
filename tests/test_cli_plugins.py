"""--layer-plugin, plugin commands, `minidl-run plugins`, and plugins in sweep workers."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from clitools import invoke, one_thread  # noqa: F401 (one_thread: an autouse fixture)
from test_registry import registry_state

from minidl import registry
from minidl.cli import cli

CUBE = '''
import click
from minidl import ModuleBase, hookimpl

class Cube(ModuleBase):
    """x ** 3: a layer with no parameters and no base class requirements."""

    def forward(self, x):
        self.x = x
        return x**3

    def backward(self, grad):
        return grad * 3 * self.x**2


@hookimpl
def register_layers(register):
    register("cube", Cube)


@hookimpl
def register_commands(cli):
    @cli.command()
    @click.argument("name")
    def hello(name):
        """Greet NAME."""
        click.echo(f"hello {name}")
'''


@pytest.fixture(autouse=True)
def isolated_registry() -> Iterator[None]:
    """Plugins loaded by a test, and the commands they add, are gone after it."""
    commands = dict(cli.commands)
    modules = set(sys.modules)
    with registry_state():
        yield
    cli.commands.clear()
    cli.commands.update(commands)
    for name in set(sys.modules) - modules:
        if name.startswith("minidl_plugin_"):
            del sys.modules[name]


@pytest.fixture
def cube(tmp_path: Path) -> Path:
    path = tmp_path / "cube_plugin.py"
    path.write_text(CUBE)
    return path


FAST = ["--epochs", "2", "--n-train", "100", "--n-test", "50"]


def test_layer_plugin_adds_a_layer_and_a_command(cube: Path) -> None:
    document = json.loads(
        invoke("--layer-plugin", str(cube), "train", "--activation", "cube", *FAST, "--json").stdout
    )
    assert document["config"]["activation"] == "cube"
    assert invoke("--layer-plugin", str(cube), "hello", "world").stdout == "hello world\n"
    assert "hello" in invoke("--layer-plugin", str(cube), "--help").stdout
    # The model spec syntax takes it too.
    invoke(
        "--layer-plugin",
        str(cube),
        "train",
        "--model",
        "linear(4), cube, linear(1), sigmoid",
        *FAST,
    )


def test_plugins_lists_builtins_and_loaded_plugins(cube: Path) -> None:
    records = json.loads(invoke("--layer-plugin", str(cube), "plugins", "--json").stdout)["plugins"]
    by_name = {r["name"]: r for r in records}
    layers = by_name["minidl.plugins.layers"]
    assert layers["status"] == "ok" and layers["distribution"] == "minidl" and layers["builtin"]
    assert layers["registers"]["layer"] == ["linear", "relu", "sigmoid", "standardize", "tanh"]
    mine = by_name[str(cube.resolve())]
    assert mine["status"] == "ok" and not mine["builtin"]
    assert mine["hooks"] == ["register_commands", "register_layers"]
    assert mine["registers"] == {"layer": ["cube"]}
    text = invoke("--layer-plugin", str(cube), "plugins").stdout
    assert "minidl.plugins.optimizers" in text and "optimizer: adam, sgd" in text
    assert f"{cube.resolve()}" in text and "layer: cube" in text


def test_broken_plugins(tmp_path: Path) -> None:
    missing = tmp_path / "missing.py"
    result = invoke("--layer-plugin", str(missing), "plugins", code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--layer-plugin" in lines[0] and str(missing) in lines[0]
    syntax = tmp_path / "syntax.py"
    syntax.write_text("def broken(:\n")
    result = invoke("--layer-plugin", str(syntax), "train", code=2)
    assert "syntax error at line 1" in result.stderr and "Traceback" not in result.output
    # A plugin whose hook raises is listed as broken; the rest of the CLI keeps working.
    raising = tmp_path / "raising.py"
    raising.write_text(
        textwrap.dedent(
            """
            from minidl import hookimpl

            @hookimpl
            def register_layers(register):
                raise RuntimeError("boom")
            """
        )
    )
    result = invoke("--layer-plugin", str(raising), "plugins", "--json")
    record = next(
        r for r in json.loads(result.stdout)["plugins"] if r["name"] == str(raising.resolve())
    )
    assert record["status"] == "broken" and "boom" in record["error"]
    invoke("--layer-plugin", str(raising), "train", *FAST)


def test_a_plugin_cannot_replace_a_builtin_command(tmp_path: Path) -> None:
    rogue = tmp_path / "rogue.py"
    rogue.write_text(
        textwrap.dedent(
            """
            import click
            from minidl import hookimpl

            @hookimpl
            def register_commands(cli):
                @cli.command("train")
                def fake():
                    click.echo("fake")
            """
        )
    )
    result = invoke("--layer-plugin", str(rogue), "train", *FAST)
    assert "train accuracy" in result.stdout and "fake" not in result.stdout
    assert "replaced the built-in command 'train'" in result.stderr


def test_builtins_cannot_be_blocked() -> None:
    result = invoke("--layer-plugin", "no:minidl.plugins.layers", "plugins", code=2)
    assert "built-in plugins always load" in result.stderr


def test_saved_model_with_a_plugin_layer(cube: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    invoke("--layer-plugin", str(cube), "train", "--activation", "cube", *FAST, "--out", str(out))
    assert json.loads((out / "model.json").read_text())["metadata"]["plugins"]["cube"] == str(
        cube.resolve()
    )
    document = json.loads(
        invoke("--layer-plugin", str(cube), "predict", str(out), "0.5", "0.5", "--json").stdout
    )
    assert len(document["predictions"]) == 1
    registry.pm.unregister(name=str(cube.resolve()))
    result = invoke("predict", str(out), "0.5", "0.5", code=2)
    assert "unknown layer 'cube'" in result.stderr and "plugin" in result.stderr


def test_sweep_jobs_gives_the_same_numbers_and_workers_load_plugins(cube: Path) -> None:
    args = ["--activation", "relu,cube", "--optimizer", "adam", "--rounds", "2", *FAST, "--json"]
    one = json.loads(invoke("--layer-plugin", str(cube), "sweep", *args, "--jobs", "1").stdout)
    two = json.loads(invoke("--layer-plugin", str(cube), "sweep", *args, "--jobs", "2").stdout)
    assert [r["activation"] for r in one["rows"]] == ["relu", "cube"]
    assert one == two
