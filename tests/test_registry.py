"""The pluggy registry: built-ins and third parties share the hooks; failures stay local.

Third-party plugins are faked as entry points by replacing ``minidl.registry.entry_points``;
the ``clean_registry`` fixture puts the registry back as it found it.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
import types
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

import minidl
from minidl import registry
from minidl.plugins import Linear, ReLU

pm = registry.pm


def _tracked(name: str, value: Any) -> bool:
    code = callable(value) or isinstance(value, types.ModuleType)
    return not (name.startswith("__") or code or value is pm)


def _module_state() -> dict[str, tuple[Any, Any]]:
    """Every module-level variable of minidl.registry that is not code or a module: the
    object itself and a copy of its contents (flags, name tables, broken marks, ...)."""
    state = {}
    for name, value in vars(registry).items():
        if not _tracked(name, value):
            continue
        contents = copy.copy(value) if isinstance(value, (dict, list, set)) else None
        state[name] = (value, contents)
    return state


@contextmanager
def registry_state() -> Iterator[None]:
    """Undo every registration, block, broken mark, warning memo and load flag made inside
    the block, whatever module-level bookkeeping the registry keeps."""
    registry.load_plugins()
    before = pm.list_name_plugin()
    saved = _module_state()
    try:
        yield
    finally:
        for name, plugin in pm.list_name_plugin():
            if (name, plugin) in before:
                continue
            if plugin is None:
                pm.unblock(name)
            else:
                pm.unregister(name=name)
        for name, plugin in before:
            if plugin is None:
                pm.set_blocked(name)
            elif not pm.has_plugin(name):
                pm.register(plugin, name=name)
        for name, (value, contents) in saved.items():
            if contents is not None:  # the same object, with its old contents back
                value.clear()
                if isinstance(value, list):
                    value.extend(contents)
                else:
                    value.update(contents)
            setattr(registry, name, value)
        for name in set(vars(registry)) - set(saved):
            if _tracked(name, getattr(registry, name)):
                delattr(registry, name)


@pytest.fixture
def clean_registry() -> Iterator[None]:
    with registry_state():
        yield


def make_plugin(name: str, **hooks: Callable[..., Any]) -> types.ModuleType:
    """A module-like plugin object with the given functions marked as hook implementations."""
    module = types.ModuleType(name)
    for hookname, fn in hooks.items():
        # A copy named after the hook, as if written `def register_layers(...)` in a module.
        named = types.FunctionType(
            fn.__code__, fn.__globals__, hookname, fn.__defaults__, fn.__closure__
        )
        setattr(module, hookname, minidl.hookimpl(named))
    return module


def layers_plugin(name: str, **layers: Any) -> types.ModuleType:
    def register_layers(register: Callable[[str, Any], None]) -> None:
        for layer_name, factory in layers.items():
            register(layer_name, factory)

    return make_plugin(name, register_layers=register_layers)


class FakeEntryPoint:
    def __init__(self, name: str, target: Any, dist: tuple[str, str] | None = None) -> None:
        self.name, self.target, self.loads = name, target, 0
        self.dist = types.SimpleNamespace(name=dist[0], version=dist[1]) if dist else None

    def load(self) -> Any:
        self.loads += 1
        if isinstance(self.target, Exception):
            raise self.target
        return self.target


@pytest.fixture
def entry_points(
    monkeypatch: pytest.MonkeyPatch, clean_registry: None
) -> Callable[..., list[FakeEntryPoint]]:
    """``install(ep, ...)``: these become the installed plugins, loaded on the next lookup."""
    installed: list[FakeEntryPoint] = []

    def fake(group: str) -> list[FakeEntryPoint]:
        return list(installed) if group == registry.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(registry, "entry_points", fake)
    monkeypatch.delenv(registry.PLUGINS_ENV, raising=False)

    def install(*eps: FakeEntryPoint) -> list[FakeEntryPoint]:
        installed.extend(eps)
        registry._loaded = False
        return installed

    return install


class Double:
    """A third-party layer: no base class, just the protocol."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        return 2 * grad_output

    def parameters(self) -> list[minidl.Parameter]:
        return []


