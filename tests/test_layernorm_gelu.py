"""layernorm and gelu against torch.nn.LayerNorm and torch.nn.GELU in float64, both modes."""

from __future__ import annotations

import pytest
import torch
from torch_reference import F64, close, module_reference

import minidl
from minidl.plugins import GELU, LayerNorm
from minidl.testing import check_layer


@pytest.mark.parametrize("shape", [(5, 4), (3, 6, 4), (2, 3, 2, 4)])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("eps", [1e-5, 0.1])
@pytest.mark.parametrize("training", [True, False])
def test_layernorm_equals_torch(shape: tuple, affine: bool, eps: float, training: bool) -> None:
    gen = torch.Generator().manual_seed(1)
    layer = LayerNorm(4, eps=eps, elementwise_affine=affine, dtype=F64).train(training)
    twin = torch.nn.LayerNorm(4, eps=eps, elementwise_affine=affine, dtype=F64).train(training)
    if affine:  # not the initial ones and zeros, so the affine part is tested too
        layer.weight.data = torch.rand(4, generator=gen, dtype=F64) + 0.5
        layer.bias.data = torch.randn(4, generator=gen, dtype=F64)
        twin.load_state_dict(layer.state_dict())
    x = torch.randn(shape, generator=gen, dtype=F64) * 3 + 1
    g = torch.randn(shape, generator=gen, dtype=F64)
    expected, grad_x, grads = module_reference(twin, g, x)
    close(layer.forward(x), expected, "output")
    close(layer.backward(g), grad_x, "input gradient")
    for name, p in layer.named_parameters():
        close(p.grad, grads[name], f"{name} gradient")
    assert [n for n, _ in layer.named_parameters()] == list(grads)


def test_layernorm_takes_strided_inputs_and_gradients() -> None:
    # A transposed view in and a transposed gradient back: the backward's row views must
    # not assume either is contiguous.
    gen = torch.Generator().manual_seed(2)
    layer = LayerNorm(5, dtype=F64)
    layer.weight.data = torch.rand(5, generator=gen, dtype=F64) + 0.5
    twin = torch.nn.LayerNorm(5, dtype=F64)
    twin.load_state_dict(layer.state_dict())
    x = torch.randn(6, 4, 5, generator=gen, dtype=F64).transpose(0, 1)
    g = torch.randn(6, 4, 5, generator=gen, dtype=F64).transpose(0, 1)
    expected, grad_x, grads = module_reference(twin, g, x)
    close(layer.forward(x), expected, "output")
    close(layer.backward(g), grad_x, "input gradient")
    for name, p in layer.named_parameters():
        close(p.grad, grads[name], f"{name} gradient")


def test_layernorm_keys_width_inference_and_kit() -> None:
    assert list(LayerNorm(3).state_dict()) == list(torch.nn.LayerNorm(3).state_dict())
    model = minidl.build("linear(6), layernorm, layernorm(eps=0.01)", (2,))
    assert model[1].in_features == 6 and model[2].eps == 0.01
    check_layer(lambda: LayerNorm(4), (3, 5, 4), batch_independent=True)
    check_layer(lambda: LayerNorm(5, elementwise_affine=False), (4, 5), large_inputs=1e3)


def test_layernorm_errors() -> None:
    with pytest.raises(ValueError, match=r"takes inputs of shape \(N, \.\.\., 4\), got \(2, 3\)"):
        LayerNorm(4).forward(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="eps must be a positive number"):
        LayerNorm(4, eps=0)
    with pytest.raises(ValueError, match="in_features must be a positive integer"):
        LayerNorm(0)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("shape", [(7, 5), (2, 3, 4)])
@pytest.mark.parametrize("training", [True, False])
def test_gelu_equals_torch(approximate: str, shape: tuple, training: bool) -> None:
    gen = torch.Generator().manual_seed(2)
    layer = GELU(approximate).train(training)
    twin = torch.nn.GELU(approximate).train(training)
    x = torch.randn(shape, generator=gen, dtype=F64) * 4
    g = torch.randn(shape, generator=gen, dtype=F64)
    expected, grad_x, _ = module_reference(twin, g, x)
    close(layer.forward(x), expected, "output")
    close(layer.backward(g), grad_x, "input gradient")
    # The in-place backward, which Sequential calls on a gradient nobody else holds.
    overwritten = g.clone()
    assert layer.backward_(overwritten) is overwritten
    assert torch.equal(overwritten, layer.backward(g))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_passes_the_kit_and_does_not_overflow(approximate: str) -> None:
    check_layer(lambda: GELU(approximate), (6, 4), large_inputs=1e4)
    assert minidl.registry.get("layer", "gelu") is GELU


def test_gelu_refuses_an_unknown_approximation() -> None:
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh', got 'erf'"):
        GELU("erf")


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_kernels_equal_the_written_formulas(approximate: str) -> None:
    """GELU runs ATen's fused kernels; the formulas in plugins/activations.py are the
    reference they must match, far into both tails."""
    from minidl.plugins.activations import gelu_backward_reference, gelu_reference

    gen = torch.Generator().manual_seed(3)
    x = torch.cat([torch.randn(200, generator=gen, dtype=F64) * 4, torch.linspace(-12, 12, 49)])
    g = torch.randn(x.shape, generator=gen, dtype=F64)
    layer = GELU(approximate)
    close(layer.forward(x), gelu_reference(x, approximate), "output")
    close(layer.backward(g), gelu_backward_reference(g, x, approximate), "input gradient")
