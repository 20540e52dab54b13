"""Third-party plugins through the registry: installed (entry points), one-file, by module,
and every way one can break, each reported in one line naming the plugin."""

from __future__ import annotations

import contextlib
import os
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import torch
from torch import Tensor

import minidl
from minidl import Parameter, PluginError, hookimpl, registry
from minidl.errors import DuplicateNameError, UnknownNameError
from minidl.registry import PluginWarning


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts from the built-ins alone and leaves no plugin, block or error."""
    monkeypatch.delenv(registry.PLUGINS_ENV, raising=False)
    registry.reset()
    try:
        yield
    finally:
        registry.reset()


@contextlib.contextmanager
def registered(plugin: object, name: str) -> Iterator[None]:
    registry.load_plugins()
    registry.pm.register(plugin, name=name)
    try:
        yield
    finally:
        if registry.pm.has_plugin(name):
            registry.pm.unregister(name=name)


def install(
    site: Path, dist: str, module: str, source: str, entry_point: str | None = None
) -> None:
    """A real installed distribution as importlib.metadata sees it: a dist-info folder with
    an entry point in the ``minidl`` group, and the module beside it. ``site`` must be on
    sys.path."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[minidl]\n{entry_point or module} = {module}\n")


@pytest.fixture(name="site")
def site_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path to install into; its modules are forgotten afterwards, so the
    next test's module of the same name is imported afresh."""
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    yield path
    for module in path.glob("*.py"):
        sys.modules.pop(module.stem, None)


GOOD = """
    from minidl import hookimpl

    class Double:
        def forward(self, x):
            return 2 * x

        def backward(self, grad_output):
            return 2 * grad_output

        def parameters(self):
            return []

    @hookimpl
    def register_layers(register):
        register("double", Double)
"""


def record(name: str) -> dict[str, Any]:
    return next(r for r in registry.plugins() if r["name"] == name)


@contextlib.contextmanager
def no_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def one_line(message: str) -> str:
    assert "\n" not in message, message
    return message


# --- installed plugins ------------------------------------------------------------------


def test_an_installed_plugin_loads_with_no_other_step(site: Path) -> None:
    install(site, "good-dist", "good_plugin", GOOD, entry_point="good")
    layer = registry.get("layer", "double")()
    assert torch.equal(layer.forward(torch.ones(2, 1)), torch.full((2, 1), 2.0))
    info = record("good")
    assert (info["distribution"], info["version"], info["source"]) == (
        "good-dist",
        "1.2.3",
        "entry point",
    )
    assert info["registers"] == {"layer": ["double"]} and info["status"] == "ok"


def test_import_error_in_an_entry_point_breaks_only_that_plugin(site: Path) -> None:
    install(site, "good-dist", "good_plugin", GOOD, entry_point="good")
    install(site, "bad-dist", "bad_plugin", "import numpy_that_is_not_there\n", "bad")
    with pytest.warns(PluginWarning) as caught:
        assert "double" in registry.names("layer")  # the good one still works
    message = one_line(str(caught[0].message))
    assert message == (
        "Error importing plugin 'bad' (bad-dist 1.2.3): ModuleNotFoundError: "
        "No module named 'numpy_that_is_not_there' (site/bad_plugin.py, line 1)"
    )
    assert record("bad")["status"] == "broken" and record("bad")["error"] == message
    assert record("good")["status"] == "ok"
    assert registry.get("layer", "relu") is minidl.plugins.ReLU


def test_a_hook_that_raises_breaks_its_whole_plugin(site: Path) -> None:
    install(
        site,
        "raising-dist",
        "raising_plugin",
        """
        from minidl import hookimpl

        @hookimpl
        def register_losses(register):
            register("half_loss", object)

        @hookimpl
        def register_layers(register):
            register("fine", object)
            raise RuntimeError("config file missing")
        """,
        "raising",
    )
    with pytest.warns(PluginWarning, match="its hook register_layers raised") as caught:
        with pytest.raises(UnknownNameError, match="unknown loss 'half_loss'; available: mse"):
            registry.get("loss", "half_loss")
    assert one_line(str(caught[0].message)) == (
        "Error in plugin 'raising' (raising-dist 1.2.3): its hook register_layers raised "
        "RuntimeError: config file missing (line 11)"
    )
    assert "fine" not in registry.names("layer")
    assert record("raising")["status"] == "broken"


