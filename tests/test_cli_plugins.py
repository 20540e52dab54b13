"""Plugins as `minidl-run` users meet them: `plugins` and `plugins --json`; `-p` with a
file, a dotted module or an installed plugin's name, and `-p no:NAME`; plugins that are
broken (an error naming them, or one warning and the rest working); plugin commands; a
plugin's layer, loss and optimizer with settings from train and --config; a model with a
plugin layer saved and reloaded."""

from __future__ import annotations

import json
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from test_cli_errors import error_line, fresh_cli  # noqa: F401 (a fixture)

import minidl
import minidl.train
from benchmarks.twin import torch_twin, twin_fit
from minidl import registry
from minidl.cli import TrainConfig, run
from minidl.cli.experiment import setup
from minidl.plugins import MSE, SGD, Adam
from minidl.registry import PLUGINS_ENV, PluginWarning

pytestmark = pytest.mark.usefixtures("fresh_cli")

FAST = ["--epochs", "2", "--n-train", "100", "--n-test", "50"]

EXTRAS = '''
import click
import torch
import minidl
from minidl import hookimpl


class Cube(minidl.ModuleBase):
    """x ** 3."""

    def forward(self, x):
        self.x = x
        return x**3

    def backward(self, grad):
        return grad * 3 * self.x**2


class Scale(minidl.ModuleBase):
    """x * factor: the identity at factor 1."""

    def __init__(self, factor=2.0):
        self.factor = factor

    def forward(self, x):
        return x * self.factor

    def backward(self, grad):
        return grad * self.factor


class ScaledMSE:
    """scale * mean squared error."""

    def __init__(self, scale=1.0):
        self.scale, self.mse = scale, minidl.registry.get("loss", "mse")()

    def forward(self, prediction, target):
        return self.mse.forward(prediction, target) * self.scale

    def backward(self):
        return self.mse.backward() * self.scale


class MomentumSGD(minidl.FlatOptimizer):
    """torch.optim.SGD with momentum: v = momentum * v + grad; w -= lr * v."""

    def __init__(self, parameters, lr, momentum=0.9):
        super().__init__(parameters, lr)
        self.momentum = momentum
        self.velocity = torch.zeros_like(self.data)

    def step(self):
        self.velocity.mul_(self.momentum).add_(self.grad)
        self.data.add_(self.velocity, alpha=-self.lr)


@hookimpl
def register_layers(register):
    register("cube", Cube)
    register("scale", Scale)


@hookimpl
def register_losses(register):
    register("scaled_mse", ScaledMSE)


@hookimpl
def register_optimizers(register):
    register("momentum_sgd", MomentumSGD)


@hookimpl
def register_commands(cli):
    @cli.command()
    @click.argument("name")
    def hello(name):
        """Greet NAME."""
        click.echo(f"hello {name}")
'''

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


@pytest.fixture
def extras(tmp_path: Path) -> Path:
    path = tmp_path / "extras_plugin.py"
    path.write_text(EXTRAS)
    return path


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path to install distributions into; its modules are forgotten after."""
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    yield path
    for module in path.glob("*.py"):
        sys.modules.pop(module.stem, None)


def install(site: Path, dist: str, module: str, source: str, entry_point: str) -> None:
    """An installed distribution as importlib.metadata sees it: a dist-info folder with an
    entry point in the ``minidl`` group, and the module beside it."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[minidl]\n{entry_point} = {module}\n")


def records(invoke, *args: str) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    result = invoke(*args, "plugins", "--json")
    return {r["name"]: r for r in json.loads(result.stdout)["plugins"]}


# --- `minidl-run plugins` -----------------------------------------------------------------


