"""MSE and cross_entropy equal torch.nn.functional's, values and gradients, in float64;
cross_entropy stays exact for huge logits; wrong targets are clear errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import minidl
from minidl.plugins import MSE, CrossEntropy

F64 = torch.float64
REL = 1e-9


def torch_loss_and_grad(fn, p: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    leaf = p.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        value = fn(leaf, t)
        value.backward()
    assert leaf.grad is not None
    return value.detach(), leaf.grad


def randn(*shape: int, seed: int, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_builtins_are_registered_under_their_names() -> None:
    assert minidl.registry.get("loss", "mse") is MSE
    assert minidl.registry.get("loss", "cross_entropy") is CrossEntropy
    assert CrossEntropy.class_targets is True and not getattr(MSE, "class_targets", False)
    assert repr(MSE()) == "MSE()" and repr(CrossEntropy()) == "CrossEntropy()"


# ---------------------------------------------------------------------------- MSE


@pytest.mark.parametrize("shape", [(30, 1), (30, 3), (1, 1), (5, 2, 3)])
def test_mse_value_and_gradient_equal_torch_in_float64(shape: tuple[int, ...]) -> None:
    p, t = randn(*shape, seed=11), randn(*shape, seed=12)
    ref, ref_grad = torch_loss_and_grad(F.mse_loss, p, t)
    loss = MSE()
    value = loss.forward(p, t)
    assert value.dim() == 0 and value.dtype == F64
    torch.testing.assert_close(value, ref, rtol=REL, atol=0)
    torch.testing.assert_close(loss.backward(), ref_grad, rtol=REL, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 7, 1000])
def test_mse_is_torchs_bit_for_bit(dtype: torch.dtype, n: int) -> None:
    """The sum-then-divide shortcut is exactly what torch.mean computes for these dtypes."""
    p, t = randn(n, 3, seed=n, dtype=dtype), randn(n, 3, seed=n + 1, dtype=dtype)
    ref, ref_grad = torch_loss_and_grad(F.mse_loss, p, t)
    loss = MSE()
    assert torch.equal(loss.forward(p, t), ref)
    assert torch.equal(loss.backward(), ref_grad)


def test_mse_follows_a_changing_batch_size_and_dtype() -> None:
    loss = MSE()
    for n, dtype in ((4, torch.float32), (9, torch.float32), (9, F64), (3, torch.bfloat16)):
        p, t = randn(n, 2, seed=n, dtype=dtype), randn(n, 2, seed=n + 7, dtype=dtype)
        value = loss.forward(p, t)
        assert value.dtype == dtype
        assert torch.equal(value, F.mse_loss(p, t)), (n, dtype)
        grad = loss.backward()
        assert grad.dtype == dtype and grad.shape == p.shape


def test_mse_errors() -> None:
    with pytest.raises(
        ValueError, match=r"prediction of shape \(4, 1\) and target of shape \(4, 2\) differ"
    ):
        MSE().forward(torch.zeros(4, 1), torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"target of shape \(4,\)"):
        MSE()(torch.zeros(4, 1), torch.zeros(4))
    with pytest.raises(RuntimeError, match="MSE.backward called before forward"):
        MSE().backward()


# ---------------------------------------------------------------------------- cross_entropy


def class_indices(n: int, k: int, seed: int) -> torch.Tensor:
    return torch.randint(0, k, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n,k", [(1, 2), (17, 3), (40, 10)])
def test_cross_entropy_on_class_indices_equals_torch(n: int, k: int) -> None:
    logits, target = randn(n, k, seed=n) * 3, class_indices(n, k, seed=k)
    ref, ref_grad = torch_loss_and_grad(F.cross_entropy, logits, target)
    loss = CrossEntropy()
    value = loss.forward(logits, target)
    assert value.dim() == 0
    torch.testing.assert_close(value, ref, rtol=REL, atol=0)
    torch.testing.assert_close(loss.backward(), ref_grad, rtol=REL, atol=1e-300)


@pytest.mark.parametrize("rows", ["softmax", "one_hot", "smoothed", "unnormalised"])
def test_cross_entropy_on_probability_rows_equals_torch(rows: str) -> None:
    n, k = 12, 4
    logits = randn(n, k, seed=1) * 2
    target = {
        "softmax": torch.softmax(randn(n, k, seed=2), 1),
        "one_hot": F.one_hot(class_indices(n, k, seed=3), k).to(F64),
        "smoothed": F.one_hot(class_indices(n, k, seed=4), k).to(F64) * 0.9 + 0.1 / k,
        "unnormalised": randn(n, k, seed=5).abs(),  # torch takes rows of any sum
    }[rows]
    ref, ref_grad = torch_loss_and_grad(F.cross_entropy, logits, target)
    loss = CrossEntropy()
    torch.testing.assert_close(loss.forward(logits, target), ref, rtol=REL, atol=0)
    torch.testing.assert_close(loss.backward(), ref_grad, rtol=REL, atol=1e-300)


def test_one_hot_rows_and_class_indices_give_the_same_loss_and_gradient() -> None:
    logits, target = randn(9, 3, seed=6), class_indices(9, 3, seed=7)
    a, b = CrossEntropy(), CrossEntropy()
    torch.testing.assert_close(
        a.forward(logits, target),
        b.forward(logits, F.one_hot(target, 3).to(F64)),
        rtol=1e-14,
        atol=0,
    )
    torch.testing.assert_close(a.backward(), b.backward(), rtol=1e-14, atol=1e-17)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("scale", [1e3, 1e5, 1e30])
def test_cross_entropy_is_stable_for_huge_logits(scale: float, dtype: torch.dtype) -> None:
    logits = (randn(16, 5, seed=8) * scale).to(dtype)
    logits[0] = torch.tensor([scale, -scale, 0.0, scale, scale / 2], dtype=dtype)  # ties at the max
    target = class_indices(16, 5, seed=9)
    for t in (target, torch.softmax(randn(16, 5, seed=10), 1).to(dtype)):
        ref, ref_grad = torch_loss_and_grad(F.cross_entropy, logits, t)
        loss = CrossEntropy()
        value = loss.forward(logits, t)
        grad = loss.backward()
        assert torch.isfinite(value) and torch.isfinite(grad).all()
        rtol = REL if dtype == F64 else 1e-5
        torch.testing.assert_close(value, ref, rtol=rtol, atol=0)
        torch.testing.assert_close(grad, ref_grad, rtol=rtol, atol=1e-7 if dtype != F64 else 1e-15)


def test_cross_entropy_accuracy_is_the_argmax_matching_the_class() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 1.0, 5.0], [9.0, 0.0, 1.0]])
    assert CrossEntropy().accuracy(logits, torch.tensor([0, 1, 1, 2])) == 0.5
    rows = F.one_hot(torch.tensor([0, 1, 2, 0]), 3).float()
    assert CrossEntropy().accuracy(logits, rows) == 1.0


@pytest.mark.parametrize(
    "logits_shape,target,message",
    [
        ((4, 3), torch.zeros(4, 2), r"logits of shape \(4, 3\) need targets of shape \(4,\) \(class indices\) or \(4, 3\) \(probabilities\), got \(4, 2\)"),
        ((4, 3), torch.zeros(5, dtype=torch.int64), r"got \(5,\)"),
        ((4, 3), torch.zeros(4, 3, 1), r"got \(4, 3, 1\)"),
        ((4,), torch.zeros(4, dtype=torch.int64), r"logits of shape \(4,\)"),
        ((4, 3), torch.zeros(4), r"targets of shape \(4,\) are class indices and must be integers \(int64\), got torch.float32"),
    ],
)  # fmt: skip
def test_cross_entropy_wrong_targets_are_clear_errors(
    logits_shape: tuple[int, ...], target: torch.Tensor, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        CrossEntropy().forward(torch.zeros(*logits_shape), target)


def test_cross_entropy_check_target_and_backward_before_forward() -> None:
    loss = CrossEntropy()
    loss.check_target(torch.tensor([0, 2, 1]))
    loss.check_target(torch.zeros(3, 2))  # probability rows are the forward's to check
    with pytest.raises(ValueError, match="class indices must be >= 0, got -1"):
        loss.check_target(torch.tensor([0, -1, 1]))
    with pytest.raises(RuntimeError, match="CrossEntropy.backward called before forward"):
        CrossEntropy().backward()
