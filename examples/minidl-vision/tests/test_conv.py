"""conv2d, maxpool2d and flatten against torch.nn.functional, in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from minidl_vision import Conv2d, Flatten, MaxPool2d
from vision_parity import F64, close, reference

import minidl
from minidl.testing import check_layer

# (in, out, kernel, stride, padding, bias, H, W)
CONV_CASES = [
    (3, 4, 3, 1, 1, True, 8, 8),
    (1, 16, 3, 1, 1, True, 8, 8),
    (3, 4, 3, 2, 0, True, 9, 7),
    (2, 5, 2, 2, 1, True, 7, 7),
    (1, 6, 5, 3, 2, False, 11, 10),
    (4, 3, (3, 2), (2, 1), (1, 0), True, 9, 8),
    (3, 2, 1, 1, 0, True, 5, 5),
    (2, 3, 3, 1, 2, True, 4, 5),
    (2, 3, 4, 3, 0, True, 4, 4),  # a single output pixel
]


def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("memory", ["contiguous", "channels_last"])
def test_conv2d_equals_torch(case: tuple, memory: str) -> None:
    cin, cout, k, s, p, bias, h, w = case
    gen = torch.Generator().manual_seed(7)
    layer = Conv2d(cin, cout, k, stride=s, padding=p, bias=bias, dtype=F64)
    layer.weight.data.normal_(generator=gen)
    if bias:
        layer.bias.data.normal_(generator=gen)
    x = torch.randn(5, cin, h, w, generator=gen, dtype=F64)
    if memory == "channels_last":
        x = channels_last(x)
    out = layer.forward(x)
    g = torch.randn(out.shape, generator=gen, dtype=F64)
    params = [layer.weight.data] + ([layer.bias.data] if bias else [])

    def conv(x: torch.Tensor, weight: torch.Tensor, *b: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, weight, b[0] if b else None, stride=s, padding=p)

    expected, grads = reference(conv, g, x, *params)
    assert out.shape == expected.shape
    close(out, expected, "output")
    close(layer.backward(g), grads[0], "input gradient")
    close(layer.weight.grad, grads[1], "weight gradient")
    if bias:
        close(layer.bias.grad, grads[2], "bias gradient")


@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((1, 16, 3), {}),
        ((3, 8, 5), {"padding": 2}),
        ((16, 32, 3), {}),
        ((2, 4, (3, 1)), {"stride": 2}),
        ((4, 4, 2), {"bias": False}),
    ],
)
def test_conv2d_draws_torchs_initial_weights(args: tuple, kwargs: dict) -> None:
    for seed in (0, 3):
        torch.manual_seed(seed)
        mine = Conv2d(*args, **kwargs)
        after_mine = torch.rand(3)
        torch.manual_seed(seed)
        theirs = torch.nn.Conv2d(*args, **kwargs)
        after_theirs = torch.rand(3)
        assert torch.equal(mine.weight.data, theirs.weight.detach())
        if theirs.bias is None:
            assert mine.bias is None
        else:
            assert torch.equal(mine.bias.data, theirs.bias.detach())
        assert torch.equal(after_mine, after_theirs), "drew a different number of values"
    assert mine.weight.data.dtype == torch.get_default_dtype()


def test_conv2d_attributes_and_state_dict_keys() -> None:
    layer = Conv2d(3, 8, 3, stride=2, padding=1)
    assert (layer.in_channels, layer.out_channels) == (3, 8)
    assert (layer.kernel_size, layer.stride, layer.padding) == ((3, 3), (2, 2), (1, 1))
    torch_layer = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
    assert (torch_layer.kernel_size, torch_layer.stride, torch_layer.padding) == (
        layer.kernel_size,
        layer.stride,
        layer.padding,
    )
    assert list(layer.state_dict()) == list(torch_layer.state_dict()) == ["weight", "bias"]
    assert list(Conv2d(3, 8, 3, bias=False).state_dict()) == ["weight"]
    assert "Conv2d(3, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))" == repr(layer)


def test_conv2d_accumulates_and_backward_parameters_agrees() -> None:
    torch.manual_seed(0)
    a = Conv2d(2, 3, 3, padding=1, dtype=F64)
    b = Conv2d(2, 3, 3, padding=1, dtype=F64)
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 2, 6, 5, dtype=F64)
    g = torch.randn(4, 3, 6, 5, dtype=F64)
    a.forward(x)
    a.backward(g)
    once = [p.grad.clone() for p in a.parameters()]
    a.forward(x)
    a.backward(g)
    for p, first in zip(a.parameters(), once, strict=True):
        close(p.grad, 2 * first, "accumulated gradient")
    b.forward(x)
    assert b.backward_parameters(g) is None
    for p, first in zip(b.parameters(), once, strict=True):
        close(p.grad, first, "backward_parameters' gradient")


def test_conv2d_gets_in_channels_from_the_spec() -> None:
    model = minidl.build("conv2d(8, 3, padding=1), conv2d(4, (3, 1), stride=2)", (3, 7, 6))
    first, second = model.layers
    assert (first.in_channels, first.out_channels) == (3, 8)
    assert (second.in_channels, second.out_channels) == (8, 4)
    assert model.forward(torch.zeros(2, 3, 7, 6)).shape == (2, 4, 3, 3)


def test_conv2d_moves_to_float64() -> None:
    layer = Conv2d(2, 3, 3).to(F64)
    assert layer.weight.data.dtype == layer.bias.data.dtype == F64
    out = layer.forward(torch.randn(2, 2, 5, 5, dtype=F64))
    assert out.dtype == F64 and layer.backward(torch.ones_like(out)).dtype == F64


def test_conv2d_errors_name_the_problem() -> None:
    layer = Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match="takes 3 input channel"):
        layer.forward(torch.zeros(2, 2, 5, 5))
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        layer.forward(torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="does not fit"):
        layer.forward(torch.zeros(2, 3, 2, 5))
    with pytest.raises(ValueError, match="kernel_size must be"):
        Conv2d(3, 4, 0)
    with pytest.raises(ValueError, match="out_channels must be"):
        Conv2d(3, 0, 3)
    with pytest.raises(RuntimeError, match="before forward"):
        Conv2d(3, 4, 3).backward(torch.zeros(1, 4, 1, 1))


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: Conv2d(2, 3, 3, padding=1), (3, 2, 5, 4)),
        (lambda: Conv2d(2, 3, (3, 2), stride=2), (3, 2, 7, 6)),
        (lambda: MaxPool2d(2), (3, 2, 5, 4)),
        (lambda: MaxPool2d(3, 1), (3, 2, 5, 4)),
        (Flatten, (3, 2, 5, 4)),
    ],
)
def test_layers_pass_minidls_kit(make: object, shape: tuple) -> None:
    check_layer(make, input_shape=shape)


# (kernel, stride, H, W): even and odd sizes (a remainder row and column are dropped, as
# torch drops them), overlapping and non-overlapping windows.
POOL_CASES = [
    (2, None, 8, 8),
    (2, None, 7, 9),
    (3, 2, 7, 7),
    (3, 1, 6, 5),
    (2, 1, 5, 5),
    ((2, 3), None, 7, 8),
    (3, 3, 10, 11),
    (3, None, 3, 3),
    (1, None, 4, 5),
    (1, 2, 5, 5),
]


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("memory", ["contiguous", "channels_last"])
def test_maxpool2d_equals_torch(case: tuple, memory: str) -> None:
    k, s, h, w = case
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, h, w, generator=gen, dtype=F64)
    if memory == "channels_last":
        x = channels_last(x)
    layer = MaxPool2d(k, s)
    out = layer.forward(x)
    g = torch.randn(out.shape, generator=gen, dtype=F64)
    expected, (grad,) = reference(lambda x: F.max_pool2d(x, k, s), g, x)
    assert torch.equal(out, expected)
    close(layer.backward(g), grad, "input gradient")


@pytest.mark.parametrize("case", POOL_CASES)
def test_maxpool2d_sends_ties_where_torch_does(case: tuple) -> None:
    """Many equal values (after a ReLU, or in raw pixels): the gradient goes to the first
    maximum of each window, exactly as torch sends it."""
    k, s, h, w = case
    gen = torch.Generator().manual_seed(2)
    x = torch.randint(0, 3, (3, 2, h, w), generator=gen).to(F64)
    layer = MaxPool2d(k, s)
    out = layer.forward(x)
    g = torch.rand(out.shape, generator=gen, dtype=F64) + 1
    expected, (grad,) = reference(lambda x: F.max_pool2d(x, k, s), g, x)
    assert torch.equal(out, expected)
    close(layer.backward(g), grad, "input gradient with ties")


def test_maxpool2d_output_never_shares_the_inputs_memory() -> None:
    """It says returns_fresh: Sequential may let the next layer overwrite its output."""
    x = torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    out = MaxPool2d(1).forward(x)
    assert (
        torch.equal(out, x) and out.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
    )


def test_maxpool2d_attributes() -> None:
    assert (MaxPool2d(2).kernel_size, MaxPool2d(2).stride) == (2, 2)
    assert (MaxPool2d(3, 1).kernel_size, MaxPool2d(3, 1).stride) == (3, 1)
    assert MaxPool2d(2).parameters() == []
    with pytest.raises(ValueError, match="does not fit"):
        MaxPool2d(3).forward(torch.zeros(1, 1, 2, 2))


def test_maxpool2d_float32_positions_stay_exact() -> None:
    """Window positions are tracked as floats; an image of 2**20 elements still routes
    every gradient to the right place."""
    x = torch.randn(1, 16, 256, 256)
    layer = MaxPool2d(2)
    out = layer.forward(x)
    g = torch.rand(out.shape)
    expected, (grad,) = reference(lambda x: F.max_pool2d(x, 2), g, x)
    assert torch.equal(out, expected)
    assert torch.equal(layer.backward(g), grad)


@pytest.mark.parametrize("shape", [(3, 2, 4, 5), (3, 7), (2, 3, 4)])
def test_flatten_equals_torch(shape: tuple) -> None:
    x = torch.randn(shape, dtype=F64)
    layer = Flatten()
    out = layer.forward(x)
    assert torch.equal(out, torch.nn.Flatten()(x))
    g = torch.randn(out.shape, dtype=F64)
    assert torch.equal(layer.backward(g), g.reshape(shape))


def test_flatten_keeps_torchs_order_for_channels_last_input() -> None:
    x = torch.randn(2, 3, 4, 5, dtype=F64)
    assert torch.equal(Flatten().forward(channels_last(x)), x.flatten(1))