def test_plugins_lists_the_builtins_with_their_settings(invoke) -> None:  # type: ignore[no-untyped-def]
    by_name = records(invoke)
    layers = by_name["minidl.layers"]
    assert (layers["source"], layers["distribution"], layers["version"]) == (
        "builtin",
        "minidl",
        minidl.__version__,
    )
    assert (layers["status"], layers["error"], layers["hooks"]) == ("ok", "", ["register_layers"])
    assert layers["registers"] == {"layer": ["linear", "relu", "sigmoid", "standardize", "tanh"]}
    linear = layers["settings"]["layer"]["linear"]
    assert (linear["out_features"], linear["bias"], linear["init"], linear["gain"]) == (
        None,
        True,
        "default",
        None,
    )
    assert layers["settings"]["layer"]["relu"] == {}
    optimizers = by_name["minidl.optimizers"]["settings"]["optimizer"]
    assert optimizers == {
        "adam": {"betas": [0.9, 0.999], "eps": 1e-08, "weight_decay": 0.0},
        "adamw": {"betas": [0.9, 0.999], "eps": 1e-08, "weight_decay": 0.01},
        "sgd": {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0},
    }
    assert by_name["minidl.schedules"]["settings"]["schedule"]["step"] == {
        "step_size": 30,
        "gamma": 0.1,
    }
    assert by_name["minidl.datasets"]["settings"]["dataset"]["disc"] == {
        "n_train": 1000,
        "n_test": 1000,
    }
    assert by_name["minidl.initializers"]["settings"]["initializer"]["he"] == {
        "gain": pytest.approx(2**0.5)
    }
    assert by_name["minidl.losses"]["registers"] == {"loss": ["cross_entropy", "mse"]}
    for command in ("train", "predict", "plugins"):  # built-in commands are plugins too
        record = by_name[f"minidl.cli.commands.{command}"]
        assert (record["source"], record["hooks"]) == ("builtin", ["register_commands"])
    builtin = [r["source"] == "builtin" for r in by_name.values()]
    assert builtin == sorted(builtin, reverse=True)  # built-ins first

    text = invoke("plugins").stdout
    assert "minidl.optimizers  [built-in, minidl " in text
    assert (
        "    optimizer: adam(betas=[0.9, 0.999], eps=1e-08, weight_decay=0.0), adamw(betas=[0.9, "
        "0.999], eps=1e-08, weight_decay=0.01), sgd(momentum=0.0, dampening=0.0, nesterov=False, "
        "weight_decay=0.0)" in text
    )
    assert "    hooks: register_layers" in text


