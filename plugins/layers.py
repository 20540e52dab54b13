"""Linear, the seed's three activations, and input standardisation."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from minidl import ModuleBase, Parameter, create, hookimpl
from minidl.module import parse_to

# The activations' derivatives are the seed report's formulas, each written in the comment
# above its backward. They are evaluated by ATen's fused elementwise kernels: plain tensor
# operations (no graph, no autograd) that compute g * f'(x) in one pass over memory where
# ``g * (out > 0)`` takes two or three, which is what makes batch 10,000 faster than the
# torch twin. tests/test_parity_layers.py checks each against the formula's autograd value.
# Looked up once: attribute access on ``torch.ops`` costs a microsecond.
_threshold_backward = torch.ops.aten.threshold_backward.default
_threshold_backward_ = torch.ops.aten.threshold_backward.grad_input
_sigmoid_backward = torch.ops.aten.sigmoid_backward.default
_sigmoid_backward_ = torch.ops.aten.sigmoid_backward.grad_input
_tanh_backward = torch.ops.aten.tanh_backward.default
_tanh_backward_ = torch.ops.aten.tanh_backward.grad_input


class Linear(ModuleBase):
    """``y = x @ weight.T + bias``, shaped and initialised like ``torch.nn.Linear``; an
    input ``(N, ..., in_features)`` of more dimensions is taken as its rows, as torch does.

    ``init`` is a registered initializer's spec (``default``, ``xavier``, ``he(gain=2.0)``) or a
    callable ``init(weight, bias, gain=...)``; with ``bias=False`` it gets an empty bias,
    so it draws what ``torch.nn.Linear(..., bias=False)`` draws.
    """

    #: forward() and backward() return new tensors that the layer keeps no reference to, so
    #: Sequential may let the next module overwrite them (see Sequential).
    returns_fresh = True

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        init: str | Callable[..., None] = "default",
        gain: float | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        for label, n in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ValueError(f"Linear {label} must be a positive integer, got {n!r}")
        if not isinstance(bias, bool):  # linear(4, 5) in a spec is not a bias
            raise ValueError(f"Linear bias must be True or False, got {bias!r}")
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(
            torch.empty(out_features, in_features, dtype=dtype, device=device), "weight"
        )
        b = torch.empty(out_features if bias else 0, dtype=dtype, device=device)
        gains = {} if gain is None else {"gain": gain}
        if isinstance(init, str):  # a spec: a name, optionally with settings, he(gain=2.0)
            create("initializer", init, self.weight.data, b, **gains)
        else:
            init(self.weight.data, b, **gains)
        self.bias = Parameter(b, "bias") if bias else None
        self._input: Tensor | None = None
        # weight.data.t() is a view op costing as much as a small addmm's arithmetic: keep it,
        # and remake it only when the parameter's tensor is another object (.to(), flat buffer).
        self._weight: Tensor | None = None
        self._weight_t: Tensor | None = None
        # The bias gradient is grad_output.t() @ ones: one addmv_ instead of sum(0) + add_.
        # The ones are remade for another batch size or another bias.grad tensor (.to()).
        self._ones: Tensor | None = None
        self._ones_for: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2:  # (N, ..., in_features): the same on the rows, one per position
            return self._forward_rows(x)
        self._input = x
        w = self.weight.data
        if w is not self._weight:
            self._weight, self._weight_t = w, w.t()
        if self.bias is None:
            return x.mm(self._weight_t)
        return torch.addmm(self.bias.data, x, self._weight_t)

    def _forward_rows(self, x: Tensor) -> Tensor:
        if x.dim() < 2:
            raise ValueError(
                f"Linear takes inputs of shape (N, ..., {self.in_features}), got {tuple(x.shape)}"
            )
        rows = self.forward(x.reshape(-1, x.shape[-1]))
        return rows.view(*x.shape[:-1], self.out_features)

    def backward_parameters(self, grad_output: Tensor) -> None:
        """backward() without the gradient with respect to the input, which nobody needs
        when the input is the data: Sequential calls this on its first module in training."""
        if grad_output.dim() != 2:
            grad_output = grad_output.reshape(-1, self.out_features)
        x = self._input
        if x is None:
            raise RuntimeError("Linear.backward called before forward")
        g_t = grad_output.t()
        self.weight.grad.addmm_(g_t, x)
        if self.bias is None:
            return
        bias_grad = self.bias.grad
        ones, batch = self._ones, x.shape[0]  # not len(x): Tensor.__len__ is Python code
        if ones is None or bias_grad is not self._ones_for or ones.shape[0] != batch:
            ones = torch.ones(batch, dtype=bias_grad.dtype, device=bias_grad.device)
            self._ones, self._ones_for = ones, bias_grad
        bias_grad.addmv_(g_t, ones)

    def backward(self, grad_output: Tensor) -> Tensor:
        if grad_output.dim() != 2:
            rows = self.backward(grad_output.reshape(-1, self.out_features))
            return rows.view(*grad_output.shape[:-1], self.in_features)
        self.backward_parameters(grad_output)
        return grad_output.mm(self.weight.data)

    def parameters(self) -> list[Parameter]:
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    def extra_repr(self) -> str:
        bias = "" if self.bias is not None else ", bias=False"
        return f"in_features={self.in_features}, out_features={self.out_features}{bias}"


# Activations have in-place twins, forward_ and backward_, that overwrite their argument:
# at batch 10,000 a fresh 1 MB tensor costs more than the arithmetic on it. Sequential calls
# them only on a tensor that the neighbouring module has just made (see Sequential).


class ReLU(ModuleBase):
    def forward(self, x: Tensor) -> Tensor:
        self._output = torch.relu(x)
        return self._output

    def forward_(self, x: Tensor) -> Tensor:
        self._output = x.relu_()
        return self._output

    # f'(x) = 1 if x > 0 else 0, so grad * (out > 0): output > 0 exactly where input > 0.
    def backward(self, grad_output: Tensor) -> Tensor:
        return _threshold_backward(grad_output, self._output, 0)

    def backward_(self, grad_output: Tensor) -> Tensor:
        return _threshold_backward_(grad_output, self._output, 0, grad_input=grad_output)

    @staticmethod
    def saturation(output: Tensor) -> float:
        """The fraction of dead units: zero for every example, so they pass no gradient."""
        return float((output.flatten(1) <= 0).all(0).to(torch.float64).mean())


class Sigmoid(ModuleBase):
    output_range = (0.0, 1.0)  # targets outside it cannot be fitted (minidl.fit checks)

    # torch.sigmoid saturates cleanly for large |x|; 1 / (1 + exp(-x)) would overflow.
    def forward(self, x: Tensor) -> Tensor:
        self._output = torch.sigmoid(x)
        return self._output

    def forward_(self, x: Tensor) -> Tensor:
        self._output = x.sigmoid_()
        return self._output

    # f'(x) = s (1 - s) with s = sigmoid(x): grad * s * (1 - s) in one kernel.
    def backward(self, grad_output: Tensor) -> Tensor:
        return _sigmoid_backward(grad_output, self._output)

    def backward_(self, grad_output: Tensor) -> Tensor:
        return _sigmoid_backward_(grad_output, self._output, grad_input=grad_output)

    @staticmethod
    def saturation(output: Tensor, margin: float = 0.01) -> float:
        """The fraction of outputs within ``margin`` of 0 or 1, where the slope is < margin."""
        return float(((output < margin) | (output > 1 - margin)).to(torch.float64).mean())


class Tanh(ModuleBase):
    output_range = (-1.0, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        self._output = torch.tanh(x)
        return self._output

    def forward_(self, x: Tensor) -> Tensor:
        self._output = x.tanh_()
        return self._output

    # f'(x) = 1 - t^2 with t = tanh(x): grad * (1 - t * t) in one pass, with 1 - t * t from a fused
    # multiply-add, so it keeps the tiny derivative near saturation (within 2 ulp of
    # (1 - t)(1 + t), where a plain 1 - t * t loses digits) and equals autograd's exactly.
    def backward(self, grad_output: Tensor) -> Tensor:
        return _tanh_backward(grad_output, self._output)

    def backward_(self, grad_output: Tensor) -> Tensor:
        return _tanh_backward_(grad_output, self._output, grad_input=grad_output)

    @staticmethod
    def saturation(output: Tensor, threshold: float = 0.99) -> float:
        """The fraction of outputs with ``|out| > threshold``, where the slope is small."""
        return float((output.abs() > threshold).to(torch.float64).mean())


class Standardize(ModuleBase):
    """``(x - mean) / std`` with constants fitted on training data; saved with the model,
    so predictions on raw inputs need no separate preprocessing."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        if len(mean) != len(std):
            raise ValueError(f"Standardize: {len(mean)} means but {len(std)} standard deviations")
        if any(not (math.isfinite(s) and s > 0) for s in std):
            raise ValueError("Standardize: every standard deviation must be positive and finite")
        # The exact values stay as Python floats: moving to float64 after float32 must not
        # keep float32-rounded constants.
        self._values = (list(mean), list(std))
        self.mean = torch.tensor(self._values[0], dtype=torch.get_default_dtype())
        self.std = torch.tensor(self._values[1], dtype=torch.get_default_dtype())
        self.out_features = len(mean)

    @classmethod
    def fit(cls, x: Tensor) -> Standardize:
        std = x.std(0, unbiased=False)
        return cls(x.mean(0).tolist(), torch.where(std > 0, std, torch.ones_like(std)).tolist())

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype != self.mean.dtype or x.device != self.mean.device:
            self.to(x.device, x.dtype)
        return (x - self.mean) / self.std

    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output / self.std

    def to(self, *args: Any, **kwargs: Any) -> Standardize:
        device, dtype = parse_to(*args, **kwargs)
        dtype = dtype or self.mean.dtype
        device = device or self.mean.device
        self.mean = torch.tensor(self._values[0], dtype=dtype, device=device)
        self.std = torch.tensor(self._values[1], dtype=dtype, device=device)
        return self

    def extra_repr(self) -> str:
        return f"features={self.out_features}"


@hookimpl
def register_layers(register: Callable[[str, Any], None]) -> None:
    register("linear", Linear)
    register("relu", ReLU)
    register("sigmoid", Sigmoid)
    register("tanh", Tanh)
    register("standardize", Standardize)
