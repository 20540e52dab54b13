"""Batch normalisation, as ``torch.nn.BatchNorm1d`` and ``torch.nn.BatchNorm2d`` compute it.

The forward pass is ATen's ``native_batch_norm``: the statistics (two passes, mean then
squared deviations), the running averages' update and the output, in one kernel that
reads the input in its own memory order, four times faster than the same written as
tensor operations. The backward pass is derived below and works on rows: the input with
its channel dimension moved last and everything else flattened, ``(M, C)``, so that the
sums over a channel are column reductions; for a convolution's output, which
:class:`minidl_vision.Conv2d` leaves in channels-last memory, the rows are a view.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from minidl import ModuleBase, Parameter

_native_batch_norm = torch.ops.aten.native_batch_norm.default


class _BatchNorm(ModuleBase):
    """``y = (x - mean) / sqrt(var + eps) * weight + bias`` per channel (dimension 1).

    Training mode normalises with the batch's mean and biased variance and moves the
    running statistics towards the batch's mean and *unbiased* variance by ``momentum``
    (``None``: a cumulative average, as torch); eval mode normalises with the running
    statistics and changes nothing.
    """

    #: forward() and backward() return tensors the layer keeps no reference to (it keeps
    #: the normalised rows), so Sequential may let a ReLU after it work in place.
    returns_fresh = True
    #: Each output depends on the whole batch's statistics: not a hidden activation.
    elementwise = False
    #: The input dimensions accepted, for the error message and the check.
    dims: tuple[int, ...] = ()
    shape_text = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        name = type(self).__name__.lower()
        if not isinstance(num_features, int) or isinstance(num_features, bool) or num_features < 1:
            raise ValueError(
                f"{name} num_features must be a positive integer, got {num_features!r}"
            )
        if (
            isinstance(eps, bool)
            or not isinstance(eps, int | float)
            or not (eps > 0 and math.isfinite(eps))
        ):
            raise ValueError(f"{name} eps must be a positive number, got {eps!r}")
        if momentum is not None and (
            isinstance(momentum, bool)
            or not isinstance(momentum, int | float)
            or not 0 <= momentum <= 1
        ):
            raise ValueError(f"{name} momentum must be in [0, 1] or None, got {momentum!r}")
        self.num_features, self.eps, self.momentum = num_features, float(eps), momentum
        self.weight = Parameter(torch.ones(num_features, dtype=dtype, device=device), "weight")
        self.bias = Parameter(torch.zeros(num_features, dtype=dtype, device=device), "bias")
        self.register_buffer("running_mean", torch.zeros(num_features, dtype=dtype, device=device))
        self.register_buffer("running_var", torch.ones(num_features, dtype=dtype, device=device))
        self.register_buffer(
            "num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device)
        )
        # Saved by forward for backward: the input, the mean and 1/sqrt(var + eps) it was
        # normalised with, and whether they were the batch's statistics (backward must
        # follow the mode forward ran in, even if train()/eval() was called in between).
        self._input: Tensor | None = None
        self._mean: Tensor | None = None
        self._invstd: Tensor | None = None
        self._batch_statistics = False

    def _rows(self, x: Tensor) -> Tensor:
        name = type(self).__name__.lower()
        if x.dim() not in self.dims or x.shape[1] != self.num_features:
            raise ValueError(
                f"{name}({self.num_features}) takes inputs of shape {self.shape_text} with "
                f"C = {self.num_features}, got shape {tuple(x.shape)}"
            )
        return x.movedim(1, -1).reshape(-1, self.num_features)

    def _unrows(self, rows: Tensor, shape: torch.Size) -> Tensor:
        moved = (shape[0], *shape[2:], shape[1])
        return rows.view(moved).movedim(-1, 1)

    def forward(self, x: Tensor) -> Tensor:
        self._rows(x)  # checks the shape
        if self.training:
            if x.numel() // self.num_features < 2:
                raise ValueError(
                    f"{type(self).__name__.lower()}: expected more than 1 value per channel "
                    f"when training, got input of shape {tuple(x.shape)}"
                )
            # The running statistics move in place (a loaded state_dict and a resumed run
            # hold these very tensors) towards the batch's mean and unbiased variance.
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
            else:
                factor = self.momentum
            out, mean, invstd = _native_batch_norm(
                x,
                self.weight.data,
                self.bias.data,
                self.running_mean,
                self.running_var,
                True,
                factor,
                self.eps,
            )
        else:
            out = _native_batch_norm(
                x,
                self.weight.data,
                self.bias.data,
                self.running_mean,
                self.running_var,
                False,
                0.0,
                self.eps,
            )[0]
            mean = self.running_mean.clone()
            invstd = (self.running_var + self.eps).rsqrt_()
        self._input, self._mean, self._invstd = x, mean, invstd
        self._batch_statistics = self.training
        return out

    def backward(self, grad_output: Tensor) -> Tensor:
        x, mean, invstd = self._input, self._mean, self._invstd
        if x is None or mean is None or invstd is None:
            raise RuntimeError(f"{type(self).__name__.lower()}: backward called before forward")
        g = self._rows(grad_output)
        # With x_hat = (x - mean) * invstd and y = weight * x_hat + bias:
        # dweight = sum over rows of g * x_hat, dbias = sum of g.
        centred = self._rows(x) - mean
        sum_g = g.sum(0)
        sum_g_normalised = (g * centred).sum(0).mul_(invstd)
        self.weight.grad.add_(sum_g_normalised)
        self.bias.grad.add_(sum_g)
        scale = self.weight.data * invstd
        if not self._batch_statistics:  # the statistics are constants: dx = g * scale
            return self._unrows(g * scale, x.shape)
        # The batch's mean and variance depend on every row:
        # dx = scale * (g - mean(g) - x_hat * mean(g * x_hat)), computed as
        # g * scale + (x - mean) * slope + shift in the centred rows' memory.
        m = g.shape[0]
        shift = scale * sum_g * (-1 / m)
        slope = scale * invstd * sum_g_normalised * (-1 / m)
        grad = torch.addcmul(shift, centred, slope, out=centred).addcmul_(g, scale)
        return self._unrows(grad, x.shape)

    def parameters(self) -> list[Parameter]:
        return [self.weight, self.bias]

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps:g}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """``torch.nn.BatchNorm1d``: inputs ``(N, C)`` or ``(N, C, L)``."""

    dims = (2, 3)
    shape_text = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """``torch.nn.BatchNorm2d``: inputs ``(N, C, H, W)``."""

    dims = (4,)
    shape_text = "(N, C, H, W)"
