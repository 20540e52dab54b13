"""Conv2d, MaxPool2d and Flatten: torch.nn's semantics on ATen's convolution and pooling
primitives, with the backward passes written out here.

The work runs channels-last, ``(N, H, W, C)`` in memory with torch's ``(N, C, H, W)``
shape: on one thread oneDNN's convolutions are faster there than in torch's default order
(forward and backward together, two to three times for a network's first layer of one or
three channels, 10-15% for 32), and the elementwise layers between them run over contiguous
channels. The outputs are channels-last tensors (``x.is_contiguous(memory_format=
torch.channels_last)``); every layer takes either memory order.

The backward passes: a convolution's input gradient is a transposed convolution of the
output gradient with the same weight, and its weight gradient a correlation of the input
with the output gradient. ATen's ``convolution_backward`` computes both with oneDNN's
kernels, the weight gradient 2.3-5.9 times faster than expressing it as a convolution
(issue #18's measurement). :func:`conv2d_input_grad` and :func:`conv2d_weight_grad`
are the same derivatives written as tensor algebra: the tests hold the fast path to them,
and both to autograd. A max-pooling's gradient goes to each window's maximum through the
indices its forward kept: one ``scatter_add_`` (:func:`max_pool2d_grad`), or ATen's
kernel for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from minidl import ModuleBase, Parameter

Pair = tuple[int, int]


def pair(value: Any, what: str, layer: str, minimum: int) -> Pair:
    """``3`` -> ``(3, 3)``; ``(3, 2)`` or ``[3, 2]`` (as JSON gives it back) -> ``(3, 2)``."""
    items = (value, value) if isinstance(value, int) else value
    if (
        not isinstance(items, tuple | list)
        or len(items) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in items)
    ):
        raise ValueError(
            f"{layer} {what} must be an integer >= {minimum} or a pair of them, got {value!r}"
        )
    return int(items[0]), int(items[1])


def check_image(layer: str, x: Tensor, channels: int | None = None) -> None:
    if x.dim() != 4:
        raise ValueError(
            f"{layer} takes images of shape (N, C, H, W), got a tensor of shape {tuple(x.shape)}"
        )
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{layer} takes {channels} input channel(s), got an input of shape "
            f"{tuple(x.shape)} with {x.shape[1]}"
        )


def output_size(layer: str, size: Sequence[int], kernel: Pair, stride: Pair) -> Pair:
    """The number of window positions along H and W (torch's floor mode)."""
    if size[0] < kernel[0] or size[1] < kernel[1]:
        raise ValueError(
            f"{layer}: a {kernel[0]}x{kernel[1]} kernel does not fit in a {size[0]}x{size[1]} "
            "image (padding included)"
        )
    return (size[0] - kernel[0]) // stride[0] + 1, (size[1] - kernel[1]) // stride[1] + 1


def channels_last(x: Tensor) -> Tensor:
    """``x`` (N, C, H, W) in channels-last memory: a copy unless it is already."""
    n, c, h, w = x.shape
    if c == 1:
        # contiguous() leaves a one-channel image's strides as they are (either order
        # fits it), and oneDNN would run this convolution and the next ones in the slower
        # order: twice as slow here. The strides channels-last gives are free to set.
        x = x.contiguous()
        return x.as_strided(x.shape, (h * w, 1, w, 1))
    return x.contiguous(memory_format=torch.channels_last)


def conv2d_input_grad(
    grad_output: Tensor, weight: Tensor, input_size: Sequence[int], stride: Pair, padding: Pair
) -> Tensor:
    """The gradient of a convolution with respect to its ``(H, W)``-sized input, derived.

    ``out[n, o, y, x] = sum over c, i, j of w[o, c, i, j] * xp[n, c, s*y + i, s*x + j]``
    (``xp``: the input padded by ``p``), so every output pixel sends its gradient back
    through the weight to the inputs under its window: ``dxp[n, c, s*y + i, s*x + j] +=
    sum over o of w[o, c, i, j] * g[n, o, y, x]``. That sum is a transposed convolution of
    ``g`` with the same weight; cropping the padding is its ``padding``, and the rows and
    columns past the last window (floor mode) are its ``output_padding``, gradient zero.
    """
    sizes = zip(input_size, padding, grad_output.shape[2:], stride, weight.shape[2:], strict=True)
    extra = [size + 2 * p - ((o - 1) * s + k) for size, p, o, s, k in sizes]
    return torch.conv_transpose2d(
        grad_output, weight, stride=stride, padding=padding, output_padding=extra
    )


def conv2d_weight_grad(
    x: Tensor, grad_output: Tensor, kernel: Pair, stride: Pair, padding: Pair
) -> Tensor:
    """The gradient of a convolution with respect to its weight, derived.

    From the same sum, ``dw[o, c, i, j] = sum over n, y, x of g[n, o, y, x] *
    xp[n, c, s*y + i, s*x + j]``: the output gradient contracted with the padded input's
    windows (im2col, as a strided view, and one matrix product).
    """
    (ph, pw), (n, c, h, w) = padding, x.shape
    padded = x.new_zeros(n, c, h + 2 * ph, w + 2 * pw)
    padded[:, :, ph : ph + h, pw : pw + w] = x
    windows = padded.unfold(2, kernel[0], stride[0]).unfold(3, kernel[1], stride[1])
    return torch.tensordot(grad_output, windows, dims=([0, 2, 3], [0, 2, 3]))


def max_pool2d_grad(grad_output: Tensor, indices: Tensor, input_shape: Sequence[int]) -> Tensor:
    """The gradient of a max-pooling with respect to its input, derived.

    ``out[n, c, y, x] = x[n, c, indices[n, c, y, x]]`` (an index into the channel's
    flattened (H, W) plane), so ``dx[n, c, indices[n, c, y, x]] += g[n, c, y, x]``: added,
    since overlapping windows may share a maximum; zero where no window's maximum lies.
    """
    n, c, h, w = input_shape
    grad = grad_output.new_zeros(n, c, h * w)
    grad.scatter_add_(2, indices.reshape(n, c, -1), grad_output.reshape(n, c, -1))
    return grad.view(n, c, h, w)


# Looked up once: attribute access on ``torch.ops`` costs a microsecond.
_convolution_backward = torch.ops.aten.convolution_backward.default
_max_pool2d_with_indices = torch.ops.aten.max_pool2d_with_indices.default
_max_pool2d_with_indices_backward = torch.ops.aten.max_pool2d_with_indices_backward.default


class Conv2d(ModuleBase):
    """``torch.nn.Conv2d`` without dilation or groups: ``out[n, o] = bias[o] + sum over c,
    i, j of weight[o, c, i, j] * x_padded[n, c, s*y + i, s*x + j]``.

    The weights are drawn as torch draws them (kaiming-uniform with ``a = sqrt(5)``, then
    the bias), so after ``torch.manual_seed(s)`` they equal ``torch.nn.Conv2d``'s.
    """

    #: forward() and backward() return tensors the layer keeps no reference to, so
    #: Sequential may let a neighbour overwrite them in place.
    returns_fresh = True
    #: Each output mixes a window of inputs: not a hidden activation (--activation).
    elementwise = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Pair,
        stride: int | Pair = 1,
        padding: int | Pair = 0,
        bias: bool = True,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        for label, n in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ValueError(f"conv2d {label} must be a positive integer, got {n!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair(kernel_size, "kernel_size", "conv2d", 1)
        self.stride = pair(stride, "stride", "conv2d", 1)
        self.padding = pair(padding, "padding", "conv2d", 0)
        kh, kw = self.kernel_size
        weight = torch.empty(out_channels, in_channels, kh, kw, dtype=dtype, device=device)
        fan_in = in_channels * kh * kw
        # torch's own arithmetic (kaiming_uniform_ with a=sqrt(5)): equal in value to
        # 1/sqrt(fan_in) but not always in the last bit.
        gain = math.sqrt(2.0 / (1 + math.sqrt(5) ** 2))
        bound = math.sqrt(3.0) * (gain / math.sqrt(fan_in))
        weight.uniform_(-bound, bound)
        self.weight = Parameter(weight, "weight")
        self.bias: Parameter | None = None
        if bias:
            b = torch.empty(out_channels, dtype=dtype, device=device)
            b.uniform_(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
            self.bias = Parameter(b, "bias")
        # Saved by forward for backward: the (channels-last) input, all the backward
        # needs besides the weight.
        self._input: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        check_image("conv2d", x, self.in_channels)
        (ph, pw), kernel = self.padding, self.kernel_size
        output_size("conv2d", (x.shape[2] + 2 * ph, x.shape[3] + 2 * pw), kernel, self.stride)
        x = channels_last(x)
        bias = None if self.bias is None else self.bias.data
        self._input = x
        return torch.conv2d(x, self.weight.data, bias, self.stride, self.padding)

    def _backward(self, grad_output: Tensor, input_grad: bool) -> Tensor | None:
        x = self._input
        if x is None:
            raise RuntimeError("conv2d: backward called before forward")
        bias = self.bias
        # conv2d_input_grad and conv2d_weight_grad, and the bias's sum over (n, y, x), in
        # oneDNN's kernels (the tests compare them).
        grad_input, grad_weight, grad_bias = _convolution_backward(
            grad_output,
            x,
            self.weight.data,
            None if bias is None else [self.out_channels],
            self.stride,
            self.padding,
            (1, 1),
            False,
            (0, 0),
            1,
            (input_grad, True, bias is not None),
        )
        self.weight.grad.add_(grad_weight)
        if bias is not None:
            bias.grad.add_(grad_bias)
        return grad_input

    def backward_parameters(self, grad_output: Tensor) -> None:
        """backward() without the gradient with respect to the input, which nobody needs
        when the input is the data: Sequential calls this on its first module in training."""
        self._backward(grad_output, input_grad=False)

    def backward(self, grad_output: Tensor) -> Tensor:
        grad = self._backward(grad_output, input_grad=True)
        assert grad is not None
        return grad

    def parameters(self) -> list[Parameter]:
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        return text + ("" if self.bias is not None else ", bias=False")


class MaxPool2d(ModuleBase):
    """``torch.nn.MaxPool2d(kernel_size, stride)``: the largest value of each window; the
    gradient goes to the first largest in row-major order (to a NaN, if the window holds
    one), as torch sends it."""

    returns_fresh = True
    #: One output per window of inputs: not a hidden activation (--activation).
    elementwise = False

    def __init__(self, kernel_size: int | Pair, stride: int | Pair | None = None) -> None:
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self._kernel = pair(kernel_size, "kernel_size", "maxpool2d", 1)
        self._stride = pair(self.stride, "stride", "maxpool2d", 1)
        # Saved by forward for backward: where each window's maximum lies in its
        # channel's (H, W) plane, and the input, which the kernel asks for (a ReLU before
        # the pooling keeps it anyway).
        self._indices: Tensor | None = None
        self._input: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        check_image("maxpool2d", x)
        output_size("maxpool2d", x.shape[2:], self._kernel, self._stride)
        out, self._indices = _max_pool2d_with_indices(x, self._kernel, self._stride)
        self._input = x
        return out

    def backward(self, grad_output: Tensor) -> Tensor:
        x, indices = self._input, self._indices
        if x is None or indices is None:
            raise RuntimeError("maxpool2d: backward called before forward")
        # The kernel works in grad_output's memory order and copies x into it: give it
        # x's (flatten's gradient comes back in torch's order, x is channels-last).
        if x.is_contiguous(memory_format=torch.channels_last):
            grad_output = grad_output.contiguous(memory_format=torch.channels_last)
        # max_pool2d_grad in ATen's kernel, a third faster than scatter_add_ (the tests
        # compare them).
        return _max_pool2d_with_indices_backward(
            grad_output, x, self._kernel, self._stride, (0, 0), (1, 1), False, indices
        )

    def parameters(self) -> list[Parameter]:
        return []

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class Flatten(ModuleBase):
    """``torch.nn.Flatten()``: ``(N, C, H, W)`` (or any ``(N, ...)``) to ``(N, C*H*W)``."""

    #: It reshapes, it computes nothing: not a hidden activation (--activation).
    elementwise = False

    def __init__(self) -> None:
        self._input_shape: torch.Size | None = None

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2:
            raise ValueError(f"flatten takes a batch (N, ...), got shape {tuple(x.shape)}")
        self._input_shape = x.shape
        return x.flatten(1)

    def backward(self, grad_output: Tensor) -> Tensor:
        if self._input_shape is None:
            raise RuntimeError("flatten: backward called before forward")
        return grad_output.reshape(self._input_shape)

    def parameters(self) -> list[Parameter]:
        return []
