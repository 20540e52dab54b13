"""The registry: built-ins and third parties share the entry points and the hooks; a plugin is
selected, loaded or blocked as pytest's are; every way one can break is reported in one line
naming it, and breaks that plugin alone."""

from __future__ import annotations

import inspect
import re
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

import minidl
from minidl import DuplicateNameError, Parameter, PluginError, UnknownNameError, hookimpl, hookspecs
from minidl.plugins import Linear, ReLU
from minidl.registry import ENTRY_POINT_GROUP, KINDS, PLUGINS_ENV, PluginWarning, registry

Plugin = Callable[[object, str], str]
DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts from the installed plugins as a fresh process would, and leaves no
    plugin, block or error behind."""
    monkeypatch.delenv(PLUGINS_ENV, raising=False)
    registry.reset()
    try:
        yield
    finally:
        registry.reset()


def install(site: Path, dist: str, module: str, source: str, entry_point: str) -> None:
    """A real installed distribution as importlib.metadata sees it: a dist-info folder with an
    entry point in the ``minidl`` group, and the module beside it (``site`` is on sys.path)."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[minidl]\n{entry_point} = {module}\n")


@pytest.fixture(name="site")
def site_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path to install into; its modules are forgotten afterwards."""
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
        register("{name}", Double)
"""


def good(name: str = "double") -> str:
    return GOOD.replace("{name}", name)


def alpha_beta(site: Path) -> None:
    install(site, "alpha-dist", "alpha_plugin", good("alpha_layer"), "alpha")
    install(site, "beta-dist", "beta_plugin", good("beta_layer"), "beta")


