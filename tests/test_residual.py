"""residual(*modules) against a torch.nn.Sequential subclass adding its input, in float64."""

from __future__ import annotations

import pytest
import torch
from torch_reference import F64, close, module_reference

import minidl
from minidl.plugins import GELU, LayerNorm, Linear, ReLU, Residual, Tanh
from minidl.testing import check_layer


class TorchResidual(torch.nn.Sequential):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)


def pair(width: int = 4) -> tuple[Residual, TorchResidual]:
    ours = Residual(LayerNorm(width), Linear(width, 8), GELU(), Linear(8, width))
    theirs = TorchResidual(
        torch.nn.LayerNorm(width),
        torch.nn.Linear(width, 8),
        torch.nn.GELU(),
        torch.nn.Linear(8, width),
    ).to(F64)
    ours.to(F64)
    gen = torch.Generator().manual_seed(4)
    for p in ours.parameters():  # not LayerNorm's ones and zeros
        p.data = torch.randn(p.data.shape, generator=gen, dtype=F64)
    theirs.load_state_dict(ours.state_dict())  # the same keys: 0.weight, 1.weight, ...
    return ours, theirs


@pytest.mark.parametrize("shape", [(5, 4), (3, 6, 4)])
@pytest.mark.parametrize("training", [True, False])
def test_residual_equals_torch(shape: tuple, training: bool) -> None:
    ours, theirs = pair()
    ours.train(training)
    theirs.train(training)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(shape, generator=gen, dtype=F64)
    g = torch.randn(shape, generator=gen, dtype=F64)
    expected, grad_x, grads = module_reference(theirs, g, x)
    close(ours.forward(x), expected, "output")
    given = g.clone()
    close(ours.backward(g), grad_x, "input gradient")
    assert torch.equal(g, given)  # the identity path's sum is made in the chain's tensor
    assert [n for n, _ in ours.named_parameters()] == list(grads)
    for name, p in ours.named_parameters():
        close(p.grad, grads[name], f"{name} gradient")


class PassGradient(minidl.ModuleBase):
    """A layer whose backward hands back the very tensor it was given (no returns_fresh)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 1

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        return grad_output


def test_residual_leaves_a_gradient_it_did_not_make_alone() -> None:
    ours = Residual(PassGradient())
    x = torch.randn(3, 4, dtype=F64)
    g = torch.randn(3, 4, dtype=F64)
    given = g.clone()
    ours.forward(x)
    assert torch.equal(ours.backward(g), 2 * given)
    assert torch.equal(g, given)


def test_residual_keys_and_items_are_a_sequentials() -> None:
    ours, theirs = pair()
    assert list(ours.state_dict()) == list(theirs.state_dict()) == [
        "0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias",
    ]  # fmt: skip
    assert isinstance(ours[1], Linear) and len(ours) == 4
    assert ours.parameters() == [p for m in ours.layers for p in m.parameters()]
    model = minidl.Sequential(Linear(4, 4), ours)
    assert list(model.state_dict())[2:4] == ["1.0.weight", "1.0.bias"]
    assert repr(ours).startswith("Residual(\n  (0): LayerNorm(")


def test_residual_in_a_chain_and_first_in_a_chain() -> None:
    """After a layer that returns fresh tensors (Linear), in-place twins may run around it;
    first in a chain, backward_parameters skips the input gradient."""
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(5, 3, generator=gen, dtype=F64)
    g = torch.randn(5, 3, generator=gen, dtype=F64)
    twin = TorchResidual(torch.nn.Linear(3, 3), torch.nn.Tanh()).to(F64)
    head = torch.nn.Linear(3, 3).to(F64)
    torch_model = torch.nn.Sequential(
        head, twin, torch.nn.ReLU(), TorchResidual(torch.nn.Linear(3, 3)).to(F64)
    )
    model = minidl.Sequential(
        Linear(3, 3), Residual(Linear(3, 3), Tanh()), ReLU(), Residual(Linear(3, 3))
    ).to(F64)
    model.load_state_dict(torch_model.state_dict())
    expected, grad_x, grads = module_reference(torch_model, g, x)
    close(model.forward(x), expected, "output")
    close(model.backward(g), grad_x, "input gradient")
    for name, p in model.named_parameters():
        close(p.grad, grads[name], name)
    first = minidl.Sequential(Residual(Linear(3, 3), Tanh())).to(F64)
    again = minidl.Sequential(Residual(Linear(3, 3), Tanh())).to(F64)
    again.load_state_dict(first.state_dict())
    first.forward(x)
    first.backward_parameters(g)
    again.forward(x)
    again.backward(g)
    for a, b in zip(first.parameters(), again.parameters(), strict=True):
        assert torch.equal(a.grad, b.grad)


def test_residual_passes_the_kit() -> None:
    check_layer(lambda: Residual(Linear(3, 3), Tanh()), (4, 3))
    check_layer(lambda: Residual(LayerNorm(3), Linear(3, 3)), (2, 5, 3))


def test_residual_errors() -> None:
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'module'"):
        Residual()  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=r"turn an input of shape \(2, 3\) into \(2, 4\)"):
        Residual(Linear(3, 4)).forward(torch.zeros(2, 3))
    assert minidl.registry.get("layer", "residual") is Residual
