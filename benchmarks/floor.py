"""The floor: one training step of an MLP written by hand in plain tensor operations.

No modules, no protocol, no optimizer object: every parameter is a view of one flat buffer,
gradients are written (not accumulated) with ``out=`` so there is nothing to zero, the
activations work in place on tensors only this loop holds, and the first layer skips its
input gradient. It knows everything about the network it trains, which a framework cannot:
it is the fastest this approach can go in Python, the yardstick for minidl's overhead.
It computes the same values as minidl and the torch twin (same formulas, same kernels).
"""

from __future__ import annotations

import torch
from torch import Tensor

_threshold_backward_ = torch.ops.aten.threshold_backward.grad_input
_sigmoid_backward_ = torch.ops.aten.sigmoid_backward.grad_input
_tanh_backward_ = torch.ops.aten.tanh_backward.grad_input


def _scalar(value: float, dtype: torch.dtype) -> Tensor:
    # A 0-dim tensor of the data's dtype acts as a Python number in an operation without
    # being wrapped into a new tensor at every call.
    return torch.tensor(value, dtype=dtype)


class FusedMLP:
    """Linear layers ``(weight, bias)`` with ``activation`` between them and a sigmoid output,
    MSE loss, and ``optimizer`` "sgd" or "adam" (torch.optim.Adam's formulas)."""

    def __init__(
        self,
        layers: list[tuple[Tensor, Tensor]],
        activation: str,
        optimizer: str,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        first = layers[0][0]
        total = sum(w.numel() + b.numel() for w, b in layers)
        self.data = torch.empty(total, dtype=first.dtype, device=first.device)
        self.grad = torch.zeros_like(self.data)
        self.weights: list[Tensor] = []
        self.biases: list[Tensor] = []
        self.weight_grads: list[Tensor] = []
        self.bias_grads: list[Tensor] = []
        offset = 0
        for w, b in layers:
            for src, params, grads in (
                (w, self.weights, self.weight_grads),
                (b, self.biases, self.bias_grads),
            ):
                n = src.numel()
                view = self.data[offset : offset + n].view(src.shape)
                view.copy_(src)
                params.append(view)
                grads.append(self.grad[offset : offset + n].view(src.shape))
                offset += n
        self.weights_t = [w.t() for w in self.weights]
        self.hidden_backward_ = {
            "relu": lambda g, out: _threshold_backward_(g, out, 0, grad_input=g),
            "tanh": lambda g, out: _tanh_backward_(g, out, grad_input=g),
            "sigmoid": lambda g, out: _sigmoid_backward_(g, out, grad_input=g),
        }[activation]
        self.hidden_forward_ = {
            "relu": Tensor.relu_,
            "tanh": Tensor.tanh_,
            "sigmoid": Tensor.sigmoid_,
        }[activation]
        self.optimizer, self.lr = optimizer, lr
        self.beta1, self.beta2, self.eps = betas[0], betas[1], eps
        self.beta2_t, self.eps_t = _scalar(betas[1], first.dtype), _scalar(eps, first.dtype)
        self.m = torch.zeros_like(self.data)
        self.v = torch.zeros_like(self.data)
        self.denom = torch.empty_like(self.data)
        self.bias2_sqrt = _scalar(1.0, first.dtype)
        self.steps = 0
        self.ones: Tensor | None = None
        self.n: Tensor | None = None
        self.two_over_n: Tensor | None = None

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        """One SGD or Adam step on the batch; returns the loss before the step (0-dim)."""
        if self.ones is None or self.ones.shape[0] != x.shape[0]:
            self.ones = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
            self.n = _scalar(float(y.numel()), x.dtype)
            self.two_over_n = _scalar(2 / y.numel(), x.dtype)
        weights_t, biases, last = self.weights_t, self.biases, len(self.weights) - 1
        hidden_forward_ = self.hidden_forward_
        inputs = []
        h = x
        for i in range(last):
            inputs.append(h)
            h = hidden_forward_(torch.addmm(biases[i], h, weights_t[i]))
        inputs.append(h)
        prediction = torch.addmm(biases[last], h, weights_t[last]).sigmoid_()
        diff = prediction - y
        loss = (diff * diff).sum().div_(self.n)
        g = _sigmoid_backward_(diff.mul_(self.two_over_n), prediction, grad_input=diff)
        weights, weight_grads, bias_grads, ones = (
            self.weights,
            self.weight_grads,
            self.bias_grads,
            self.ones,
        )
        hidden_backward_ = self.hidden_backward_
        for i in range(last, -1, -1):
            g_t = g.t()
            torch.mm(g_t, inputs[i], out=weight_grads[i])
            torch.mv(g_t, ones, out=bias_grads[i])
            if i:
                g = hidden_backward_(g.mm(weights[i]), inputs[i])
        if self.optimizer == "sgd":
            self.data.add_(self.grad, alpha=-self.lr)
        else:
            self._adam()
        return loss

    def _adam(self) -> None:
        self.steps += 1
        grad = self.grad
        self.m.lerp_(grad, 1 - self.beta1)
        self.v.mul_(self.beta2_t).addcmul_(grad, grad, value=1 - self.beta2)
        bias1 = 1 - self.beta1**self.steps
        self.bias2_sqrt.fill_((1 - self.beta2**self.steps) ** 0.5)
        denom = torch.sqrt(self.v, out=self.denom).div_(self.bias2_sqrt).add_(self.eps_t)
        self.data.addcdiv_(self.m, denom, value=-self.lr / bias1)
