"""Every built-in layer equals torch.autograd in float64, alone and stacked.

Tolerance: the relative error ``max|ours - torch| / max|torch|`` of every forward output,
input gradient and parameter gradient is under 1e-9.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

import minidl
from benchmarks.twin import torch_twin
from minidl.plugins import MSE, Linear, ReLU, Sigmoid, Standardize, Tanh

F64 = torch.float64
REL = 1e-9


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    assert ours.dtype == ref.dtype, (ours.dtype, ref.dtype)
    scale = ref.abs().max().item()
    diff = (ours - ref).abs().max().item()
    return diff / scale if scale > 0 else diff


def assert_rel(ours: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    err = rel_err(ours, ref.detach())
    assert err < REL, f"{what}: relative error {err:.3g} >= {REL:g}"


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def torch_grads(fn, inputs: list[torch.Tensor], grad_output: torch.Tensor | None):  # type: ignore[no-untyped-def]
    """Output of ``fn(*inputs)`` and d(output . grad_output)/d(inputs), by autograd."""
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    with torch.enable_grad():
        out = fn(*leaves)
        out.backward(grad_output)
    return out.detach(), [leaf.grad for leaf in leaves]


# ---------------------------------------------------------------------------- Linear


@pytest.mark.parametrize("batch,fan_in,fan_out", [(1, 1, 1), (7, 5, 4), (64, 25, 25), (3, 2, 1)])
def test_linear_forward_backward_equal_autograd(batch: int, fan_in: int, fan_out: int) -> None:
    torch.manual_seed(batch + fan_in)
    layer = Linear(fan_in, fan_out, dtype=F64)
    x, g = randn(batch, fan_in, seed=1), randn(batch, fan_out, seed=2)
    ref_out, (ref_dx, ref_dw, ref_db) = torch_grads(
        lambda x, w, b: torch.nn.functional.linear(x, w, b),
        [x, layer.weight.data, layer.bias.data],
        g,
    )
    out = layer.forward(x)
    dx = layer.backward(g)
    assert_rel(out, ref_out, "forward")
    assert_rel(dx, ref_dx, "input grad")
    assert_rel(layer.weight.grad, ref_dw, "weight grad")
    assert_rel(layer.bias.grad, ref_db, "bias grad")


def test_linear_without_bias_forward_backward_equal_autograd() -> None:
    torch.manual_seed(0)
    layer = Linear(4, 3, bias=False, dtype=F64)
    x, g = randn(6, 4, seed=1), randn(6, 3, seed=2)
    ref_out, (ref_dx, ref_dw) = torch_grads(
        lambda x, w: torch.nn.functional.linear(x, w), [x, layer.weight.data], g
    )
    assert_rel(layer.forward(x), ref_out, "forward")
    assert_rel(layer.backward(g), ref_dx, "input grad")
    assert_rel(layer.weight.grad, ref_dw, "weight grad")
    # backward_parameters: the same parameter gradients, no input gradient.
    layer.zero_grad()
    layer.forward(x)
    assert layer.backward_parameters(g) is None
    assert_rel(layer.weight.grad, ref_dw, "weight grad by backward_parameters")


def test_linear_backward_accumulates_parameter_grads() -> None:
    torch.manual_seed(0)
    layer = Linear(3, 2, dtype=F64)
    x1, g1 = randn(4, 3, seed=1), randn(4, 2, seed=2)
    x2, g2 = randn(5, 3, seed=3), randn(5, 2, seed=4)
    layer.forward(x1)
    layer.backward(g1)
    layer.forward(x2)
    layer.backward(g2)
    # Reference: one backward through both batches at once (gradients add up).
    _, (_, ref_dw, ref_db) = torch_grads(
        lambda x, w, b: torch.nn.functional.linear(x, w, b),
        [torch.cat([x1, x2]), layer.weight.data, layer.bias.data],
        torch.cat([g1, g2]),
    )
    assert_rel(layer.weight.grad, ref_dw, "accumulated weight grad")
    assert_rel(layer.bias.grad, ref_db, "accumulated bias grad")


def test_linear_shapes_like_torch_and_rejects_bad_sizes() -> None:
    layer = Linear(3, 5)
    assert layer.weight.shape == torch.nn.Linear(3, 5).weight.shape == (5, 3)
    assert layer.bias.shape == (5,)
    assert layer.weight.data.dtype == torch.float32
    with pytest.raises(ValueError, match="in_features must be a positive integer, got 0"):
        Linear(0, 3)
    with pytest.raises(ValueError, match="out_features must be a positive integer, got 2.5"):
        Linear(3, 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="in_features must be a positive integer, got True"):
        Linear(True, 2)
    with pytest.raises(RuntimeError, match="backward called before forward"):
        Linear(2, 2).backward(torch.zeros(1, 2))


# ---------------------------------------------------------------------------- activations

ACTIVATIONS = {
    "relu": (ReLU, torch.relu),
    "sigmoid": (Sigmoid, torch.sigmoid),
    "tanh": (Tanh, torch.tanh),
}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_forward_backward_equal_autograd(name: str) -> None:
    cls, fn = ACTIVATIONS[name]
    x = randn(50, 7, seed=5) * 3
    x[0, :3] = 0.0  # ReLU's kink: torch's gradient there is 0, ours must be too
    g = randn(50, 7, seed=6)
    ref_out, (ref_dx,) = torch_grads(fn, [x], g)
    layer = cls()
    assert layer.parameters() == []
    out = layer.forward(x)
    assert_rel(out, ref_out, f"{name} forward")
    assert_rel(layer.backward(g), ref_dx, f"{name} input grad")
    # The in-place twins compute the same, overwriting their argument.
    twin = cls()
    out_ = twin.forward_(x.clone())
    assert torch.equal(out_, out)
    assert torch.equal(twin.backward_(g.clone()), layer.backward(g))


def _extreme_inputs(dtype: torch.dtype) -> torch.Tensor:
    grid = torch.linspace(-1000, 1000, 20001, dtype=dtype)
    # exp() overflows past ~709.8 (float64) and ~88.7 (float32); test on both sides.
    special = torch.tensor(
        [-1000, -710, -709, -89, -88, -40, -20, 0, 20, 40, 88, 89, 709, 710, 1000], dtype=dtype
    )
    return torch.cat([grid, special]).unsqueeze(1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_saturating_activations_finite_and_exact_up_to_1000(name: str, dtype: torch.dtype) -> None:
    cls, fn = ACTIVATIONS[name]
    x = _extreme_inputs(dtype)
    assert x.abs().max().item() == 1000
    g = torch.ones_like(x)
    ref_out, (ref_dx,) = torch_grads(fn, [x], g)
    layer = cls()
    out = layer.forward(x)
    dx = layer.backward(g)
    assert torch.isfinite(out).all() and torch.isfinite(dx).all()
    # Elementwise, with no absolute slack: exact where torch is exactly 0, 1 or -1.
    torch.testing.assert_close(out, ref_out, rtol=REL if dtype == F64 else 1e-6, atol=0)
    torch.testing.assert_close(dx, ref_dx, rtol=REL if dtype == F64 else 1e-6, atol=0)
    assert out.min() >= (0 if name == "sigmoid" else -1) and out.max() <= 1


def test_sigmoid_and_tanh_saturate_to_exact_limits() -> None:
    x = torch.tensor([[-1000.0], [1000.0]], dtype=F64)
    assert Sigmoid().forward(x).flatten().tolist() == [0.0, 1.0]
    assert Tanh().forward(x).flatten().tolist() == [-1.0, 1.0]
    assert Sigmoid.output_range == (0.0, 1.0) and Tanh.output_range == (-1.0, 1.0)


def test_saturation_measures_dead_or_flat_units() -> None:
    # ReLU: a unit is dead when it is zero for every example.
    out = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 3.0, 0.0, 0.0]])
    assert ReLU.saturation(out) == 0.5  # columns 0 and 3
    assert ReLU().saturation(torch.ones(2, 3)) == 0.0
    # Sigmoid: outputs within the margin of 0 or 1; Tanh: |out| above the threshold.
    assert Sigmoid.saturation(torch.tensor([[0.001, 0.5, 0.999, 0.02]])) == 0.5
    assert Sigmoid.saturation(torch.tensor([[0.001, 0.5, 0.999, 0.02]]), margin=0.05) == 0.75
    assert Tanh.saturation(torch.tensor([[-0.995, 0.0, 0.5, 1.0]])) == 0.5
    assert Tanh.saturation(torch.tensor([[-0.995, 0.0, 0.5, 1.0]]), threshold=0.4) == 0.75
    # Measured on the layer's own output: a network driven into saturation shows it.
    sig = Sigmoid()
    assert sig.saturation(sig.forward(torch.full((4, 2), 50.0))) == 1.0


# ---------------------------------------------------------------------------- Standardize


def test_standardize_forward_backward_equal_autograd() -> None:
    mean, std = [0.1, -2.5, 1 / 3], [0.7, 1e-3, math.pi]
    layer = Standardize(mean, std).to(dtype=F64)
    x, g = randn(20, 3, seed=7), randn(20, 3, seed=8)
    m, s = torch.tensor(mean, dtype=F64), torch.tensor(std, dtype=F64)
    ref_out, (ref_dx,) = torch_grads(lambda x: (x - m) / s, [x], g)
    assert layer.parameters() == []
    assert_rel(layer.forward(x), ref_out, "standardize forward")
    assert_rel(layer.backward(g), ref_dx, "standardize input grad")


def test_standardize_follows_input_dtype_without_losing_precision() -> None:
    mean, std = [1 / 3, 2 / 3], [1 / 7, 3.0]
    layer = Standardize(mean, std)
    layer.forward(torch.zeros(1, 2))  # float32 first...
    x = randn(5, 2, seed=9)
    out = layer.forward(x)  # ...then float64: the constants must not stay float32-rounded
    ref = (x - torch.tensor(mean, dtype=F64)) / torch.tensor(std, dtype=F64)
    assert_rel(out, ref, "standardize forward after a dtype change")


def test_standardize_fit_makes_zero_mean_unit_std() -> None:
    x = randn(200, 3, seed=10) * torch.tensor([1.0, 5.0, 0.1], dtype=F64) + 4
    x[:, 2] = 1.5  # a constant column: std 0 must not divide by zero
    layer = Standardize.fit(x).to(dtype=F64)
    z = layer.forward(x)
    assert torch.isfinite(z).all()
    torch.testing.assert_close(z[:, :2].mean(0), torch.zeros(2, dtype=F64), rtol=0, atol=1e-6)
    torch.testing.assert_close(
        z[:, :2].std(0, unbiased=False), torch.ones(2, dtype=F64), rtol=1e-6, atol=0
    )
    with pytest.raises(ValueError, match="standard deviation must be positive"):
        Standardize([0.0], [0.0])
    with pytest.raises(ValueError, match="2 means but 1 standard deviations"):
        Standardize([0.0, 1.0], [1.0])


# ---------------------------------------------------------------------------- stacked


def stacked(cls: type, device: str = "cpu") -> minidl.Sequential:
    """Standardize + the seed's 2-25-25-25-1 net, in float64."""
    torch.manual_seed(4)
    return minidl.Sequential(
        Standardize([0.5, 0.5], [0.29, 0.29]),
        Linear(2, 25),
        cls(),
        Linear(25, 25),
        cls(),
        Linear(25, 25),
        cls(),
        Linear(25, 1),
        Sigmoid(),
    ).to(device=device, dtype=F64)