def caught_warnings(fn: Callable[[], Any]) -> list[str]:
    """Every PluginWarning that ``fn`` emits, none filtered out."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in record if issubclass(w.category, PluginWarning)]


class Double:
    """A third-party layer: no base class, just the protocol."""

    def forward(self, x: Tensor) -> Tensor:
        return 2 * x

    def backward(self, grad_output: Tensor) -> Tensor:
        return 2 * grad_output

    def parameters(self) -> list[Parameter]:
        return []


def layers_plugin(**layers: Any) -> object:
    class Layers:
        @hookimpl
        def register_layers(self, register: Callable[[str, Any], None]) -> None:
            for name, factory in layers.items():
                register(name, factory)

    return Layers()


# ---------------------------------------------------------------------------- built-ins

BUILTIN_NAMES = {
    "layer": [
        "dropout",
        "embedding",
        "gelu",
        "layernorm",
        "linear",
        "relu",
        "residual",
        "sigmoid",
        "standardize",
        "tanh",
    ],  # fmt: skip
    "loss": ["cross_entropy", "mse"],
    "optimizer": ["adam", "adamw", "sgd"],
    "dataset": ["disc"],
    "initializer": ["default", "he", "he_normal", "xavier", "xavier_normal"],
    "schedule": ["constant", "cosine", "step"],
    "callback": ["clip_grad_norm", "csv_logger", "early_stopping", "tensorboard"],
}


def test_builtins_load_through_entry_points_and_the_same_hooks() -> None:
    ours = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.dist and ep.dist.name == "minidl"}  # fmt: skip
    assert ours == {
        "minidl.layers": "minidl.plugins.layers",
        "minidl.activations": "minidl.plugins.activations",
        "minidl.containers": "minidl.plugins.containers",
        "minidl.dropout": "minidl.plugins.dropout",
        "minidl.embedding": "minidl.plugins.embedding",
        "minidl.norm": "minidl.plugins.norm",
        "minidl.losses": "minidl.plugins.losses",
        "minidl.optimizers": "minidl.plugins.optimizers",
        "minidl.datasets": "minidl.plugins.datasets",
        "minidl.callbacks": "minidl.plugins.callbacks",
        "minidl.initializers": "minidl.plugins.initializers",
        "minidl.schedules": "minidl.plugins.schedules",
    }
    for kind, expected in BUILTIN_NAMES.items():
        table = registry.table(kind)
        assert set(expected) <= set(table), kind
        for name in expected:
            plugin_name = table[name].plugin
            assert plugin_name in ours and registry.sources[plugin_name] == "builtin"
            plugin = registry.get_plugin(plugin_name)
            assert plugin is sys.modules[ours[plugin_name]]  # the module itself
            hooks = {h.name for h in registry.get_hookcallers(plugin) or []}
            assert KINDS[kind] in hooks
    assert registry.get("layer", "linear") is Linear
    assert registry.get("layer", "ReLU") is ReLU  # names are case-insensitive


def test_unknown_names_list_the_available_ones() -> None:
    with pytest.raises(UnknownNameError) as info:
        registry.get("layer", "conv3d")
    assert str(info.value) == "unknown layer 'conv3d'. Available names: " + ", ".join(
        registry.names("layer")
    )
    assert (info.value.kind, info.value.name) == ("layer", "conv3d")
    with pytest.raises(
        UnknownNameError, match="unknown optimizer 'rmsprop'. Available names: adam, "
    ):
        registry.get("optimizer", "rmsprop")
    with pytest.raises(
        UnknownNameError, match="unknown kind 'layr'. Available names: callback, dataset, "
    ):
        registry.get("layr", "relu")
    assert isinstance(info.value, LookupError) and info.value.exit_code == 2


def test_name_of_is_the_reverse_lookup(plugin: Plugin) -> None:
    assert registry.name_of("layer", Linear) == "linear"
    assert registry.name_of("optimizer", minidl.plugins.Adam) == "adam"
    assert registry.name_of("layer", minidl.plugins.Adam) is None
    assert registry.name_of("layer", Double) is None
    plugin(layers_plugin(MyDouble=Double), "doubling")
    assert registry.name_of("layer", Double) == "mydouble"  # registered names are lower-case


def test_reset_forgets_every_plugin_block_and_error_but_builtins_come_back(
    plugin: Plugin, site: Path
) -> None:
    install(site, "good-dist", "good_plugin", good(), "good")
    plugin(layers_plugin(tripled=Double), "tripling")
    registry.block("good")
    with pytest.raises(PluginError):
        registry.load(str(site / "missing.py"))
    assert registry.errors and registry.is_blocked("good") and registry.has_plugin("tripling")
    registry.reset()
    assert registry.errors == {} and registry.sources == {}
    assert not registry.is_blocked("good") and not registry.has_plugin("tripling")
    assert {"double", "linear"} <= set(registry.names("layer"))
    assert "tripled" not in registry.names("layer")


# ---------------------------------------------------------------------------- selecting


@pytest.mark.parametrize(
    "value,expected",
    [
        (None, {"alpha", "beta"}),  # unset: every installed plugin
        ("alpha", {"alpha"}),
        (" alpha , beta ", {"alpha", "beta"}),
        ("", set()),  # set but empty: none
        ("beta,", {"beta"}),
    ],
)
def test_minidl_plugins_selects_installed_plugins(
    site: Path, monkeypatch: pytest.MonkeyPatch, value: str | None, expected: set[str]
) -> None:
    alpha_beta(site)
    if value is not None:
        monkeypatch.setenv(PLUGINS_ENV, value)
    names = set(registry.names("layer"))
    assert {n.removesuffix("_layer") for n in names & {"alpha_layer", "beta_layer"}} == expected
    assert {n for n in ("alpha", "beta") if registry.has_plugin(n)} == expected
    assert set(BUILTIN_NAMES["layer"]) <= names  # minidl's own load whatever it says
    if value == "":  # none: no other installed plugin either
        others = {n for n, p in registry.list_name_plugin() if p is not None}
        assert {registry.sources[n] for n in others} == {"builtin"}
    if value is not None:
        assert registry.sources.get("alpha") == ("entry point" if "alpha" in expected else None)


def test_minidl_plugins_naming_an_uninstalled_plugin_warns(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha_beta(site)
    monkeypatch.setenv(PLUGINS_ENV, "alpha,gamma")
    assert caught_warnings(registry.load_plugins) == [
        "MINIDL_PLUGINS names 'gamma', which is not an installed plugin"
    ]
    assert registry.has_plugin("alpha") and not registry.has_plugin("beta")


def test_an_installed_plugin_loads_lazily_once(site: Path) -> None:
    install(site, "good-dist", "good_plugin", good(), "good")
    assert not registry.has_plugin("good")  # nothing loads until something is looked up
    assert registry.get("layer", "double")().forward(torch.ones(1, 1)).item() == 2.0
    module = sys.modules["good_plugin"]
    registry.load_plugins()
    registry.names("layer")
    assert registry.get_plugin("good") is module and registry.sources["good"] == "entry point"
    assert [d.project_name for p, d in registry.list_plugin_distinfo() if p is module] == [
        "good-dist"
    ]


# ---------------------------------------------------------------------------- loading


def test_load_a_py_file_once_by_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "double.py"
    path.write_text(textwrap.dedent(good()))
    monkeypatch.chdir(tmp_path)
    name = str(path.resolve())
    assert registry.load("double.py") == name
    assert registry.load("./double.py") == name  # the same file loads once
    assert len([p for n, p in registry.list_name_plugin() if n == name]) == 1
    assert registry.sources[name] == "file"
    assert registry.table("layer")["double"].plugin == name
    model = minidl.build("linear(3), double, linear(1)", (2,))
    assert type(model[1]).__name__ == "Double"
    registry.reset()
    with pytest.raises(minidl.SpecError, match="unknown layer 'double'"):
        minidl.build("double", (2,))


def test_two_files_with_one_stem_do_not_replace_each_other(tmp_path: Path) -> None:
    for folder, layer in (("a", "from_a"), ("b", "from_b")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "plugin.py").write_text(textwrap.dedent(good(layer)))
        registry.load(str(tmp_path / folder / "plugin.py"))
    assert {"from_a", "from_b"} <= set(registry.names("layer"))


def test_load_a_dotted_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text(textwrap.dedent(good()))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert registry.load("pkg.mod") == "pkg.mod"
        assert registry.table("layer")["double"].plugin == "pkg.mod"
        assert registry.sources["pkg.mod"] == "module"
        # An installed plugin's module is that plugin, not a second copy of it.
        assert registry.load("minidl.plugins.layers") == "minidl.layers"
        assert registry.get("layer", "linear") is Linear
    finally:
        sys.modules.pop("pkg.mod", None)
        sys.modules.pop("pkg", None)


def test_load_an_entry_point_by_name_even_if_minidl_plugins_leaves_it_out(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha_beta(site)
    monkeypatch.setenv(PLUGINS_ENV, "alpha")
    assert "beta_layer" not in registry.names("layer")
    assert registry.load("beta") == "beta"
    assert registry.table("layer")["beta_layer"].plugin == "beta"
    assert registry.sources["beta"] == "entry point"


def test_load_errors_name_the_plugin(tmp_path: Path) -> None:
    missing = str((tmp_path / "nope.py").resolve())
    with pytest.raises(PluginError) as info:
        registry.load(missing)
    assert str(info.value) == f'Error importing plugin "{missing}": no such file'
    assert registry.errors[missing] == str(info.value)
    with pytest.raises(
        PluginError, match=f'Error importing plugin "{tmp_path}": it is a directory'
    ):
        registry.load(str(tmp_path))
    with pytest.raises(PluginError) as info:
        registry.load("no_such_plugin_module_xyz")
    assert str(info.value).startswith(
        'Error importing plugin "no_such_plugin_module_xyz": no such file, installed plugin or '
        "module (installed plugins: "
    )
    syntax = tmp_path / "broken.py"
    syntax.write_text("from minidl import hookimpl\n\n\ndef register_layers(register)\n    pass\n")
    with pytest.raises(PluginError) as info:
        registry.load(str(syntax))
    assert str(info.value) == (
        f'Error importing plugin "{syntax.resolve()}": syntax error in broken.py at line 4: '
        "expected ':'"
    )
    assert "relu" in registry.names("layer")  # the rest works


# ---------------------------------------------------------------------------- blocking


def test_no_name_blocks_an_installed_plugin(site: Path) -> None:
    alpha_beta(site)
    assert registry.load("no:beta") == "beta"
    names = registry.names("layer")
    assert "alpha_layer" in names and "beta_layer" not in names
    assert "beta_plugin" not in sys.modules  # never even imported
    with pytest.raises(PluginError, match='plugin "beta" is blocked for this run by no:beta'):
        registry.load("beta")
    # Blocking a loaded plugin unregisters it.
    assert registry.has_plugin("alpha")
    registry.load("no:alpha")
    assert not registry.has_plugin("alpha") and "alpha_layer" not in registry.names("layer")


def test_blocking_a_builtin_or_an_unknown_plugin_is_refused(site: Path) -> None:
    install(site, "good-dist", "good_plugin", good(), "good")
    with pytest.raises(PluginError) as info:
        registry.load("no:minidl.layers")
    assert str(info.value) == 'cannot block "minidl.layers": minidl\'s own plugins always load'
    with pytest.raises(PluginError) as info:
        registry.block("goood")
    assert str(info.value).startswith('cannot block "goood": no plugin has that name; installed: ')
    assert "good" in str(info.value).split("installed: ")[1].split(", ")
    assert "relu" in registry.names("layer")


# ---------------------------------------------------------------------------- broken plugins


@pytest.mark.parametrize(
    "source,error",
    [
        ("import numpy_that_is_not_there\n", "ModuleNotFoundError: No module named 'numpy_that_is_not_there' (site/bad_plugin.py, line 1)"),
        ("import math\n\nvalue = math.sqrt(-1)\n", "ValueError: math domain error (site/bad_plugin.py, line 3)"),
        ("raise SystemExit(3)\n", "SystemExit: 3 (site/bad_plugin.py, line 1)"),
    ],
    ids=["import-error", "exception", "system-exit"],
)  # fmt: skip
def test_an_entry_point_that_raises_at_import_is_isolated_with_one_warning(
    site: Path, monkeypatch: pytest.MonkeyPatch, source: str, error: str
) -> None:
    install(site, "good-dist", "good_plugin", good(), "good")
    install(site, "bad-dist", "bad_plugin", source, "bad")

    def use() -> None:
        assert "double" in registry.names("layer")  # the good one still works
        assert registry.get("layer", "relu") is ReLU
        registry.names("loss")
        registry.load_plugins()

    messages = caught_warnings(use)
    assert messages == [f'Error importing plugin "bad": {error}']
    assert caught_warnings(use) == []  # once per process, however often asked
    assert registry.errors["bad"] == messages[0] and not registry.has_plugin("bad")
    # Asked for by name, it raises instead (MINIDL_PLUGINS="" keeps the other loading out).
    registry.reset()
    monkeypatch.setenv(PLUGINS_ENV, "")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PluginError) as info:
            registry.load("bad")
    assert str(info.value) == messages[0]
    assert registry.has_plugin("good") is False and "bad" in registry.errors


def test_a_file_that_raises_at_import_is_a_plugin_error_naming_it(tmp_path: Path) -> None:
    for source, error in (
        ("import math\n\nvalue = math.sqrt(-1)\n", "ValueError: math domain error (line 3)"),
        ("raise SystemExit(3)\n", "SystemExit: 3 (line 1)"),
    ):
        path = tmp_path / "raises.py"
        path.write_text(source)
        with pytest.raises(PluginError) as info:
            registry.load(str(path))
        assert str(info.value) == f'Error importing plugin "{path.resolve()}": {error}'
        assert not [m for m in sys.modules if m.startswith("minidl_plugin_") and "raises" in m]
    assert "relu" in registry.names("layer")


def test_keyboard_interrupt_still_propagates(tmp_path: Path, site: Path) -> None:
    path = tmp_path / "interrupted.py"
    path.write_text("raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        registry.load(str(path))
    registry.reset()
    install(site, "ctrl-c-dist", "ctrl_c_plugin", "raise KeyboardInterrupt\n", "ctrl_c")
    with pytest.raises(KeyboardInterrupt):
        registry.load_plugins()


def test_an_unknown_hook_is_named_with_the_right_spelling(
    plugin: Plugin, site: Path, tmp_path: Path
) -> None:
    class Typo:
        @hookimpl
        def register_layer(self, register: Any) -> None:
            register("never", object)

    with pytest.raises(PluginError) as info:
        plugin(Typo(), "typo")
    assert str(info.value) == (
        "Error in plugin \"typo\": unknown hook 'register_layer'; did you mean 'register_layers'?"
    )
    path = tmp_path / "typo.py"
    path.write_text("def register_optimizer(register):\n    pass\n")  # unmarked: still a hook
    for _ in range(2):  # asked again, it fails again
        with pytest.raises(PluginError, match="did you mean 'register_optimizers'"):
            registry.load(str(path))
    registry.reset()  # a fresh process, with an installed plugin that misspells a hook
    install(
        site, "typo-dist", "typo_plugin", "def register_dataset(register):\n    pass\n", "typo_ep"
    )
    assert caught_warnings(registry.load_plugins) == [
        "Error importing plugin \"typo_ep\": unknown hook 'register_dataset'; did you mean "
        "'register_datasets'?"
    ]
    assert "never" not in registry.names("layer")


def test_a_hook_asking_for_an_argument_the_hook_does_not_pass_is_refused(plugin: Plugin) -> None:
    class WrongArgument:
        @hookimpl
        def register_layers(self, reg: Any) -> None:
            reg("never", object)

    with pytest.raises(PluginError) as info:
        plugin(WrongArgument(), "wrong")
    message = str(info.value)
    assert message.startswith('Error in plugin "wrong": ') and "\n" not in message
    assert "its register_layers(reg" in message
    assert "asks for arguments the hook does not pass; the hook passes: register" in message
    assert "never" not in registry.names("layer")


def test_a_function_named_like_a_hook_is_one_even_unmarked(plugin: Plugin, tmp_path: Path) -> None:
    path = tmp_path / "unmarked.py"
    path.write_text(textwrap.dedent(good("unmarked_double")).replace("@hookimpl\n", ""))
    assert "@hookimpl" not in path.read_text()
    registry.load(str(path))
    assert "unmarked_double" in registry.names("layer")

    class Unmarked:
        def register_losses(self, register: Any) -> None:
            register("unmarked_loss", minidl.plugins.MSE)

        def helper(self) -> None:  # not named like a hook: not one
            raise AssertionError("never called")

        register_note = "a string attribute, not a function: not a hook"

    plugin(Unmarked(), "unmarked-object")
    assert registry.get("loss", "unmarked_loss") is minidl.plugins.MSE


def test_a_hook_that_raises_breaks_only_its_plugin(plugin: Plugin, tmp_path: Path) -> None:
    class Raising:
        @hookimpl
        def register_losses(self, register: Any) -> None:
            register("half_loss", minidl.plugins.MSE)

        @hookimpl
        def register_layers(self, register: Any) -> None:
            register("half_layer", Double)
            raise RuntimeError("config file missing")

    plugin(layers_plugin(fine_double=Double), "fine")
    plugin(Raising(), "raising")
    messages = caught_warnings(lambda: registry.names("loss"))
    assert len(messages) == 1
    assert messages[0].startswith(
        'Error in hook register_layers of plugin "raising": RuntimeError: config file missing ('
    )
    # The whole plugin is out, the hook that worked included; the rest works.
    assert "half_loss" not in registry.names("loss") and "half_layer" not in registry.names("layer")
    assert not registry.has_plugin("raising") and registry.errors["raising"] == messages[0]
    assert registry.get("layer", "fine_double") is Double
    assert minidl.build("linear(4), relu, linear(1)", (2,)).forward(torch.zeros(3, 2)).shape == (
        3,
        1,
    )
    assert caught_warnings(lambda: registry.names("layer")) == []
    # Loaded explicitly, a plugin must load: a hook that raises is an error, at once, with
    # no warning besides, and the plugin stays out.
    path = tmp_path / "raising.py"
    path.write_text(
        "from minidl import hookimpl\n\n@hookimpl\ndef register_losses(register):\n"
        "    register('l1', object)\n    raise OSError('no weights file')\n"
    )
    name = str(path.resolve())
    with pytest.raises(PluginError) as info:
        assert caught_warnings(lambda: registry.load(str(path))) == []
    assert str(info.value) == (
        f'Error in hook register_losses of plugin "{name}": OSError: no weights file (line 6)'
    )
    assert "l1" not in registry.names("loss") and not registry.has_plugin(name)


def test_a_builtin_that_breaks_is_an_error_never_a_warning() -> None:
    with pytest.raises(
        PluginError,
        match='Error in hook register_layers of plugin "minidl.layers": ValueError: boom',
    ):
        with registry.guard("minidl.layers", "in hook register_layers of"):
            raise ValueError("boom")
    with pytest.raises(PluginError, match='Error in plugin "someone": ValueError: boom'):
        with registry.guard("someone", "in", strict=True):
            raise ValueError("boom")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with registry.guard("someone_else", "in"):
            raise ValueError("boom")
    (message,) = [str(w.message) for w in record]
    assert message.startswith('Error in plugin "someone_else": ValueError: boom (')
    assert registry.errors["someone_else"] == message


# ---------------------------------------------------------------------------- names


def test_two_plugins_registering_one_name_get_names_both(plugin: Plugin) -> None:
    class Other(Double):
        pass

    plugin(layers_plugin(double=Double), "first")
    plugin(layers_plugin(Double=Other), "second")
    assert caught_warnings(lambda: registry.names("layer")) == []  # an error only when used
    assert "double" in registry.names("layer")
    for _ in range(2):  # never last-wins, however often it is asked
        with pytest.raises(DuplicateNameError) as info:
            registry.get("layer", "double")
        assert str(info.value) == (
            'layer \'double\' is registered by more than one plugin: "first" and "second"; '
            'to keep one, stop loading "first" or stop loading "second"'
        )
    assert isinstance(info.value, PluginError)
    assert registry.get("layer", "relu") is ReLU  # other names are unaffected
    registry.unregister(name="second")
    assert registry.get("layer", "double") is Double


def test_a_plugin_shadowing_a_builtin_is_an_error_not_an_override(plugin: Plugin) -> None:
    plugin(layers_plugin(relu=Double), "myrelu")
    with pytest.raises(DuplicateNameError) as info:
        registry.get("layer", "relu")
    assert '"minidl.layers"' in str(info.value) and '"myrelu"' in str(info.value)


@pytest.mark.parametrize(
    "name,factory,error",
    [
        ("leaky-relu", Double, "ValueError: layer name 'leaky-relu' is not valid: use letters, digits and underscores, starting with a letter"),
        ("1layer", Double, "layer name '1layer' is not valid"),
        ("", Double, "layer name '' is not valid"),
        (7, Double, "layer name 7 is not valid"),
        ("fine", 42, "TypeError: layer 'fine': factory 42 is not callable"),
    ],
)  # fmt: skip
def test_names_and_factories_are_validated(
    plugin: Plugin, name: Any, factory: Any, error: str
) -> None:
    class Bad:
        @hookimpl
        def register_layers(self, register: Any) -> None:
            register(name, factory)

    plugin(Bad(), "bad")
    messages = caught_warnings(lambda: registry.names("layer"))
    assert len(messages) == 1 and messages[0].startswith(
        'Error in hook register_layers of plugin "bad": '
    )
    assert error in messages[0]
    assert "fine" not in registry.names("layer")


def test_one_plugin_registering_a_name_twice_is_broken(plugin: Plugin) -> None:
    class Twice:
        @hookimpl
        def register_layers(self, register: Any) -> None:
            register("same", Double)
            register("Same", Double)

    plugin(Twice(), "twice")
    (message,) = caught_warnings(lambda: registry.names("layer"))
    assert "ValueError: layer 'Same' is registered twice by the same plugin" in message
    assert "same" not in registry.names("layer")


# ---------------------------------------------------------------------------- documentation


def hooks() -> list[str]:
    names = [
        name
        for name, value in vars(hookspecs).items()
        if inspect.isfunction(value) and hasattr(value, "minidl_spec")
    ]
    assert len(names) >= 7, "found too few hookspecs: the marker attribute changed?"
    return names


def test_the_registry_knows_every_hook() -> None:
    assert sorted({*KINDS.values(), "register_commands"}) == sorted(hooks())
    specified = [n for n, caller in vars(registry.hook).items() if caller.spec is not None]
    assert sorted(specified) == sorted(hooks())


@pytest.mark.parametrize("name", hooks())
def test_every_hook_is_documented_with_its_signature(name: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, name))
    assert doc and len(doc.split()) >= 8, f"hookspecs.{name} needs a docstring that explains it"
    arguments = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
    heading = f"### `{name}({arguments})`"
    text = DOC.read_text(encoding="utf-8")
    assert heading in text, f"docs/plugins.md has no section {heading!r}"
    section = text.split(heading, 1)[1].split("\n#", 1)[0]
    assert len(re.findall(r"\w+", section)) >= 15, f"the section for {name} says too little"