def test_a_misspelled_hook_is_named_with_the_right_spelling() -> None:
    class Typo:
        @hookimpl
        def register_layer(self, register: Any) -> None:
            register("never", object)

    with pytest.warns(PluginWarning) as caught, registered(Typo(), "typo"):
        registry.names("layer")
    assert one_line(str(caught[0].message)) == (
        "Error in plugin 'typo': unknown hook 'register_layer'; did you mean 'register_layers'?"
    )
    assert record("typo")["status"] == "broken"
    assert "never" not in registry.names("layer")


def test_misspelled_hook_in_an_installed_plugin(site: Path) -> None:
    install(
        site,
        "typo-dist",
        "typo_plugin",
        "from minidl import hookimpl\n\n@hookimpl\ndef register_optimiser(register):\n    pass\n",
        "typo",
    )
    with pytest.warns(PluginWarning, match="did you mean 'register_optimizers'"):
        registry.load_plugins()
    assert record("typo")["error"] == (
        "Error in plugin 'typo' (typo-dist 1.2.3): unknown hook 'register_optimiser'; "
        "did you mean 'register_optimizers'?"
    )


def test_an_unmarked_hook_and_a_wrong_argument_are_explained(tmp_path: Path) -> None:
    """Hooks that cannot be registered: asked for by --layer-plugin, the plugin does not
    load (an error, no warning besides); it is listed as broken."""
    unmarked = tmp_path / "unmarked.py"
    unmarked.write_text("def register_layers(register):\n    register('x', object)\n")
    wrong = tmp_path / "wrong.py"
    wrong.write_text(
        "from minidl import hookimpl\n\n@hookimpl\ndef register_layers(reg):\n    pass\n"
    )
    empty = tmp_path / "empty.py"
    empty.write_text("X = 1\n")
    messages = []
    for path in (unmarked, wrong, empty):
        with no_warnings(), pytest.raises(PluginError) as error:
            registry.load_plugin(str(path))
        messages.append(one_line(str(error.value)))
    assert messages == [
        f"Error in plugin {str(unmarked.resolve())!r}: register_layers() is not marked with "
        "@minidl.hookimpl, so minidl would never call it",
        f"Error in plugin {str(wrong.resolve())!r}: its register_layers(reg) asks for 'reg', "
        "which the hook does not pass; the hook passes: register",
        f"Error in plugin {str(empty.resolve())!r}: it implements none of minidl's hooks "
        f"({', '.join(registry.HOOKS)}); mark them with @minidl.hookimpl",
    ]
    for path, message in zip((unmarked, wrong, empty), messages, strict=True):
        assert record(str(path.resolve()))["error"] == message


# --- two plugins, one name ---------------------------------------------------------------


