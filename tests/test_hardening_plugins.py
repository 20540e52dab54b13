"""Half-written plugins: a missing file, a syntax or import error, a hook that raises, a layer
whose backward returns the wrong shape. Each is one line naming the plugin or the layer."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from test_hardening_common import FAST, error_line, fresh_registry, invoke, write_plugin  # noqa: F401

import minidl
import minidl.train
from minidl.plugins import MSE, SGD, Adam

pytestmark = pytest.mark.usefixtures("fresh_registry")


def test_missing_plugin_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.py"
    result = invoke("--layer-plugin", str(missing), "train", *FAST, code=2)
    error_line(result, "'--layer-plugin'", str(missing), "no such file")


def test_plugin_with_a_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("import minidl\n\ndef register_layers(register:\n")
    result = invoke("--layer-plugin", str(path), "train", *FAST, code=2)
    error_line(result, "'--layer-plugin'", str(path), "syntax error at line 3")


def test_plugin_with_an_import_error(tmp_path: Path) -> None:
    path = tmp_path / "needs.py"
    path.write_text("import minidl\nimport numpy_but_misspelt\n")
    result = invoke("--layer-plugin", str(path), "train", *FAST, code=2)
    error_line(result, str(path), "ModuleNotFoundError", "numpy_but_misspelt", "line 2")


def test_a_hook_that_raises_is_one_warning_and_its_layers_are_unknown(tmp_path: Path) -> None:
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
    # A run that does not need the plugin goes on, with one warning naming it and the error.
    result = invoke("--layer-plugin", str(path), "train", *FAST)
    [warning] = [line for line in result.stderr.splitlines() if line]
    assert warning.startswith("Warning: ") and str(path) in warning
    assert "register_layers raised KeyError" in warning and "CUBE_HOME" in warning
    # A run that needs its layer stops on the unknown name, listing what there is.
    result = invoke("--layer-plugin", str(path), "train", *FAST, "--activation", "cube", code=2)
    error_line(result, "unknown activation 'cube'; available: relu, sigmoid, tanh")


def test_a_backward_returning_the_wrong_shape_names_the_layer(tmp_path: Path) -> None:
    plugin = write_plugin(tmp_path)
    result = invoke(
        "--layer-plugin", str(plugin), "train", *FAST, "--model", "linear(8), narrow, linear(1), sigmoid", code=2
    )  # fmt: skip
    line = error_line(result, "layer 2 (narrow): backward returned a gradient of shape (100, 1)")
    assert "but its input had shape (100, 8)" in line
    assert "mat1" not in line and "multiplied" not in line  # not deep inside a matrix product


def test_a_forward_that_raises_names_the_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = write_plugin(tmp_path)
    monkeypatch.setenv("FRAGILE_SEED", "0")
    result = invoke(
        "--layer-plugin", str(plugin), "train", *FAST, "--model", "linear(8), relu, fragile, linear(1)", code=2
    )  # fmt: skip
    error_line(
        result, "layer 3 (fragile) cannot take an input of shape (100, 8)", "fragile layer broke"
    )


def test_the_checked_first_step_changes_no_number(monkeypatch: pytest.MonkeyPatch) -> None:
    """fit's first step runs layer by layer with shape checks, later ones on the fast path:
    the weights after training equal those of a plain hand-written loop, bit for bit, and
    only one step per fit is checked (the hot loop stays as it was)."""
    torch.manual_seed(0)
    data = minidl.Dataset(torch.rand(60, 2), (torch.rand(60, 1) > 0.5).float())
    torch.manual_seed(1)
    model = minidl.build_model("linear(8), tanh, linear(8), relu, linear(1), sigmoid", 2)
    twin = minidl.build_model("linear(8), tanh, linear(8), relu, linear(1), sigmoid", 2)
    for p, q in zip(twin.parameters(), model.parameters(), strict=True):
        p.data = q.data.clone()

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

    model = minidl.build_model("linear(3), relu, linear(1)", 2)
    data = minidl.Dataset(torch.rand(10, 2), torch.rand(10, 1))
    with pytest.raises(minidl.PluginError, match=r"backward returned a gradient of shape \(10,\)"):
        minidl.fit(model, Flat(), SGD(model.parameters(), lr=0.1), data, epochs=1)