@contextmanager
def quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def one_warning(record: Any, start: str) -> None:
    """Exactly one warning, starting with ``start`` (it may go on with where it happened)."""
    messages = [str(w.message) for w in record if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and messages[0].startswith(start), messages


# ---------------------------------------------------------------------------- built-ins

BUILTIN_NAMES = {
    "layer": ["linear", "relu", "sigmoid", "standardize", "tanh"],
    "loss": ["mse"],
    "optimizer": ["adam", "sgd"],
    "dataset": ["disc"],
    "initializer": ["default", "he", "he_normal", "xavier", "xavier_normal"],
    "schedule": ["constant", "cosine", "step"],
}


def test_builtins_register_through_the_same_hooks() -> None:
    for kind, expected in BUILTIN_NAMES.items():
        assert set(expected) <= set(registry.names(kind)), kind
        hookname = registry.KINDS[kind]
        for name in expected:
            plugin_name = registry.plugin_of(kind, name)
            assert plugin_name in registry.BUILTIN_PLUGINS
            # The built-in module is an ordinary pluggy plugin implementing the public hook.
            plugin = pm.get_plugin(plugin_name)
            assert hookname in {h.name for h in pm.get_hookcallers(plugin) or []}
    assert registry.get("layer", "linear") is Linear
    assert registry.get("layer", "ReLU") is ReLU  # names are case-insensitive


def test_plugins_report_lists_builtins() -> None:
    records = {r["name"]: r for r in registry.plugins()}
    layers = records["minidl.plugins.layers"]
    assert layers["builtin"] and layers["status"] == "ok" and layers["error"] == ""
    assert layers["distribution"] == "minidl" and layers["version"] == minidl.__version__
    assert layers["hooks"] == ["register_layers"]
    assert layers["registers"] == {"layer": BUILTIN_NAMES["layer"]}


def test_unknown_name_lists_the_available_names() -> None:
    with pytest.raises(minidl.UnknownNameError) as info:
        registry.get("layer", "conv2d")
    assert str(info.value) == "unknown layer 'conv2d'; available: " + ", ".join(
        registry.names("layer")
    )
    with pytest.raises(minidl.UnknownNameError) as info:
        registry.get("optimizer", "adamw")
    assert str(info.value) == "unknown optimizer 'adamw'; available: " + ", ".join(
        registry.names("optimizer")
    )
    assert {"adam", "sgd"} <= set(registry.names("optimizer"))
    with pytest.raises(minidl.UnknownNameError, match="unknown kind 'layr'; available: dataset, "):
        registry.get("layr", "relu")


# ---------------------------------------------------------------------------- third parties


def test_registered_plugin_object_adds_a_layer_and_unregisters_cleanly(
    clean_registry: None,
) -> None:
    pm.register(layers_plugin("doubling", double=Double), name="doubling")
    try:
        assert registry.get("layer", "double") is Double
        assert registry.plugin_of("layer", "double") == "doubling"
        model = minidl.build_model("double, linear(1)", 3)
        assert isinstance(model[0], Double) and model[1].in_features == 3
    finally:
        pm.unregister(name="doubling")
    with pytest.raises(minidl.UnknownNameError):
        registry.get("layer", "double")


def test_two_plugins_registering_one_name_is_an_error_naming_both(clean_registry: None) -> None:
    class Other(Double):
        pass

    pm.register(layers_plugin("first", double=Double), name="first")
    pm.register(layers_plugin("second", double=Other), name="second")
    with quiet():  # a warning when the tables are built is allowed, not required
        assert "double" in registry.names("layer")
    for _ in range(2):  # never last-wins, however often it is asked
        with quiet(), pytest.raises(minidl.DuplicateNameError) as info:
            registry.get("layer", "double")
        message = str(info.value)
        assert "layer 'double' is registered by more than one plugin" in message
        assert "'first'" in message and "'second'" in message
    assert registry.get("layer", "relu") is ReLU  # other names are unaffected


def test_a_plugin_shadowing_a_builtin_is_an_error_not_an_override(clean_registry: None) -> None:
    pm.register(layers_plugin("myrelu", relu=Double), name="myrelu")
    with (
        quiet(),
        pytest.raises(minidl.DuplicateNameError, match="'minidl.plugins.layers'.*'myrelu'"),
    ):
        registry.get("layer", "relu")


def test_a_hook_that_raises_warns_naming_the_plugin_and_the_rest_works(
    clean_registry: None,
) -> None:
    def register_layers(register: Callable[[str, Any], None]) -> None:
        register("half_done", Double)
        raise RuntimeError("boom")

    pm.register(make_plugin("exploding", register_layers=register_layers), name="exploding")
    with pytest.warns(RuntimeWarning) as record:
        names = registry.names("layer")
    one_warning(
        record, "Error in plugin 'exploding': its hook register_layers raised RuntimeError: boom"
    )
    assert set(BUILTIN_NAMES["layer"]) <= set(names)
    assert registry.get("optimizer", "adam") is not None
    model = minidl.build_model("linear(4), relu, linear(1)", 2)
    assert model.forward(torch.zeros(3, 2)).shape == (3, 1)
    report = {r["name"]: r for r in registry.plugins()}["exploding"]
    assert report["status"] == "broken" and "boom" in report["error"]


def test_an_invalid_registered_name_marks_the_plugin_broken(clean_registry: None) -> None:
    pm.register(layers_plugin("badname", **{"my layer": Double}), name="badname")
    with pytest.warns(RuntimeWarning, match="Error in plugin 'badname'.*'my layer' is not valid"):
        registry.names("layer")


# ---------------------------------------------------------------------------- entry points


def test_entry_point_plugins_load_once_lazily(entry_points: Any) -> None:
    (ep,) = entry_points(
        FakeEntryPoint(
            "doubling", layers_plugin("doubling", double=Double), ("minidl-double", "1.2")
        )
    )
    assert ep.loads == 0
    for _ in range(3):
        assert registry.get("layer", "double") is Double
    registry.load_plugins()
    assert ep.loads == 1
    record = {r["name"]: r for r in registry.plugins()}["doubling"]
    assert (record["distribution"], record["version"], record["builtin"]) == (
        "minidl-double",
        "1.2",
        False,
    )
    assert record["registers"] == {"layer": ["double"]}


def test_import_is_lazy() -> None:
    code = "import sys, minidl; print(minidl.registry._loaded, 'minidl.plugins' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == ["False", "False"]


def test_a_broken_entry_point_warns_once_naming_it_and_the_rest_works(entry_points: Any) -> None:
    entry_points(
        FakeEntryPoint("broken", ImportError("No module named 'minidl_broken'")),
        FakeEntryPoint("doubling", layers_plugin("doubling", double=Double)),
    )
    with pytest.warns(RuntimeWarning) as record:
        assert registry.get("layer", "double") is Double
        registry.get("layer", "linear")
    one_warning(
        record, "Error importing plugin 'broken': ImportError: No module named 'minidl_broken'"
    )
    report = {r["name"]: r for r in registry.plugins()}["broken"]
    assert report["status"] == "broken" and "minidl_broken" in report["error"]


def test_a_misspelled_hook_is_reported_with_a_suggestion(entry_points: Any) -> None:
    def register_layer(register: Callable[[str, Any], None]) -> None:
        register("double", Double)

    entry_points(
        FakeEntryPoint("typo", make_plugin("typo", register_layer=register_layer)),
        FakeEntryPoint("fine", layers_plugin("fine", fine_double=Double)),
    )
    with pytest.warns(RuntimeWarning) as record:
        names = registry.names("layer")
    one_warning(
        record,
        "Error in plugin 'typo': unknown hook 'register_layer'; did you mean 'register_layers'?",
    )
    assert "fine_double" in names and "double" not in names
    assert not pm.has_plugin("typo")
    assert {r["name"]: r for r in registry.plugins()}["typo"]["status"] == "broken"


def test_load_plugin_from_a_file_with_a_misspelled_hook_raises(
    clean_registry: None, tmp_path: Path
) -> None:
    path = tmp_path / "typo_plugin.py"
    path.write_text(
        textwrap.dedent(
            """
            import minidl

            @minidl.hookimpl
            def register_optimizer(register):
                pass
            """
        )
    )
    with quiet(), pytest.raises(minidl.PluginError) as info:  # raised: a warning is optional
        registry.load_plugin(str(path))
    assert "unknown hook 'register_optimizer'; did you mean 'register_optimizers'?" in str(
        info.value
    )
    assert path.name in str(info.value)


def test_load_plugin_from_a_file_adds_its_names(clean_registry: None, tmp_path: Path) -> None:
    path = tmp_path / "scale_plugin.py"
    path.write_text(
        textwrap.dedent(
            """
            import minidl

            class Negate:
                def forward(self, x):
                    return -x
                def backward(self, g):
                    return -g
                def parameters(self):
                    return []

            @minidl.hookimpl
            def register_layers(register):
                register("negate", Negate)
            """
        )
    )
    name = registry.load_plugin(str(path))
    assert registry.plugin_of("layer", "negate") == name
    model = minidl.build_model("negate", 2)
    assert model.forward(torch.ones(1, 2)).tolist() == [[-1.0, -1.0]]


def test_load_plugin_errors_are_clear(clean_registry: None, tmp_path: Path) -> None:
    with pytest.raises(minidl.PluginError, match="no such file"):
        registry.load_plugin(str(tmp_path / "missing.py"))
    bad = tmp_path / "bad.py"
    bad.write_text("def broken(:\n")
    with pytest.raises(minidl.PluginError, match="syntax error.* line 1"):
        registry.load_plugin(str(bad))
    with pytest.raises(
        minidl.PluginError,
        match="a path to a .py file, a dotted module name or an installed plugin",
    ):
        registry.load_plugin("minidl_no_such_module_xyz")
    with pytest.raises(minidl.PluginError, match="always load"):
        registry.load_plugin("no:layers")


def _alpha_beta(entry_points: Any) -> list[FakeEntryPoint]:
    return entry_points(
        FakeEntryPoint("alpha", layers_plugin("alpha", alpha_layer=Double)),
        FakeEntryPoint("beta", layers_plugin("beta", beta_layer=Double)),
    )


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
def test_minidl_plugins_env_selects_entry_points(
    entry_points: Any, monkeypatch: pytest.MonkeyPatch, value: str | None, expected: set[str]
) -> None:
    _alpha_beta(entry_points)
    if value is not None:
        monkeypatch.setenv("MINIDL_PLUGINS", value)
    names = set(registry.names("layer"))
    assert {n.removesuffix("_layer") for n in names & {"alpha_layer", "beta_layer"}} == expected
    assert {n for n in ("alpha", "beta") if pm.has_plugin(n)} == expected
    assert set(BUILTIN_NAMES["layer"]) <= names  # built-ins load whatever the variable says


def test_minidl_plugins_naming_an_uninstalled_plugin_warns(
    entry_points: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _alpha_beta(entry_points)
    monkeypatch.setenv("MINIDL_PLUGINS", "alpha,gamma")
    with pytest.warns(RuntimeWarning, match="MINIDL_PLUGINS names 'gamma'.*installed: alpha, beta"):
        registry.load_plugins()
    assert pm.has_plugin("alpha") and not pm.has_plugin("beta")


def test_a_plugin_named_explicitly_loads_even_if_the_env_leaves_it_out(
    entry_points: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _alpha_beta(entry_points)
    monkeypatch.setenv("MINIDL_PLUGINS", "alpha")
    assert "beta_layer" not in registry.names("layer")
    assert registry.load_plugin("beta") == "beta"
    assert registry.plugin_of("layer", "beta_layer") == "beta"


def test_blocking_a_plugin_keeps_it_out(entry_points: Any) -> None:
    eps = _alpha_beta(entry_points)
    registry.load_plugin("no:beta")
    names = registry.names("layer")
    assert "alpha_layer" in names and "beta_layer" not in names
    assert eps[1].loads == 0
