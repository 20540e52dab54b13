"""SGD, Adam and a user's FlatOptimizer follow torch.optim over 100 steps in float64;
FlatOptimizer.state_dict captures a subclass's state with nothing written for it.

Both sides start from the same weights of several shapes (so the flat buffer's packing
matters) and follow the gradient of the same non-quadratic loss: minidl's is written by
hand, torch's comes from autograd. After every step each weight tensor must agree with
torch's to a relative error under 1e-9.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from minidl import FlatOptimizer, Parameter
from minidl.plugins import SGD, Adam

F64 = torch.float64
REL = 1e-9
STEPS = 100
SHAPES = [(5, 3), (5,), (1, 5), (1,)]


def _start() -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    weights = [torch.randn(*s, generator=g, dtype=F64) for s in SHAPES]
    coeffs = [torch.randn(*s, generator=g, dtype=F64) for s in SHAPES]
    targets = [torch.randn(*s, generator=g, dtype=F64) for s in SHAPES]
    return weights, coeffs, targets


def _loss(ws: list[torch.Tensor], coeffs: list[torch.Tensor], targets: list[torch.Tensor]):
    # sum(c * sin(w)) + ||w - t||^2 / 2: curved and with gradients of varied sizes.
    return sum(
        (c * torch.sin(w)).sum() + 0.5 * (w - t).pow(2).sum()
        for w, c, t in zip(ws, coeffs, targets, strict=True)
    )


def _hand_grad(w: torch.Tensor, c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return c * torch.cos(w) + (w - t)


def trajectories(
    ours_factory: Any, torch_factory: Any, lr_changes: dict[int, float] | None = None
) -> None:
    weights, coeffs, targets = _start()
    params = [Parameter(w.clone()) for w in weights]
    opt = ours_factory(params)
    leaves = [w.clone().requires_grad_(True) for w in weights]
    ref = torch_factory(leaves)
    for step in range(1, STEPS + 1):
        if lr_changes and step in lr_changes:
            opt.lr = lr_changes[step]
            for group in ref.param_groups:
                group["lr"] = lr_changes[step]
        opt.zero_grad()
        for p, c, t in zip(params, coeffs, targets, strict=True):
            p.grad += _hand_grad(p.data, c, t)
        opt.step()

        ref.zero_grad()
        with torch.enable_grad():
            _loss(leaves, coeffs, targets).backward()
        ref.step()

        for i, (p, q) in enumerate(zip(params, leaves, strict=True)):
            err = ((p.data - q.detach()).abs().max() / q.detach().abs().max()).item()
            assert err < REL, f"step {step}, weight {i}: relative error {err:.3g}"
    # The trajectory went somewhere: the weights moved well away from the start.
    moved = max((p.data - w).abs().max().item() for p, w in zip(params, weights, strict=True))
    assert moved > 1e-2


@pytest.mark.parametrize("lr", [0.1, 0.01])
def test_sgd_trajectory_equals_torch(lr: float) -> None:
    trajectories(lambda ps: SGD(ps, lr=lr), lambda ps: torch.optim.SGD(ps, lr=lr))


ADAM_VARIANTS = {
    "defaults-lr1e-2": {"lr": 1e-2},
    "default-lr": {},
    "betas": {"lr": 5e-2, "betas": (0.5, 0.9)},
    "beta1-zero": {"lr": 1e-2, "betas": (0.0, 0.99)},
    "eps": {"lr": 1e-2, "eps": 1e-3},
    "big-eps": {"lr": 1e-1, "eps": 1.0},
    "weight-decay": {"lr": 1e-2, "weight_decay": 0.1},
    "everything": {"lr": 3e-2, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.01},
}


@pytest.mark.parametrize("variant", ADAM_VARIANTS)
def test_adam_trajectory_equals_torch(variant: str) -> None:
    kwargs = ADAM_VARIANTS[variant]
    trajectories(lambda ps: Adam(ps, **kwargs), lambda ps: torch.optim.Adam(ps, **kwargs))


def test_adam_uses_eps_outside_the_square_root() -> None:
    """The seed report's variant (eps inside the sqrt) differs from torch at large eps;
    the big-eps variant above would catch it, this pins the first step by hand."""
    p = Parameter(torch.tensor([1.0], dtype=F64))
    opt = Adam([p], lr=0.1, eps=1.0)
    p.grad += torch.tensor([2.0], dtype=F64)
    opt.step()
    # m_hat = 2, v_hat = 4: w = 1 - 0.1 * 2 / (sqrt(4) + 1)
    assert p.data.item() == pytest.approx(1 - 0.1 * 2 / 3, rel=1e-15)


def test_learning_rate_change_between_steps_follows_torch() -> None:
    """Schedules set ``optimizer.lr``; both optimizers must pick the change up at once."""
    trajectories(
        lambda ps: Adam(ps, lr=1e-2),
        lambda ps: torch.optim.Adam(ps, lr=1e-2),
        lr_changes={30: 3e-2, 60: 1e-3},
    )
    trajectories(
        lambda ps: SGD(ps, lr=0.1), lambda ps: torch.optim.SGD(ps, lr=0.1), lr_changes={50: 0.01}
    )


class MomentumSGD(FlatOptimizer):
    """Written as a user would: a velocity tensor and two numbers, no state_dict code."""

    def __init__(self, parameters: Any, lr: float, momentum: float = 0.9) -> None:
        super().__init__(parameters, lr)
        self.momentum = momentum
        self.velocity = torch.zeros_like(self.data)
        self.steps = 0

    def step(self) -> None:
        self.velocity.mul_(self.momentum).add_(self.grad)
        self.data.add_(self.velocity, alpha=-self.lr)
        self.steps += 1


def test_a_flat_optimizer_subclass_follows_torch_sgd_with_momentum() -> None:
    trajectories(
        lambda ps: MomentumSGD(ps, lr=0.05, momentum=0.8),
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.8),
    )


def run_steps(params: list[Parameter], opt: Any, steps: int) -> None:
    _, coeffs, targets = _start()
    for _ in range(steps):
        opt.zero_grad()
        for p, c, t in zip(params, coeffs, targets, strict=True):
            p.grad += _hand_grad(p.data, c, t)
        opt.step()


def test_state_dict_captures_a_subclasss_tensors_and_numbers() -> None:
    weights, _, _ = _start()
    params = [Parameter(w.clone()) for w in weights]
    opt = MomentumSGD(params, lr=0.05, momentum=0.8)
    run_steps(params, opt, 7)
    state = opt.state_dict()
    assert sorted(state) == ["lr", "momentum", "steps", "velocity"]
    assert (state["lr"], state["momentum"], state["steps"]) == (0.05, 0.8, 7)
    assert torch.equal(state["velocity"], opt.velocity) and state["velocity"].any()
    # A copy, not the live tensor; and never the parameters or gradients themselves.
    assert state["velocity"].data_ptr() != opt.velocity.data_ptr()
    state["velocity"].zero_()
    assert opt.velocity.any()
    adam = Adam([Parameter(w.clone()) for w in weights], lr=1e-2)
    buffers = (adam.data.untyped_storage().data_ptr(), adam.grad.untyped_storage().data_ptr())
    adam_state = adam.state_dict()
    assert {"lr", "beta1", "beta2", "eps", "weight_decay", "steps", "m", "v"} <= set(adam_state)
    assert not any(
        isinstance(v, torch.Tensor) and v.untyped_storage().data_ptr() in buffers
        for v in adam_state.values()
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: MomentumSGD(ps, lr=0.05, momentum=0.8),
        lambda ps: Adam(ps, lr=1e-2, betas=(0.8, 0.9), weight_decay=0.01),
        lambda ps: SGD(ps, lr=0.1),
    ],
    ids=["momentum-sgd", "adam", "sgd"],
)
def test_a_state_round_trip_gives_bitwise_identical_next_steps(make: Any) -> None:
    weights, _, _ = _start()
    straight = [Parameter(w.clone()) for w in weights]
    run_steps(straight, make(straight), 12)

    first = [Parameter(w.clone()) for w in weights]
    opt = make(first)
    run_steps(first, opt, 5)
    state = opt.state_dict()
    resumed = [Parameter(p.data.clone()) for p in first]
    fresh = make(resumed)
    fresh.lr = 123.0  # overwritten by the state
    fresh.load_state_dict(state)
    assert fresh.lr == opt.lr
    again = fresh.state_dict()
    assert again.keys() == state.keys()
    for key, value in state.items():
        same = (
            torch.equal(again[key], value)
            if isinstance(value, torch.Tensor)
            else again[key] == value
        )
        assert same, key
    assert getattr(fresh, "steps", 5) == 5
    run_steps(resumed, fresh, 7)
    for p, q in zip(resumed, straight, strict=True):
        assert torch.equal(p.data, q.data)


def test_load_state_dict_copies_tensors_in_place_and_keeps_number_types() -> None:
    params = [Parameter(torch.zeros(3, dtype=F64))]
    opt = MomentumSGD(params, lr=0.5)
    velocity = opt.velocity
    opt.load_state_dict(
        {"lr": 1, "momentum": 0, "steps": 4.0, "velocity": torch.ones(3, dtype=F64)}
    )
    assert opt.velocity is velocity and torch.equal(velocity, torch.ones(3, dtype=F64))
    # Numbers keep their type (JSON gives 1.0 back as 1).
    assert (opt.lr, opt.momentum, opt.steps) == (1.0, 0.0, 4)
    assert (type(opt.lr), type(opt.momentum), type(opt.steps)) == (float, float, int)


def test_load_state_dict_refuses_a_state_missing_keys() -> None:
    params = [Parameter(torch.zeros(3))]
    opt = MomentumSGD(params, lr=0.5)
    state = opt.state_dict()
    del state["velocity"], state["steps"]
    with pytest.raises(KeyError, match="MomentumSGD state lacks steps, velocity"):
        opt.load_state_dict(state)
    assert opt.lr == 0.5 and opt.steps == 0
    with pytest.raises(KeyError, match="Adam state lacks m, v"):
        adam = Adam(params, lr=0.1)
        adam.load_state_dict({k: v for k, v in adam.state_dict().items() if k not in "mv"})


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda ps: SGD(ps, lr=-1.0), "lr must be a positive number, got -1.0"),
        (lambda ps: SGD(ps, lr=float("nan")), "lr must be a positive number, got nan"),
        (lambda ps: Adam(ps, betas=(1.0, 0.999)), r"beta1 must be in \[0, 1\), got 1.0"),
        (lambda ps: Adam(ps, betas=(0.9, -0.1)), r"beta2 must be in \[0, 1\), got -0.1"),
        (lambda ps: Adam(ps, eps=-1e-8), "eps must be >= 0, got -1e-08"),
        (lambda ps: Adam(ps, weight_decay=-1.0), "weight_decay must be >= 0, got -1.0"),
        (lambda ps: SGD([], lr=0.1), "no parameters to optimize"),
    ],
)
def test_bad_hyperparameters_are_clear_errors(make: Any, message: str) -> None:
    params = [Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match=message):
        make(params)