def test_two_plugins_registering_one_name_are_both_named_with_how_to_pick(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(site, "first-dist", "first_plugin", GOOD, "first")
    install(site, "second-dist", "second_plugin", GOOD, "second")
    with no_warnings():  # an error only when the name is used
        assert "double" in registry.names("layer")
    with pytest.raises(DuplicateNameError) as error:
        registry.get("layer", "double")
    assert one_line(str(error.value)) == (
        "layer 'double' is registered by more than one plugin: 'first' (first-dist 1.2.3) "
        "and 'second' (second-dist 1.2.3); to pick one, block 'first' with --layer-plugin "
        "no:first (or leave it out of MINIDL_PLUGINS); or block 'second' with --layer-plugin "
        "no:second (or leave it out of MINIDL_PLUGINS)"
    )
    assert record("first")["conflicts"] == ["layer double"]
    assert registry.get("layer", "relu") is minidl.plugins.ReLU  # other names unaffected

    # Either suggested fix works.
    registry.load_plugin("no:first")
    assert registry.plugin_of("layer", "double") == "second"
    registry.get("layer", "double")
    registry.reset()
    monkeypatch.setenv(registry.PLUGINS_ENV, "first")
    assert registry.plugin_of("layer", "double") == "first"
    registry.get("layer", "double")


def test_a_plugin_cannot_silently_replace_a_builtin(tmp_path: Path) -> None:
    plugin = tmp_path / "my_relu.py"
    plugin.write_text(
        "from minidl import hookimpl\nfrom minidl.plugins import Tanh\n\n"
        "@hookimpl\ndef register_layers(register):\n    register('relu', Tanh)\n"
    )
    registry.load_plugin(str(plugin))
    with pytest.raises(DuplicateNameError) as error:
        registry.get("layer", "relu")
    assert one_line(str(error.value)) == (
        f"layer 'relu' is registered by more than one plugin: 'minidl.plugins.layers' and "
        f"{str(plugin.resolve())!r}; to pick one, drop --layer-plugin {plugin.resolve()}"
    )


def test_one_plugin_registering_a_name_twice_is_broken() -> None:
    class Twice:
        @hookimpl
        def register_layers(self, register: Any) -> None:
            register("same", object)
            register("Same", object)

    with pytest.warns(PluginWarning), registered(Twice(), "twice"):
        assert "same" not in registry.names("layer")
    assert record("twice")["error"].startswith(
        "Error in plugin 'twice': its hook register_layers raised ValueError: "
        "layer 'same' is registered twice by the same plugin (line "
    )


def test_invalid_names_and_factories_break_the_plugin() -> None:
    class BadName:
        @hookimpl
        def register_layers(self, register: Any) -> None:
            register("leaky-relu", object)

    class NotCallable:
        @hookimpl
        def register_losses(self, register: Any) -> None:
            register("loss", 42)

    with pytest.warns(PluginWarning), registered(BadName(), "badname"):
        with registered(NotCallable(), "notcallable"):
            registry.names("layer")
    assert "layer name 'leaky-relu' is not valid" in record("badname")["error"]
    assert "loss 'loss': factory 42 is not callable" in record("notcallable")["error"]


# --- MINIDL_PLUGINS ---------------------------------------------------------------------


def test_minidl_plugins_selects_installed_plugins(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(site, "good-dist", "good_plugin", GOOD, entry_point="good")
    install(site, "bad-dist", "bad_plugin", "raise ImportError('boom')\n", "bad")

    monkeypatch.setenv(registry.PLUGINS_ENV, "")  # set but empty: none
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "double" not in registry.names("layer")
        assert "linear" in registry.names("layer")  # built-ins always load
    assert [r["name"] for r in registry.plugins() if not r["builtin"]] == []

    registry.reset()
    monkeypatch.setenv(registry.PLUGINS_ENV, "good")  # the broken one stays out
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "double" in registry.names("layer")

    registry.reset()
    monkeypatch.setenv(registry.PLUGINS_ENV, "good, nope")
    with pytest.warns(PluginWarning) as caught:
        registry.load_plugins()
    assert one_line(str(caught[0].message)) == (
        "MINIDL_PLUGINS names 'nope', which is not an installed plugin; installed: bad, good"
    )

    # Named on the command line, a plugin loads although MINIDL_PLUGINS leaves it out.
    registry.reset()
    monkeypatch.setenv(registry.PLUGINS_ENV, "")
    assert registry.load_plugin("good") == "good"
    assert "double" in registry.names("layer")


# --- --layer-plugin ---------------------------------------------------------------------


def test_layer_plugin_file_loads_for_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "double.py"
    path.write_text(textwrap.dedent(GOOD))
    monkeypatch.chdir(tmp_path)
    name = str(path.resolve())  # a file plugin is named by its absolute path
    assert registry.load_plugin("double.py") == name
    assert registry.load_plugin(f".{os.sep}double.py") == name  # the same file loads once
    assert record(name)["source"] == "file"
    model = minidl.build_model("linear(3), double, linear(1)", 2)
    assert type(model[1]).__name__ == "Double"
    registry.reset()
    with pytest.raises(minidl.SpecError, match="unknown layer 'double'"):
        minidl.build_model("double", 2)


def test_layer_plugin_by_dotted_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text(textwrap.dedent(GOOD))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert registry.load_plugin("pkg.mod") == "pkg.mod"
    assert registry.plugin_of("layer", "double") == "pkg.mod"
    assert record("pkg.mod")["source"] == "module"


def test_layer_plugin_path_that_does_not_exist(tmp_path: Path) -> None:
    missing = str((tmp_path / "nope.py").resolve())
    with no_warnings(), pytest.raises(PluginError) as error:
        registry.load_plugin(missing)
    assert one_line(str(error.value)) == f"Error importing plugin {missing!r}: no such file"
    assert record(missing)["status"] == "broken"
    with pytest.raises(PluginError, match="no such file"):
        registry.load_plugin(missing)  # asked again: it still does not exist
    assert "relu" in registry.names("layer")


def test_layer_plugin_with_a_syntax_error_names_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "broken.py"
    monkeypatch.chdir(tmp_path)
    path.write_text("from minidl import hookimpl\n\n\ndef register_layers(register)\n    pass\n")
    with no_warnings(), pytest.raises(PluginError) as error:
        registry.load_plugin("broken.py")  # relative: named by its absolute path
    assert one_line(str(error.value)) == (
        f"Error importing plugin {str(path.resolve())!r}: syntax error at line 4: expected ':'"
    )
    assert record(str(path.resolve()))["status"] == "broken"


def test_layer_plugin_that_raises_on_import_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "raises.py"
    path.write_text("import math\n\nvalue = math.sqrt(-1)\n")
    with no_warnings(), pytest.raises(PluginError) as error:
        registry.load_plugin(str(path))
    assert one_line(str(error.value)) == (
        f"Error importing plugin {str(path.resolve())!r}: ValueError: math domain error (line 3)"
    )


def test_layer_plugin_with_a_misspelled_hook_does_not_load(tmp_path: Path) -> None:
    path = tmp_path / "typo.py"
    path.write_text(
        "from minidl import hookimpl\n\n@hookimpl\ndef register_layer(register):\n    pass\n"
    )
    for _ in range(2):  # asked again, it fails again
        with no_warnings(), pytest.raises(PluginError) as error:
            registry.load_plugin(str(path))
        assert one_line(str(error.value)) == (
            f"Error in plugin {str(path.resolve())!r}: unknown hook 'register_layer'; "
            "did you mean 'register_layers'?"
        )
    assert record(str(path.resolve()))["status"] == "broken"


def test_layer_plugin_whose_hook_raises_is_broken_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "raising.py"
    path.write_text(
        "from minidl import hookimpl\n\n@hookimpl\ndef register_losses(register):\n"
        "    register('l1', object)\n    raise OSError('no weights file')\n"
    )
    name = str(path.resolve())
    with pytest.warns(PluginWarning) as caught:
        assert registry.load_plugin(str(path)) == name
    assert [one_line(str(w.message)) for w in caught] == [
        f"Error in plugin {name!r}: its hook register_losses raised OSError: no weights file "
        "(line 6)"
    ]
    assert record(name)["status"] == "broken"
    assert registry.names("loss") == ["mse"]
    with no_warnings():
        assert registry.load_plugin(str(path)) == name  # asked again: still just broken


def test_layer_plugin_that_is_neither_file_module_nor_installed() -> None:
    with no_warnings(), pytest.raises(PluginError) as error:
        registry.load_plugin("no_such_plugin_module")
    assert one_line(str(error.value)).startswith(
        "Error importing plugin 'no_such_plugin_module': no module named "
        "'no_such_plugin_module', no such file and no installed plugin of that name"
    )


def test_blocking_a_builtin_is_refused_clearly() -> None:
    for name in ("layers", "minidl.plugins.optimizers"):
        with pytest.raises(PluginError) as error:
            registry.load_plugin(f"no:{name}")
        assert one_line(str(error.value)).startswith(
            f"cannot block {name!r}: built-in plugins always load"
        )
    assert "relu" in registry.names("layer")


def test_blocking_an_unknown_plugin_is_refused(site: Path) -> None:
    install(site, "good-dist", "good_plugin", GOOD, entry_point="good")
    with pytest.raises(PluginError) as error:
        registry.load_plugin("no:goood")
    assert str(error.value) == "cannot block 'goood': no plugin has that name; installed: good"


def test_a_blocked_plugin_stays_out_even_if_named(site: Path) -> None:
    install(site, "good-dist", "good_plugin", GOOD, entry_point="good")
    assert registry.load_plugin("no:good") == "good"
    assert "double" not in registry.names("layer")
    with pytest.raises(PluginError, match="blocked for this run by --layer-plugin no:good"):
        registry.load_plugin("good")


def test_replay_loads_the_same_specs_in_a_worker(tmp_path: Path) -> None:
    path = tmp_path / "double.py"
    path.write_text(textwrap.dedent(GOOD))
    registry.load_plugin(str(path))
    specs = list(registry.loaded_specs)
    registry.reset()
    registry.replay(specs)
    assert "double" in registry.names("layer")


# --- protocol only: no base classes ------------------------------------------------------


class Affine:
    """``y = a * x + b`` per feature, with no base class at all."""

    def __init__(self, in_features: int) -> None:
        self.a = Parameter(torch.ones(in_features), "a")
        self.b = Parameter(torch.zeros(in_features), "b")
        self.out_features = in_features

    def forward(self, x: Tensor) -> Tensor:
        self._x = x
        return x * self.a.data + self.b.data

    def backward(self, grad_output: Tensor) -> Tensor:
        self.a.grad.add_((grad_output * self._x).sum(0))
        self.b.grad.add_(grad_output.sum(0))
        return grad_output * self.a.data

    def parameters(self) -> list[Parameter]:
        return [self.a, self.b]


class PlainSGD:
    def __init__(self, parameters: Any, lr: float) -> None:
        self.params, self.lr = list(parameters), lr

    def step(self) -> None:
        for p in self.params:
            p.data.add_(p.grad, alpha=-self.lr)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad.zero_()


class ProtocolOnly:
    @hookimpl
    def register_layers(self, register: Any) -> None:
        register("affine", Affine)

    @hookimpl
    def register_optimizers(self, register: Any) -> None:
        register("plain_sgd", PlainSGD)


def test_protocol_only_classes_train_save_and_load(tmp_path: Path) -> None:
    from minidl.testing import check_layer, check_optimizer

    check_layer(lambda: Affine(3), (4, 3))
    check_optimizer(PlainSGD)
    with registered(ProtocolOnly(), "protocol_only"):
        result = minidl.run(
            model="affine, linear(8), tanh, linear(1), sigmoid",
            optimizer="plain_sgd",
            lr=0.5,
            epochs=3,
            n_train=200,
            n_test=100,
        )
        assert isinstance(result.model[0], Affine)
        assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
        minidl.save_model(result.model, tmp_path / "model")
        loaded, _ = minidl.load_model(tmp_path / "model")
        x = torch.rand(5, 2)
        torch.testing.assert_close(loaded.forward(x), result.model.forward(x))
    with pytest.raises(minidl.ModelFileError, match="unknown layer 'affine'"):
        minidl.load_model(tmp_path / "model")


# --- commands ---------------------------------------------------------------------------


def make_cli() -> click.Group:
    @click.group()
    def cli() -> None:
        pass

    @cli.command()
    def train() -> None:
        click.echo("the real train")

    return cli


def test_register_commands_adds_a_command_and_survives_broken_ones() -> None:
    class Adds:
        @hookimpl
        def register_commands(self, cli: Any) -> None:
            @cli.command("hello")
            def hello() -> None:
                click.echo("hi")

    class Raises:
        @hookimpl
        def register_commands(self, cli: Any) -> None:
            cli.add_command(click.Command("half", callback=lambda: None))
            raise KeyError("oops")

    class Clashes:
        @hookimpl
        def register_commands(self, cli: Any) -> None:
            cli.add_command(click.Command("train", callback=lambda: click.echo("hijacked")))
            cli.add_command(click.Command("hello", callback=lambda: click.echo("hijacked")))

    cli = make_cli()
    with (
        pytest.warns(PluginWarning) as caught,
        registered(Adds(), "adds"),
        registered(Raises(), "raises"),
        registered(Clashes(), "clashes"),
    ):
        registry.call_hook("register_commands", cli=cli)
        registry.call_hook("register_commands", cli=cli)  # idempotent
    assert sorted(cli.commands) == ["hello", "train"]
    from click.testing import CliRunner

    assert CliRunner().invoke(cli, ["train"]).output == "the real train\n"
    assert CliRunner().invoke(cli, ["hello"]).output == "hi\n"
    messages = [one_line(str(w.message)) for w in caught]
    assert messages == [
        "Error in plugin 'raises': its hook register_commands raised KeyError: 'oops' "
        f"(line {Raises.register_commands.__code__.co_firstlineno + 3})",
        "plugin 'clashes' replaced the built-in command 'train'; the built-in one is kept: "
        "give the plugin's command another name",
        "plugin 'clashes' replaced the command 'hello' of plugin 'adds'; the first one is "
        "kept: give one of them another name",
    ]
    assert record("raises")["status"] == "broken"

    # A fresh group (as in a test, or a second CLI object): the command is added again.
    other = make_cli()
    with no_warnings(), registered(Adds(), "adds_again"):
        registry.call_hook("register_commands", cli=other)
    assert sorted(other.commands) == ["hello", "train"]


# --- the record -------------------------------------------------------------------------


def test_plugins_lists_builtins_with_their_names() -> None:
    records = registry.plugins()
    builtins = [r for r in records if r["builtin"]]
    assert [r["name"] for r in builtins] == list(registry.BUILTIN_PLUGINS)
    layers = record("minidl.plugins.layers")
    assert layers["distribution"] == "minidl" and layers["version"] == minidl.__version__
    assert layers["registers"]["layer"] == registry.names("layer")
    assert all(r["status"] == "ok" for r in records)


def test_reset_forgets_everything_but_builtins(tmp_path: Path) -> None:
    path = tmp_path / "double.py"
    path.write_text(textwrap.dedent(GOOD))
    registry.load_plugin(str(path))
    with no_warnings(), pytest.raises(PluginError):
        registry.load_plugin(str(tmp_path / "missing.py"))
    registry.reset()
    assert registry.broken == {} and registry.loaded_specs == []
    assert [r["name"] for r in registry.plugins()] == list(registry.BUILTIN_PLUGINS)


def test_two_distributions_declaring_one_plugin_name(site: Path) -> None:
    install(site, "one-dist", "one_plugin", GOOD, "same")
    other = GOOD.replace('"double"', '"twice"')
    (site / "two_plugin.py").write_text(textwrap.dedent(other))
    info = site / "two_dist-9.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: two-dist\nVersion: 9.0\n")
    (info / "entry_points.txt").write_text("[minidl]\nsame = two_plugin\n")
    with pytest.warns(PluginWarning) as caught:
        names = registry.names("layer")
    (message,) = [one_line(str(w.message)) for w in caught]
    # Which comes first is the order importlib.metadata finds them in (directory order).
    first, second = (
        ("one", "two") if message.index("one-dist") < message.index("two") else ("two", "one")
    )
    versions = {"one": "1.2.3", "two": "9.0"}
    assert message == (
        f"two installed distributions declare the plugin 'same': {first}-dist "
        f"{versions[first]} and {second}-dist {versions[second]}; loading the first"
    )
    loaded = {"one": "double", "two": "twice"}
    assert loaded[first] in names and loaded[second] not in names
    assert record("same")["distribution"] == f"{first}-dist"
