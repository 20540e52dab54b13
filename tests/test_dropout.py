"""dropout, a built-in (it began in the minidl-vision example), against torch.nn.functional
in float64: the same seed drops the same units."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch_reference import F64, reference

import minidl
from minidl.plugins import Dropout
from minidl.testing import check_layer


def test_dropout_is_a_builtin_layer() -> None:
    assert minidl.registry.get("layer", "dropout") is Dropout
    assert minidl.registry.table("layer")["dropout"].plugin == "minidl.dropout"


@pytest.mark.parametrize("shape", [(3, 7), (4, 3, 5)])
def test_dropout_passes_the_kit(shape: tuple) -> None:
    check_layer(lambda: Dropout(0.3), shape)


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.9])
@pytest.mark.parametrize("shape", [(64, 128), (5, 3, 4, 4)])
def test_dropout_draws_torchs_mask(p: float, shape: tuple) -> None:
    """The same seed drops the same units as F.dropout, and leaves torch's generator in
    the same state."""
    x = torch.randn(shape, dtype=F64)
    g = torch.randn(shape, dtype=F64)
    layer = Dropout(p)
    torch.manual_seed(11)
    out = layer.forward(x)
    grad = layer.backward(g)
    after = torch.rand(4)
    torch.manual_seed(11)
    expected, (expected_grad,) = reference(lambda x: F.dropout(x, p, training=True), g, x)
    assert torch.equal(torch.rand(4), after)
    assert torch.equal(out, expected)
    assert torch.equal(grad, expected_grad)


def test_dropout_scales_the_kept_units() -> None:
    torch.manual_seed(0)
    layer = Dropout(0.25)
    out = layer.forward(torch.ones(400, 500, dtype=F64))
    kept = out != 0
    assert torch.all(out[kept] == 1 / 0.75)
    assert abs(float(kept.double().mean()) - 0.75) < 0.005
    g = layer.backward(torch.ones_like(out))
    assert torch.equal(g, out)  # the same mask and scale


def test_dropout_is_the_identity_in_eval_mode_and_at_zero() -> None:
    x, g = torch.randn(5, 6), torch.randn(5, 6)
    layer = Dropout(0.5).eval()
    state = torch.get_rng_state()
    assert layer.forward(x) is x
    assert layer.backward(g) is g
    zero = Dropout(0.0)
    assert zero.training and zero.forward(x) is x and zero.backward(g) is g
    assert torch.equal(torch.get_rng_state(), state), "drew random numbers"


def test_dropout_of_one_drops_everything() -> None:
    layer = Dropout(1.0)
    x = torch.randn(3, 4)
    assert torch.equal(layer.forward(x), torch.zeros(3, 4))
    assert torch.equal(layer.forward(x), F.dropout(x, 1.0, training=True))
    assert torch.equal(layer.backward(torch.ones(3, 4)), torch.zeros(3, 4))


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), "0.5", True])
def test_dropout_rejects_a_bad_probability(p: object) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        Dropout(p)  # type: ignore[arg-type]
