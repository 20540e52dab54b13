"""Conv2d, MaxPool2d and Flatten: torch.nn's semantics, computed with a few gathers and
matrix products.

Shapes are torch's, ``(N, C, H, W)``, but the work is done channels-last, ``(N, H, W, C)``
in memory: copies and elementwise operations then run over the channels, contiguous,
rather than along 2- or 3-wide window rows, and a convolution's output comes straight out
of its matrix product in that order. The outputs are channels-last tensors of torch's
shape (``x.is_contiguous(memory_format=torch.channels_last)``); the next layer reads them
without a copy, and every layer takes either memory order.

A convolution gathers every patch of its input into one matrix (im2col) with one
``index_select`` and multiplies it by the weight; its input gradient goes back with one
``index_add_`` through the same index. With one input channel, where a patch row is 3
numbers, these are four to six times faster than a strided copy of the windows or nine
shifted adds; with 16 channels they cost about the same.
"""

from __future__ import annotations

import functools
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
    """``(N, C, H, W)`` seen as ``(N, H, W, C)``: a view."""
    return x.permute(0, 2, 3, 1)


def channels_first(x: Tensor) -> Tensor:
    """The inverse view: ``(N, H, W, C)`` seen as ``(N, C, H, W)``."""
    return x.permute(0, 3, 1, 2)


def windows(x: Tensor, kernel: Pair, stride: Pair) -> Tensor:
    """``(N, Ho, Wo, C, kh, kw)``: the patch under each kernel position of ``x``, an
    ``(N, H, W, C)`` image; a view."""
    return x.unfold(1, kernel[0], stride[0]).unfold(2, kernel[1], stride[1])


@functools.lru_cache(maxsize=64)
def patch_index(image: tuple[int, int, int], kernel: Pair, stride: Pair, device: str) -> Tensor:
    """``(Ho, Wo, C, kh, kw)``: where each element of every patch lies in one flattened
    ``(H, W, C)`` image. Made once per image size (a few per run)."""
    positions = torch.arange(math.prod(image), device=device).view(1, *image)
    return windows(positions, kernel, stride)[0].contiguous()


@functools.lru_cache(maxsize=64)
def window_positions(
    image: tuple[int, int, int], kernel: Pair, stride: Pair, device: str, dtype: torch.dtype
) -> Tensor:
    """``(kh * kw, Ho * Wo * C)``: row r holds, for every window, the position in the
    flattened image of its r-th element (row-major), as floats of ``dtype``."""
    index = patch_index(image, kernel, stride, device)
    rows = index.permute(3, 4, 0, 1, 2).reshape(kernel[0] * kernel[1], -1)
    return rows.to(dtype).contiguous()  # lerp_ runs 5 times slower on strided rows