def check_against_twin(model: minidl.Sequential, device: str) -> None:
    net = torch_twin(model)
    x = torch.rand(64, 2, generator=torch.Generator().manual_seed(5), dtype=F64).to(device)
    y = (x.sum(1, keepdim=True) > 1).to(F64)
    loss = MSE()
    value = loss.forward(model.forward(x), y)
    dx = model.backward(loss.backward())
    assert value.device.type == dx.device.type == device
    xr = x.clone().requires_grad_(True)
    with torch.enable_grad():
        ref = torch.nn.functional.mse_loss(net(xr), y)
        ref.backward()
    assert_rel(value, ref, "loss")
    assert_rel(dx, xr.grad, "input grad")
    ours, theirs = model.parameters(), list(net.parameters())
    assert len(ours) == len(theirs) == 8
    for i, (p, q) in enumerate(zip(ours, theirs, strict=True)):
        assert q.grad is not None and p.grad.device.type == device
        assert_rel(p.grad, q.grad, f"parameter {i} grad")


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_stacked_sequential_equals_autograd(activation: str) -> None:
    check_against_twin(stacked(ACTIVATIONS[activation][0]), "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_stacked_sequential_on_cuda_equals_autograd(activation: str) -> None:
    check_against_twin(stacked(ACTIVATIONS[activation][0], "cuda"), "cuda")


# ---------------------------------------------------------------------------- initialisation


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fan_in,fan_out", [(1, 1), (2, 25), (25, 25), (25, 1), (7, 300)])
def test_default_init_is_torch_nn_linear_bit_for_bit(
    fan_in: int, fan_out: int, dtype: torch.dtype
) -> None:
    torch.manual_seed(fan_in * 1000 + fan_out)
    ours = Linear(fan_in, fan_out, dtype=dtype)
    after_ours = torch.get_rng_state()
    torch.manual_seed(fan_in * 1000 + fan_out)
    ref = torch.nn.Linear(fan_in, fan_out, dtype=dtype)
    assert torch.equal(ours.weight.data, ref.weight.detach())
    assert torch.equal(ours.bias.data, ref.bias.detach())
    # The generator advanced alike, so the following layers of a network match too.
    assert torch.equal(after_ours, torch.get_rng_state())


FAN_IN, FAN_OUT = 300, 400  # 120000 weights: the sample variance is within ~0.4% (1 sigma)

INITS = {
    # name: (expected weight variance, uniform bound or None for a normal law)
    "xavier": (2 / (FAN_IN + FAN_OUT), math.sqrt(6 / (FAN_IN + FAN_OUT))),
    "xavier_normal": (2 / (FAN_IN + FAN_OUT), None),
    "he": (2 / FAN_IN, math.sqrt(6 / FAN_IN)),
    "he_normal": (2 / FAN_IN, None),
    "default": (1 / (3 * FAN_IN), 1 / math.sqrt(FAN_IN)),
}


@pytest.mark.parametrize("init", INITS)
def test_init_variance(init: str) -> None:
    variance, bound = INITS[init]
    torch.manual_seed(0)
    w = Linear(FAN_IN, FAN_OUT, init=init, dtype=F64).weight.data
    n = w.numel()
    assert abs(w.mean().item()) < 5 * math.sqrt(variance / n)
    assert w.var().item() == pytest.approx(variance, rel=0.03)
    if bound is not None:
        assert w.abs().max().item() <= bound
        assert w.abs().max().item() > 0.99 * bound  # uniform over the whole interval


@pytest.mark.parametrize("init", ["xavier", "he"])
def test_init_gain_scales_the_variance_and_zeroes_the_bias(init: str) -> None:
    variance = INITS[init][0] * (0.5**2 / (2 if init == "he" else 1))
    torch.manual_seed(1)
    layer = Linear(FAN_IN, FAN_OUT, init=init, gain=0.5, dtype=F64)
    assert layer.weight.data.var().item() == pytest.approx(variance, rel=0.03)
    assert torch.equal(layer.bias.data, torch.zeros(FAN_OUT, dtype=F64))


def test_init_chosen_from_a_spec_and_unknown_init_lists_the_choices() -> None:
    torch.manual_seed(2)
    model = minidl.build(f"linear({FAN_OUT}, init='he'), relu", (FAN_IN,))
    assert model[0].weight.data.var().item() == pytest.approx(2 / FAN_IN, rel=0.03)
    with pytest.raises(
        minidl.MinidlError,
        match=re.escape(
            "unknown initializer 'glorot'. Available names: "
            + ", ".join(minidl.registry.names("initializer"))
        ),
    ):
        Linear(2, 3, init="glorot")