def test_a_file_plugin_is_listed_with_its_settings_and_works(extras: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    mine = records(invoke, "-p", str(extras))[str(extras.resolve())]
    assert (mine["source"], mine["distribution"], mine["version"], mine["status"]) == (
        "file",
        "",
        "",
        "ok",
    )
    assert mine["hooks"] == [
        "register_commands",
        "register_layers",
        "register_losses",
        "register_optimizers",
    ]
    assert mine["registers"] == {
        "layer": ["cube", "scale"],
        "loss": ["scaled_mse"],
        "optimizer": ["momentum_sgd"],
    }
    assert mine["settings"] == {
        "layer": {"cube": {}, "scale": {"factor": 2.0}},
        "loss": {"scaled_mse": {"scale": 1.0}},
        "optimizer": {"momentum_sgd": {"momentum": 0.9}},
    }
    text = invoke("--layer-plugin", str(extras), "plugins").stdout
    assert f"{extras.resolve()}  [plugin, loaded for this run]  ok" in text
    assert "    optimizer: momentum_sgd(momentum=0.9)" in text
    assert "    layer: cube, scale(factor=2.0)" in text
    # Its layer is an activation and a model spec item; its command runs.
    document = json.loads(
        invoke("-p", str(extras), "train", "--activation", "cube", *FAST, "--json").stdout
    )
    assert document["config"]["model"].startswith("linear(25), cube, ")
    assert invoke("-p", str(extras), "hello", "world").stdout == "hello world\n"
    assert "hello" in invoke("-p", str(extras), "--help").stdout
    invoke("-p", str(extras), "train", "--model", "linear(4), cube, linear(1), sigmoid", *FAST)
    # Without -p, none of it is there.
    registry.reset()
    error_line(invoke("train", "--activation", "cube", *FAST, code=2), "unknown activation 'cube'")


def test_a_dotted_module_and_an_installed_plugin_by_name(
    site: Path,
    invoke,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    (site / "dotted_plugin.py").write_text(EXTRAS)
    install(site, "fancy-dist", "fancy_plugin", GOOD, "fancy")
    monkeypatch.setenv(PLUGINS_ENV, "")  # no installed plugin loads unless asked for
    by_name = records(invoke, "-p", "dotted_plugin", "-p", "fancy")
    assert by_name["dotted_plugin"]["source"] == "module"
    assert by_name["dotted_plugin"]["registers"]["optimizer"] == ["momentum_sgd"]
    fancy = by_name["fancy"]
    assert (fancy["source"], fancy["distribution"], fancy["version"]) == (
        "entry point",
        "fancy-dist",
        "1.2.3",
    )
    assert fancy["registers"] == {"layer": ["double"]}
    registry.reset()
    invoke("-p", "fancy", "train", "--activation", "double", *FAST)
    registry.reset()
    error_line(
        invoke("train", "--activation", "double", *FAST, code=2), "unknown activation 'double'"
    )
    registry.reset()
    error_line(
        invoke("-p", "no_such_plugin", "train", code=2),
        "Invalid value for '--layer-plugin'", "no such file, installed plugin or module (installed plugins: ",
        "fancy",
    )  # fmt: skip


def test_no_name_blocks_an_installed_plugin(site: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    install(site, "fancy-dist", "fancy_plugin", GOOD, "fancy")
    assert records(invoke)["fancy"]["status"] == "ok"  # installed plugins load by default
    registry.reset()
    assert "fancy" not in records(invoke, "-p", "no:fancy")
    registry.reset()
    result = invoke("-p", "no:fancy", "train", "--activation", "double", *FAST, code=2)
    error_line(result, "unknown activation 'double'")
    registry.reset()
    result = invoke("-p", "no:minidl.layers", "train", *FAST, code=2)
    error_line(
        result,
        "Invalid value for '--layer-plugin'",
        'cannot block "minidl.layers": minidl\'s own plugins always load',
    )
    registry.reset()
    result = invoke("-p", "no:nothing", "train", *FAST, code=2)
    error_line(result, 'cannot block "nothing": no plugin has that name; installed: ', "fancy")


def test_minidl_plugins_empty_loads_no_installed_plugin(
    site: Path, invoke, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    install(site, "bad-dist", "bad_plugin", "raise SystemError('never imported')\n", "bad")
    monkeypatch.setenv(PLUGINS_ENV, "")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)  # the bad one is never imported
        by_name = records(invoke)
    assert all(r["source"] == "builtin" for r in by_name.values())
    monkeypatch.delenv(PLUGINS_ENV)
    registry.reset()
    with pytest.warns(PluginWarning, match="SystemError: never imported"):
        assert records(invoke)["bad"]["status"] == "broken"


# --- broken plugins -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (None, "no such file"),
        ("import minidl\n\ndef register_layers(register:\n", "syntax error in {name} at line 3"),
        (
            "import minidl\nimport numpy_but_misspelt\n",
            "ModuleNotFoundError: No module named 'numpy_but_misspelt' (line 2)",
        ),
        (
            "import torch\nx = torch.nope\n",
            "AttributeError: module 'torch' has no attribute 'nope' (line 2)",
        ),
        ("import sys\nsys.exit(3)\n", "SystemExit: 3 (line 2)"),
        (
            "from minidl import hookimpl\n\n@hookimpl\ndef register_layer(register):\n    pass\n",
            "unknown hook 'register_layer'; did you mean 'register_layers'?",
        ),
    ],
    ids=["missing", "syntax", "import", "attribute", "sys.exit", "misspelt-hook"],
)
def test_a_one_file_plugin_that_cannot_load_is_an_error_naming_it(
    tmp_path: Path,
    invoke,
    source: str | None,
    expected: str,  # type: ignore[no-untyped-def]
) -> None:
    path = tmp_path / "plugin.py"
    if source is not None:
        path.write_text(source)
    result = invoke("-p", str(path), "train", *FAST, code=2)  # not 3, for sys.exit(3)
    line = error_line(
        result,
        "Invalid value for '--layer-plugin'",
        str(path.resolve()),
        expected.format(name=path.name),
    )
    assert line.startswith("Error: Invalid value for '--layer-plugin' / '-p': Error ")
    assert result.stdout == ""


def test_a_hook_that_raises_stops_the_run_naming_the_plugin(tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "raising.py"
    path.write_text(
        textwrap.dedent(
            """
            import minidl

            class Cube(minidl.ModuleBase):
                def forward(self, x):
                    return x**3

            @minidl.hookimpl
            def register_layers(register):
                register("cube", Cube)
                raise KeyError("CUBE_HOME")
            """
        )
    )
    # Asked for by -p, a plugin must load, its hooks included: one error naming it, exit 2.
    result = invoke("-p", str(path), "train", *FAST, code=2)
    error_line(
        result,
        "Invalid value for '--layer-plugin'",
        f'Error in hook register_layers of plugin "{path.resolve()}"',
        "KeyError: 'CUBE_HOME' (line 11)",
    )
    assert result.stdout == ""


def test_an_installed_plugin_that_raises_at_import_is_one_warning_and_the_rest_works(
    site: Path, invoke
) -> None:  # type: ignore[no-untyped-def]
    install(site, "good-dist", "good_plugin", GOOD, "good")
    install(site, "bad-dist", "bad_plugin", "import scipy_not_here\n", "bad")
    with pytest.warns(PluginWarning) as caught:
        trained = invoke("train", "--activation", "double", *FAST)  # the good one works
    [warning] = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
    assert warning == (
        'Error importing plugin "bad": ModuleNotFoundError: No module named '
        "'scipy_not_here' (site/bad_plugin.py, line 1)"
    )
    assert "train accuracy" in trained.stdout
    registry.reset()
    with pytest.warns(PluginWarning):
        result = invoke("plugins")
    assert "bad  [plugin, " in result.stdout and f"    error: {warning}" in result.stdout
    assert "good  [plugin, good-dist 1.2.3]  ok" in result.stdout
    registry.reset()
    with pytest.warns(PluginWarning):
        bad = records(invoke)["bad"]
    assert (bad["status"], bad["error"]) == ("broken", warning)


def test_an_installed_plugin_whose_hook_raises_is_listed_as_broken(site: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    source = """
        from minidl import hookimpl

        @hookimpl
        def register_datasets(register):
            raise KeyError("MINIDL_DATA_DIR")
        """
    install(site, "raising-dist", "raising_plugin", source, "raising")
    with pytest.warns(
        PluginWarning, match=r'in hook register_datasets of plugin "raising": KeyError'
    ):
        assert "train accuracy" in invoke("train", *FAST).stdout
    registry.reset()
    with pytest.warns(PluginWarning):
        assert records(invoke)["raising"]["status"] == "broken"


def test_two_plugins_one_name_then_each_way_to_pick(
    site: Path, invoke, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    install(site, "first-dist", "first_plugin", GOOD, "first")
    install(site, "second-dist", "second_plugin", GOOD, "second")
    result = invoke("train", "--model", "linear(4), double, linear(1)", *FAST, code=2)
    error_line(
        result, "layer 'double' is registered by more than one plugin: \"first\" and \"second\"",
        'to keep one, block "first" with no:first or block "second" with no:second',
    )  # fmt: skip
    listing = invoke("plugins").stdout
    assert listing.count("also registered by another plugin: layer double") == 2
    registry.reset()
    invoke("-p", "no:first", "train", "--activation", "double", *FAST)
    registry.reset()
    monkeypatch.setenv(PLUGINS_ENV, "second")
    invoke("train", "--activation", "double", *FAST)


# --- plugin commands ------------------------------------------------------------------------


def test_a_plugin_command_that_clashes_with_a_builtin_is_refused(tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "rogue.py"
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

                @cli.command("train")
                def fake():
                    click.echo("fake")
            """
        )
    )
    with pytest.warns(PluginWarning) as caught:
        result = invoke("-p", str(path), "train", *FAST)
    assert "train accuracy" in result.stdout and "fake" not in result.stdout
    [warning] = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
    assert warning == (
        f"plugin \"{path.resolve()}\" adds the command 'train', which plugin "
        '"minidl.cli.commands.train" added first; the first is kept: give the new one another name'
    )
    assert invoke("-p", str(path), "greet").stdout == "hello from a plugin\n"


# --- a plugin's layer, loss and optimizer, with settings --------------------------------------

SPEC = "linear(8), tanh, scale(factor=1.0), linear(1), sigmoid"


def test_plugin_factories_with_settings_from_train_and_config(
    extras: Path, tmp_path: Path, invoke
) -> None:  # type: ignore[no-untyped-def]
    p = ["-p", str(extras)]
    args = [*FAST, "--epochs", "3", "--batch-size", "20"]
    mine = json.loads(invoke(*p, "train", *args, "--model", SPEC, "--loss", "scaled_mse(scale=2.0)",
                             "--optimizer", "momentum_sgd(momentum=0.5)", "--lr", "0.05", "--json").stdout)  # fmt: skip
    # The reference, with built-in parts: scale(factor=1.0) is the identity, and twice the
    # loss at half the learning rate takes exactly the same steps (powers of two are exact).
    plain = json.loads(invoke(*p, "train", *args, "--model", "linear(8), tanh, linear(1), sigmoid",
                              "--optimizer", "momentum_sgd(momentum=0.5)", "--lr", "0.1", "--json").stdout)  # fmt: skip
    assert [h["train_loss"] for h in mine["history"]] == [
        2 * h["train_loss"] for h in plain["history"]
    ]
    assert [h["test_accuracy"] for h in mine["history"]] == [
        h["test_accuracy"] for h in plain["history"]
    ]
    # The settings were used: other values train otherwise.
    other = json.loads(invoke(*p, "train", *args, "--model", SPEC.replace("1.0", "3.0"), "--loss", "scaled_mse(scale=2.0)",
                              "--optimizer", "momentum_sgd(momentum=0.9)", "--lr", "0.05", "--json").stdout)  # fmt: skip
    assert other["history"][0]["train_loss"] != mine["history"][0]["train_loss"]
    # The same from a --config file.
    config = tmp_path / "run.toml"
    config.write_text(
        f'model = "{SPEC}"\nloss = "scaled_mse(scale=2.0)"\noptimizer = "momentum_sgd(momentum=0.5)"\n'
        "lr = 0.05\nepochs = 3\nbatch-size = 20\nn-train = 100\nn-test = 50\n"
    )
    assert json.loads(invoke(*p, "train", "--config", str(config), "--json").stdout) == mine
    # A setting the plugin's factory does not take names it and the ones it does.
    result = invoke(*p, "train", *FAST, "--optimizer", "momentum_sgd(nesterov=True)", code=2)
    error_line(
        result,
        "'--optimizer'",
        "optimizer 'momentum_sgd' has no setting 'nesterov'; its settings: momentum",
    )


def test_the_plugin_momentum_optimizer_equals_torch_sgd_with_momentum(extras: Path) -> None:
    registry.load(str(extras))
    config = TrainConfig(
        model="linear(8), tanh, linear(1), sigmoid", optimizer="momentum_sgd(momentum=0.5)", lr=0.1,
        epochs=3, batch_size=20, n_train=100, n_test=50, dtype="float64",
    )  # fmt: skip
    ours = run(config).history
    model, _, _, train, _, test = setup(config)
    net = torch_twin(model)
    theirs = twin_fit(
        net,
        torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.5),
        train,
        test,
        epochs=3,
        batch_size=20,
    )
    for a, b in zip(ours, theirs, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-12)
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-12)


def test_a_model_with_a_plugin_layer_saves_and_reloads_with_the_plugin(
    extras: Path, tmp_path: Path, invoke
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "model"
    invoke("-p", str(extras), "train", "--model", "linear(8), cube, scale(factor=0.5), linear(1), sigmoid",
           *FAST, "--out", str(out), "--no-diagnostics")  # fmt: skip
    layers = json.loads((out / "model.json").read_text())["layers"]
    assert [(x["name"], x["plugin"]) for x in layers[1:3]] == [
        (n, str(extras.resolve())) for n in ("cube", "scale")
    ]
    assert layers[2]["args"] == [] and layers[2]["kwargs"] == {"factor": 0.5}
    document = json.loads(
        invoke("-p", str(extras), "predict", str(out), "0.5", "0.25", "--json").stdout
    )
    model, _ = minidl.load_model(out)
    assert model.layers[2].factor == 0.5
    assert (
        document["predictions"][0]["output"]
        == model.forward(torch.tensor([[0.5, 0.25]])).tolist()[0]
    )
    registry.reset()  # a new process, without the plugin
    result = invoke("predict", str(out), "0.5", "0.25", code=2)
    error_line(result, f"layer 'cube' (saved from plugin {str(extras.resolve())!r}) is not registered",
               "is the plugin that provides it installed and loaded?")  # fmt: skip


# --- what the library checks for plugins -------------------------------------------------------


def test_the_checked_first_step_changes_no_number(monkeypatch: pytest.MonkeyPatch) -> None:
    """fit's first step runs layer by layer with shape checks, later ones on the fast path:
    the weights after training equal those of a plain hand-written loop, bit for bit, and
    only one step per fit is checked."""
    torch.manual_seed(0)
    data = minidl.Dataset(torch.rand(60, 2), (torch.rand(60, 1) > 0.5).float())
    spec = "linear(8), tanh, linear(8), relu, linear(1), sigmoid"
    torch.manual_seed(1)
    model = minidl.build(spec, (2,))
    twin = minidl.build(spec, (2,))
    twin.load_state_dict(model.state_dict())

    checked = []
    original = minidl.train.checked_step
    monkeypatch.setattr(minidl.train, "checked_step", lambda *a: checked.append(1) or original(*a))
    minidl.fit(
        model, MSE(), Adam(model.parameters(), lr=0.05), data, epochs=3, batch_size=16, seed=4
    )
    assert len(checked) == 1

    loss, opt = MSE(), Adam(twin.parameters(), lr=0.05)
    generator = torch.Generator().manual_seed(4)
    for _ in range(3):
        for x, y in data.batches(16, generator):
            opt.zero_grad()
            loss.forward(twin.forward(x), y)
            twin.backward(loss.backward())
            opt.step()
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p.data, q.data)


def test_a_loss_whose_backward_has_the_wrong_shape_is_named() -> None:
    class Flat(MSE):
        def backward(self) -> torch.Tensor:
            return super().backward().flatten()

    model = minidl.build("linear(3), relu, linear(1)", (2,))
    data = minidl.Dataset(torch.rand(10, 2), torch.rand(10, 1))
    with pytest.raises(minidl.PluginError, match=r"backward returned a gradient of shape \(10,\)"):
        minidl.fit(model, Flat(), SGD(model.parameters(), lr=0.1), data, epochs=1)