class Conv2d(ModuleBase):
    """``torch.nn.Conv2d`` without dilation or groups: ``out[n, o] = bias[o] + sum over c,
    i, j of weight[o, c, i, j] * x_padded[n, c, s*y + i, s*x + j]``.

    The weights are drawn as torch draws them (kaiming-uniform with ``a = sqrt(5)``, then
    the bias), so after ``torch.manual_seed(s)`` they equal ``torch.nn.Conv2d``'s.
    """

    #: forward() and backward() return tensors the layer keeps no reference to, so
    #: Sequential may let a neighbour overwrite them in place.
    returns_fresh = True

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
        # Saved by forward for backward: the im2col matrix, its patch index, and the
        # shape of the (padded) channels-last image.
        self._columns: Tensor | None = None
        self._index: Tensor | None = None
        self._image_shape: torch.Size | None = None

    def forward(self, x: Tensor) -> Tensor:
        check_image("conv2d", x, self.in_channels)
        (ph, pw), kernel, stride = self.padding, self.kernel_size, self.stride
        image = channels_last(x)
        n, h, w, c = image.shape
        if ph or pw:
            padded = image.new_zeros(n, h + 2 * ph, w + 2 * pw, c)
            padded[:, ph : ph + h, pw : pw + w] = image
            image = padded
        ho, wo = output_size("conv2d", image.shape[1:3], kernel, stride)
        # im2col: one row per output pixel in (n, y, x) order, its patch along it in the
        # weight's own (c, i, j) order. Rows in that order make the product's result the
        # output in channels-last memory.
        index = patch_index(tuple(image.shape[1:]), kernel, stride, str(x.device)).view(-1)
        columns = image.reshape(n, -1).index_select(1, index).view(n * ho * wo, -1)
        weight = self.weight.data.view(self.out_channels, -1)
        if self.bias is None:
            out = columns.mm(weight.t())
        else:
            out = torch.addmm(self.bias.data, columns, weight.t())
        self._columns, self._index, self._image_shape = columns, index, image.shape
        return channels_first(out.view(n, ho, wo, self.out_channels))

    def _parameter_gradients(self, grad_output: Tensor) -> Tensor:
        if self._columns is None:
            raise RuntimeError("conv2d: backward called before forward")
        rows = channels_last(grad_output).reshape(-1, self.out_channels)
        # Computed transposed, (c*i*j, o): with few columns (one input channel: 9) the
        # matrix library is four times faster with the long dimension first.
        grad = self._columns.t().mm(rows)
        self.weight.grad.view(self.out_channels, -1).add_(grad.t())
        if self.bias is not None:
            self.bias.grad.add_(rows.sum(0))
        return rows

    def backward_parameters(self, grad_output: Tensor) -> None:
        """backward() without the gradient with respect to the input, which nobody needs
        when the input is the data: Sequential calls this on its first module in training."""
        self._parameter_gradients(grad_output)

    def backward(self, grad_output: Tensor) -> Tensor:
        rows = self._parameter_gradients(grad_output)
        assert self._index is not None and self._image_shape is not None
        n, hp, wp, c = self._image_shape
        patches = rows.mm(self.weight.data.view(self.out_channels, -1))
        # col2im: each patch element added back where im2col took it from.
        grad = patches.new_zeros(n, hp * wp * c).index_add_(1, self._index, patches.view(n, -1))
        ph, pw = self.padding
        return channels_first(grad.view(n, hp, wp, c)[:, ph : hp - ph, pw : wp - pw])

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
    gradient goes to the first largest in row-major order, as torch sends it. (A window
    holding a NaN outputs NaN, as in torch, but its gradient goes to the largest value
    before the NaN, where torch's goes to the NaN.)"""

    returns_fresh = True

    def __init__(self, kernel_size: int | Pair, stride: int | Pair | None = None) -> None:
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self._kernel = pair(kernel_size, "kernel_size", "maxpool2d", 1)
        self._stride = pair(self.stride, "stride", "maxpool2d", 1)
        self._winner: Tensor | None = None
        self._image_shape: torch.Size | None = None

    def forward(self, x: Tensor) -> Tensor:
        check_image("maxpool2d", x)
        image = channels_last(x)
        ho, wo = output_size("maxpool2d", image.shape[1:3], self._kernel, self._stride)
        n, _, _, c = image.shape
        # One row per window element, (i, j) in row-major order, each row every window.
        patches = windows(image, self._kernel, self._stride).permute(4, 5, 0, 1, 2, 3)
        patches = patches.reshape(self._kernel[0] * self._kernel[1], n, -1)
        # The running maximum over the rows, and where in the image it came from: only a
        # strictly larger value takes over, so ties go to the first, as in torch.
        # (Tensor.max(0) does this in one call but five times slower: it reduces element
        # by element, where these are vectorised whole-row operations.) The positions are
        # floats, so that one lerp_ with the 0/1 "taken" mask moves each to its new row's;
        # float32 holds them exactly below 2**24 elements an image.
        size = tuple(image.shape[1:])
        exact = image.dtype == torch.float64 or math.prod(size) >= 2**24
        dtype = torch.float64 if exact else torch.float32
        positions = window_positions(size, self._kernel, self._stride, str(x.device), dtype)
        best, winner = patches[0], positions[0].expand(n, -1).clone()
        if patches.shape[0] == 1:  # 1x1 windows: best may be a view of x; return a copy
            best = best.clone()
        taken = torch.empty_like(winner)
        for r in range(1, patches.shape[0]):
            torch.gt(patches[r], best, out=taken)
            best = torch.maximum(best, patches[r])  # NaN propagates, as in torch
            winner.lerp_(positions[r], taken)
        self._winner, self._image_shape = winner, image.shape
        return channels_first(best.view(n, ho, wo, c))

    def backward(self, grad_output: Tensor) -> Tensor:
        if self._winner is None or self._image_shape is None:
            raise RuntimeError("maxpool2d: backward called before forward")
        n, h, w, c = self._image_shape
        g = channels_last(grad_output).reshape(n, -1)
        # Each output's gradient added at its window's maximum (windows may overlap).
        grad = g.new_zeros(n, h * w * c).scatter_add_(1, self._winner.long(), g)
        return channels_first(grad.view(n, h, w, c))

    def parameters(self) -> list[Parameter]:
        return []

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class Flatten(ModuleBase):
    """``torch.nn.Flatten()``: ``(N, C, H, W)`` (or any ``(N, ...)``) to ``(N, C*H*W)``."""

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
