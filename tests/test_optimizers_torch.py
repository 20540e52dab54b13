"""sgd's settings and adamw against torch.optim in float64: 100-step trajectories."""

from __future__ import annotations

import copy

import pytest
import torch

import minidl
from minidl import Parameter
from minidl.plugins import SGD, Adam, AdamW
from minidl.testing import check_optimizer

F64 = torch.float64


def trajectory(make_ours, make_theirs, steps: int = 100) -> None:  # type: ignore[no-untyped-def]
    """Both optimizers on the same non-quadratic problem, from the same start, with the
    lr changed half-way (as a schedule does); the weights must agree at every step."""
    gen = torch.Generator().manual_seed(0)
    starts = [torch.randn(3, 4, generator=gen, dtype=F64), torch.randn(5, generator=gen, dtype=F64)]
    ours = [Parameter(s.clone()) for s in starts]
    theirs = [torch.nn.Parameter(s.clone()) for s in starts]
    opt, ref = make_ours(ours), make_theirs(theirs)
    for step in range(steps):
        if step == steps // 2:
            opt.lr /= 3
            for group in ref.param_groups:
                group["lr"] /= 3
        opt.zero_grad()
        ref.zero_grad()
        for p, q in zip(ours, theirs, strict=True):
            # the gradient of sum(sin(w) * w^2), as a backward pass would add it
            w = q.detach()
            grad = torch.cos(w) * w * w + 2 * w * torch.sin(w)
            p.grad.add_(grad)
            q.grad = grad.clone()
        opt.step()
        ref.step()
        for i, (p, q) in enumerate(zip(ours, theirs, strict=True)):
            where = f"step {step}, parameter {i}"
            torch.testing.assert_close(
                p.data,
                q.detach(),
                rtol=1e-12,
                atol=1e-14,
                msg=lambda m, where=where: f"{where}: {m}",
            )


SGD_SETTINGS = [
    {},
    {"momentum": 0.9},
    {"momentum": 0.9, "dampening": 0.3},
    {"momentum": 0.8, "nesterov": True},
    {"weight_decay": 0.05},
    {"momentum": 0.5, "dampening": 0.1, "weight_decay": 0.01},
    {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
]


@pytest.mark.parametrize("settings", SGD_SETTINGS, ids=str)
def test_sgd_equals_torch_sgd(settings: dict) -> None:
    trajectory(
        lambda ps: SGD(ps, lr=0.05, **settings),
        lambda ps: torch.optim.SGD(ps, lr=0.05, **settings),
    )


ADAMW_SETTINGS = [
    {},
    {"weight_decay": 0.0},
    {"weight_decay": 0.3, "betas": (0.8, 0.99)},
    {"eps": 1e-3, "betas": (0.5, 0.9)},
]


@pytest.mark.parametrize("settings", ADAMW_SETTINGS, ids=str)
def test_adamw_equals_torch_adamw(settings: dict) -> None:
    trajectory(
        lambda ps: AdamW(ps, lr=0.01, **settings),
        lambda ps: torch.optim.AdamW(ps, lr=0.01, **settings),
    )


def test_adam_weight_decay_stays_l2() -> None:
    trajectory(
        lambda ps: Adam(ps, lr=0.01, weight_decay=0.1),
        lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.1),
    )


@pytest.mark.parametrize(
    "factory, settings",
    [
        (SGD, {"momentum": 0.9}),
        (SGD, {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
        (AdamW, {}),
    ],
    ids=str,
)
def test_they_pass_the_kit_and_resume_exactly(factory: type, settings: dict) -> None:
    check_optimizer(factory, lr=0.05, resumable=True, **settings)


def test_state_dict_holds_the_momentum_state() -> None:
    params = [Parameter(torch.ones(3))]
    plain = SGD(params, lr=0.1)
    assert set(plain.state_dict()) == {"lr"}  # nothing more to save
    opt = SGD([Parameter(torch.ones(3))], lr=0.1, momentum=0.9)
    assert {"momentum_buffer", "steps", "momentum", "dampening", "nesterov"} <= set(
        opt.state_dict()
    )
    opt.grad.fill_(1.0)
    opt.step()
    state = copy.deepcopy(opt.state_dict())
    assert state["steps"] == 1 and torch.equal(state["momentum_buffer"], torch.ones(3))
    fresh = SGD([Parameter(torch.ones(3))], lr=0.1, momentum=0.9)
    fresh.load_state_dict(state)
    assert fresh.steps == 1 and torch.equal(fresh.momentum_buffer, torch.ones(3))
    assert set(AdamW([Parameter(torch.ones(2))]).state_dict()) >= {
        "m",
        "v",
        "steps",
        "weight_decay",
    }


def test_plain_sgd_keeps_its_one_operation() -> None:
    opt = SGD([Parameter(torch.ones(3))], lr=0.1)
    assert "step" not in vars(opt)  # the class's step: one add_, no test of the settings


def test_settings_are_checked() -> None:
    p = [Parameter(torch.ones(2))]
    with pytest.raises(
        ValueError, match="Nesterov momentum requires a momentum > 0 and zero dampening"
    ):
        SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="momentum must be >= 0"):
        SGD(p, lr=0.1, momentum=-1)
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        AdamW(p, weight_decay=-0.1)


def test_registered_with_their_settings() -> None:
    assert minidl.registry.get("optimizer", "adamw") is AdamW
    opt = minidl.create(
        "optimizer", "sgd(momentum=0.9, nesterov=True)", [Parameter(torch.ones(2))], lr=0.1
    )
    assert opt.momentum == 0.9 and opt.nesterov is True
    assert repr(opt) == "SGD(lr=0.1, momentum=0.9, dampening=0, nesterov=True, weight_decay=0)"
