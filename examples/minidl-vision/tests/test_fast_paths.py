"""The layers' fast paths (ATen's convolution, pooling and batch-norm kernels) against the
derivations kept as tensor algebra in conv.py, and both against autograd in float64; the
memory orders the layers hand on; and that no autograd graph is ever recorded."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from minidl_vision import BatchNorm2d, Conv2d, MaxPool2d
from minidl_vision.conv import conv2d_input_grad, conv2d_weight_grad, max_pool2d_grad
from test_conv import CONV_CASES, POOL_CASES
from vision_parity import F64, close, reference

import minidl

CL = torch.channels_last


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_backward_equals_its_derivation_and_autograd(case: tuple) -> None:
    cin, cout, k, s, p, bias, h, w = case
    gen = torch.Generator().manual_seed(11)
    layer = Conv2d(cin, cout, k, stride=s, padding=p, bias=bias, dtype=F64)
    x = torch.randn(3, cin, h, w, generator=gen, dtype=F64)
    out = layer.forward(x)
    g = torch.randn(out.shape, generator=gen, dtype=F64)
    grad_input = layer.backward(g)
    kernel, stride, padding = layer.kernel_size, layer.stride, layer.padding
    derived_input = conv2d_input_grad(g, layer.weight.data, (h, w), stride, padding)
    derived_weight = conv2d_weight_grad(x, g, kernel, stride, padding)
    params = [layer.weight.data] + ([layer.bias.data] if bias else [])

    def conv(x: torch.Tensor, weight: torch.Tensor, *b: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, weight, b[0] if b else None, stride=s, padding=p)

    _, grads = reference(conv, g, x, *params)
    close(grad_input, derived_input, "input gradient: fast path vs derivation")
    close(layer.weight.grad, derived_weight, "weight gradient: fast path vs derivation")
    close(derived_input, grads[0], "input gradient: derivation vs autograd")
    close(derived_weight, grads[1], "weight gradient: derivation vs autograd")
    if bias:
        close(layer.bias.grad, g.sum((0, 2, 3)), "bias gradient: fast path vs derivation")
        close(g.sum((0, 2, 3)), grads[2], "bias gradient: derivation vs autograd")


@pytest.mark.parametrize("case", [(1, 32, 3, 1, 0, True, 28, 28), (3, 32, 3, 1, 1, True, 32, 32)])
def test_conv2d_fast_path_agrees_in_float32(case: tuple) -> None:
    """The benchmark's dtype and first layers: oneDNN's float32 kernels against the
    derivations computed in float64 from the same values."""
    cin, cout, k, s, p, bias, h, w = case
    gen = torch.Generator().manual_seed(5)
    layer = Conv2d(cin, cout, k, stride=s, padding=p, bias=bias)
    x = torch.rand(16, cin, h, w, generator=gen)
    out = layer.forward(x)
    g = torch.randn(out.shape, generator=gen)
    grad_input = layer.backward(g)
    w64, x64, g64 = layer.weight.data.double(), x.double(), g.double()
    expected = F.conv2d(x64, w64, layer.bias.data.double(), stride=s, padding=p)
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-5)
    derived = conv2d_input_grad(g64, w64, (h, w), layer.stride, layer.padding)
    torch.testing.assert_close(grad_input.double(), derived, rtol=1e-4, atol=1e-5)
    derived = conv2d_weight_grad(x64, g64, layer.kernel_size, layer.stride, layer.padding)
    torch.testing.assert_close(layer.weight.grad.double(), derived, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("memory", ["contiguous", "channels_last"])
@pytest.mark.parametrize("ties", [False, True])
def test_maxpool2d_backward_equals_its_derivation_and_autograd(
    case: tuple, memory: str, ties: bool
) -> None:
    k, s, h, w = case
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(3, 4, h, w, generator=gen, dtype=F64)
    if ties:  # many equal maxima, as after a ReLU: the first one takes the gradient
        x = x.clamp(min=0).round()
    if memory == "channels_last":
        x = x.contiguous(memory_format=CL)
    layer = MaxPool2d(k, s)
    out = layer.forward(x)
    g = torch.randn(out.shape, generator=gen, dtype=F64)
    grad = layer.backward(g)
    assert layer._indices is not None
    derived = max_pool2d_grad(g, layer._indices, x.shape)
    _, (expected,) = reference(lambda x: F.max_pool2d(x, k, s), g, x)
    close(grad, derived, "fast path vs derivation")
    close(derived, expected, "derivation vs autograd")


def channels_last(t: torch.Tensor) -> bool:
    return t.is_contiguous(memory_format=CL)


@pytest.mark.parametrize("channels", [1, 3])
def test_conv2d_runs_channels_last_from_a_torch_ordered_input(channels: int) -> None:
    """A data batch in torch's order (one channel: where contiguous() would leave its
    strides alone) comes out channels-last, with torch's values; a batch sliced from a
    larger one too (its storage starts further on)."""
    torch.manual_seed(0)
    layer = Conv2d(channels, 8, 3, padding=1)
    twin = torch.nn.Conv2d(channels, 8, 3, padding=1)
    twin.load_state_dict(layer.state_dict())
    data = torch.rand(7, channels, 6, 5)
    for x in (data, data[2:5]):
        out = layer.forward(x)
        assert channels_last(out) and not out.is_contiguous()
        with torch.no_grad():
            torch.testing.assert_close(out, twin(x))
        grad = layer.backward(torch.ones_like(out))
        assert grad.shape == x.shape


def test_the_layers_hand_on_channels_last_tensors() -> None:
    """conv2d, batchnorm2d, relu and maxpool2d keep channels-last between them, forward
    and backward, from flatten's gradient (in torch's order) on."""
    model = minidl.build(
        "conv2d(4, 3, padding=1), batchnorm2d(4), relu, maxpool2d(2), conv2d(6, 3), "
        "relu, maxpool2d(2), flatten, linear(3)",
        (1, 12, 12),
    )
    x = model.layers[0].forward(torch.rand(5, 1, 12, 12))
    for layer in model.layers[1:7]:
        assert channels_last(x), type(layer).__name__
        x = layer.forward(x)
    g = torch.randn(5, 6 * 2 * 2).view(x.shape)  # as flatten's backward gives it
    for layer in reversed(model.layers[1:7]):
        g = layer.backward(g)
        assert channels_last(g), type(layer).__name__


def test_batchnorm2d_on_channels_last_equals_torch() -> None:
    gen = torch.Generator().manual_seed(2)
    layer = BatchNorm2d(5, dtype=F64)
    layer.weight.data = torch.rand(5, generator=gen, dtype=F64) + 0.5
    layer.bias.data = torch.randn(5, generator=gen, dtype=F64)
    x = (torch.randn(4, 5, 3, 6, generator=gen, dtype=F64) * 3 + 2).contiguous(memory_format=CL)
    out = layer.forward(x)
    g = torch.randn(out.shape, generator=gen, dtype=F64).contiguous(memory_format=CL)
    w, b = layer.weight.data.clone(), layer.bias.data.clone()
    expected, (gx, gw, gb) = reference(
        lambda x, w, b: F.batch_norm(x, None, None, w, b, True), g, x, w, b
    )
    close(out, expected, "output")
    grad = layer.backward(g)
    close(grad, gx, "input gradient")
    close(layer.weight.grad, gw, "weight gradient")
    close(layer.bias.grad, gb, "bias gradient")
    assert channels_last(out) and channels_last(grad)


def test_a_training_step_records_no_graph() -> None:
    """Under torch's default grad mode, with inputs and parameters that do not require
    gradients: no layer's output or gradient carries a grad_fn."""
    assert torch.is_grad_enabled()
    model = minidl.build(
        "conv2d(4, 3, padding=1), batchnorm2d(4), relu, maxpool2d(2), flatten, linear(3)",
        (3, 8, 8),
    ).train()
    x = torch.rand(6, 3, 8, 8)
    tensors = [x]
    for layer in model.layers:
        tensors.append(layer.forward(tensors[-1]))
    g = torch.randn(tensors[-1].shape)
    for layer in reversed(model.layers):
        g = layer.backward(g)
        tensors.append(g)
    tensors += [p.data for p in model.parameters()] + [p.grad for p in model.parameters()]
    for t in tensors:
        assert not t.requires_grad and t.grad_fn is None
