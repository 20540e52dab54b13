"""Options that mean what they say: ``--activation`` takes element-wise layers only (a layer
class that declares ``elementwise = False`` is refused, one that declares nothing is not),
and ``train --nproc N`` under torchrun is a usage error rather than ignored or a hang."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest
from test_cli_errors import error_line, fresh_cli  # noqa: F401 (a fixture)

import minidl

FAST = ["--epochs", "1", "--n-train", "50", "--n-test", "20", "--hidden", "4"]

LAYERS = textwrap.dedent(
    '''
    import torch
    from minidl import ModuleBase, hookimpl


    class OldCube(ModuleBase):
        """An activation from before `elementwise` existed: it declares nothing."""

        def forward(self, x):
            self.x = x
            return x**3

        def backward(self, grad_output):
            return grad_output * 3 * self.x**2


    class Shuffle(ModuleBase):
        """Keeps the shape, reverses the features: not element-wise, and says so."""

        elementwise = False

        def forward(self, x):
            return x.flip(1)

        def backward(self, grad_output):
            return grad_output.flip(1)


    @hookimpl
    def register_layers(register):
        register("old_cube", OldCube)
        register("shuffle", Shuffle)
    '''
)


@pytest.fixture
def layers(tmp_path: Path) -> str:
    path = tmp_path / "layers.py"
    path.write_text(LAYERS)
    return str(path)


@pytest.mark.usefixtures("fresh_cli")
def test_a_layer_declared_not_elementwise_is_refused_naming_the_activations(
    invoke, layers: str
) -> None:  # type: ignore[no-untyped-def]
    for command in (["train"], ["sweep", "--rounds", "1"], ["tune", "--budget", "quick"]):
        result = invoke("-p", layers, *command, "--activation", "shuffle", *FAST, code=2)
        line = error_line(
            result,
            "'--activation'",
            "layer 'shuffle' declares itself not element-wise (elementwise = False), so it "
            "cannot be an activation",
            "Available names: old_cube, relu, sigmoid, tanh",
        )
        assert "shuffle" not in line.split("Available names: ", 1)[1].split(", ")
    # ... while it remains a layer: a model spec may use it anywhere
    invoke("-p", layers, "train", "--model", "linear(4), shuffle, linear(1), sigmoid", *FAST)


@pytest.mark.usefixtures("fresh_cli")
def test_an_activation_that_declares_nothing_keeps_working(invoke, layers: str) -> None:  # type: ignore[no-untyped-def]
    result = invoke("-p", layers, "train", "--activation", "old_cube", *FAST, "--json")
    assert '"activation": "old_cube"' in result.stdout


@pytest.mark.skipif(
    importlib.util.find_spec("minidl_vision") is None, reason="the vision example is not installed"
)
@pytest.mark.usefixtures("fresh_cli")
@pytest.mark.parametrize("name", ["dropout", "flatten"])
def test_the_vision_layers_that_are_no_activations_are_refused(invoke, name: str) -> None:  # type: ignore[no-untyped-def]
    factory = minidl.registry.get("layer", name)
    assert factory.elementwise is False
    result = invoke("train", "--activation", name, *FAST, code=2)
    line = error_line(result, f"layer {name!r} declares itself not element-wise")
    listed = line.split("Available names: ", 1)[1].split(", ")
    assert {"relu", "sigmoid", "tanh"} <= set(listed)
    assert not {"dropout", "flatten", "maxpool2d", "conv2d"} & set(listed)


@pytest.mark.parametrize(
    "variables",
    [
        # one torchrun worker (--nproc-per-node 1 on one node), and a rank of a larger job
        {"TORCHELASTIC_RUN_ID": "r", "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1",
         "LOCAL_WORLD_SIZE": "1", "GROUP_RANK": "0"},
        {"TORCHELASTIC_RUN_ID": "r", "RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4",
         "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "1"},
    ],
    ids=["one-worker", "rank-3-of-4"],
)  # fmt: skip
def test_nproc_under_torchrun_is_a_usage_error(
    invoke, monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    result = invoke("train", "--nproc", "2", *FAST, code=2)
    error_line(
        result,
        "'--nproc'",
        "torchrun started this command (TORCHELASTIC_RUN_ID",
        "sets the ranks itself: leave --nproc out, and give torchrun --nproc-per-node 2 instead",
    )
