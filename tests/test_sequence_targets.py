"""Sequence targets: ``cross_entropy`` on ``(N, T, C)`` logits and ``(N, T)`` int64 class
indices with ``ignore_index``, against torch's ``cross_entropy`` on the flattened rows in
float64, forward and backward; and the accuracy of a sequence (every position that counts
right), against a loop over the sequences."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import minidl
from minidl import Dataset
from minidl.plugins import CrossEntropy

F64 = torch.float64


def batch(
    shape: tuple[int, ...], classes: int, seed: int, ignored: float = 0.3
) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, classes, dtype=F64, generator=g) * 3
    target = torch.randint(0, classes, shape, generator=g)
    target[torch.rand(shape, generator=g) < ignored] = -100
    return logits, target


def reference(logits: Tensor, target: Tensor, **kwargs: int) -> tuple[Tensor, Tensor]:
    """torch's loss on the rows, and its gradient with respect to the logits."""
    x = logits.clone().requires_grad_(True)
    with torch.enable_grad():
        value = F.cross_entropy(x.reshape(-1, x.shape[-1]), target.reshape(-1), **kwargs)
        value.backward()
    return value.detach(), x.grad


@pytest.mark.parametrize(
    "shape,seed", [((4, 7), 0), ((5,), 1), ((3, 2, 4), 2), ((6, 1), 3), ((1, 9), 4)]
)
def test_cross_entropy_on_sequences_equals_torchs_on_the_rows(
    shape: tuple[int, ...], seed: int
) -> None:
    logits, target = batch(shape, 5, seed)
    target.view(-1)[0] = 2  # at least one position counts
    loss = CrossEntropy()
    expected, grad = reference(logits, target)
    torch.testing.assert_close(loss.forward(logits, target), expected, rtol=1e-12, atol=1e-14)
    got = loss.backward()
    assert got.shape == logits.shape
    torch.testing.assert_close(got, grad, rtol=1e-12, atol=1e-14)


def test_ignore_index_is_a_setting_and_all_ignored_is_nan_as_torchs() -> None:
    logits, target = batch((4, 6), 3, 5, ignored=0.0)
    target[:, :2] = -1
    loss = minidl.create("loss", "cross_entropy(ignore_index=-1)")
    assert (
        repr(loss) == "CrossEntropy(ignore_index=-1)" and repr(CrossEntropy()) == "CrossEntropy()"
    )
    expected, grad = reference(logits, target, ignore_index=-1)
    torch.testing.assert_close(loss.forward(logits, target), expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(loss.backward(), grad, rtol=1e-12, atol=1e-14)
    loss.check_target(target)  # -1 is its ignore_index
    with pytest.raises(
        ValueError, match=r"class indices must be >= 0, got -1 \(ignore_index -100 aside\)"
    ):
        CrossEntropy().check_target(target)
    nothing = torch.full((2, 3), -100)
    value = CrossEntropy().forward(logits[:2, :3], nothing)
    assert value.isnan() and reference(logits[:2, :3], nothing)[0].isnan()


def test_probability_targets_of_a_sequence_equal_torchs() -> None:
    logits, _ = batch((3, 4), 5, 6)
    probabilities = torch.softmax(torch.randn(3, 4, 5, dtype=F64), -1)
    loss = CrossEntropy()
    x = logits.clone().requires_grad_(True)
    with torch.enable_grad():
        expected = F.cross_entropy(x.reshape(-1, 5), probabilities.reshape(-1, 5))
        expected.backward()
    torch.testing.assert_close(
        loss.forward(logits, probabilities), expected.detach(), rtol=1e-12, atol=1e-14
    )
    torch.testing.assert_close(loss.backward(), x.grad, rtol=1e-12, atol=1e-14)


def test_shapes_and_indices_it_cannot_use_are_named() -> None:
    logits, target = batch((3, 4), 5, 7, ignored=0.0)
    with pytest.raises(
        ValueError,
        match=r"logits of shape \(3, 4, 5\) need targets of shape \(3, 4\) \(class indices\) or \(3, 4, 5\) \(probabilities\), got \(3, 5\)",
    ):
        CrossEntropy().forward(logits, target[:, :1].expand(3, 5))
    with pytest.raises(ValueError, match="are class indices and must be integers"):
        CrossEntropy().forward(logits, target.double())
    target[1, 2] = 7
    with pytest.raises(ValueError, match=r"class index 7 is out of range for 5 logits"):
        CrossEntropy().forward(logits, target)
    target[1, 2] = -3
    with pytest.raises(ValueError, match=r"class index -3 is out of range for 5 logits"):
        CrossEntropy().forward(logits, target)


def sequence_accuracy(logits: Tensor, target: Tensor, ignore: int = -100) -> float:
    right = 0
    for out, want in zip(logits.tolist(), target.tolist(), strict=True):
        right += all(
            w == ignore or max(range(len(o)), key=o.__getitem__) == w
            for o, w in zip(out, want, strict=True)
        )
    return right / len(target)


@pytest.mark.parametrize("seed", range(4))
def test_a_sequence_is_right_when_every_position_that_counts_is(seed: int) -> None:
    logits, target = batch((40, 3), 3, seed, ignored=0.4)
    # Make about half of the sequences right where they count.
    some = torch.arange(40) % 2 == 0
    target[some] = torch.where(target[some] == -100, -100, logits[some].argmax(-1))
    expected = sequence_accuracy(logits, target)
    assert 0.3 < expected < 1.0
    assert minidl.accuracy(logits, target) == expected
    assert CrossEntropy().accuracy(logits, target) == expected
    target[target == -100] = -1
    assert CrossEntropy(ignore_index=-1).accuracy(logits, target) == expected
    assert minidl.labels(logits).equal(logits.argmax(-1)) and minidl.labels(target) is target


def test_ignored_class_indices_are_not_counted() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 0.0]])
    target = torch.tensor([0, 1, -100, 1])
    assert minidl.accuracy(logits, target) == 2 / 3  # the ignored row is neither right nor wrong
    with pytest.raises(
        ValueError, match=r"targets of shape \(4, 3\) cannot score outputs of shape \(4, 2, 2\)"
    ):
        minidl.accuracy(torch.zeros(4, 2, 2), torch.zeros(4, 3, dtype=torch.int64))


def test_fit_checks_and_scores_sequence_targets() -> None:
    """The first step's checks accept ``(N, T)`` targets; the loss's accuracy is the
    history's."""
    x = torch.randn(12, 4, 3, dtype=F64)
    y = torch.randint(0, 3, (12, 4))
    y[:, 0] = -100
    model = minidl.Sequential(Identity())
    loss = CrossEntropy()
    history = minidl.fit(model, loss, Nothing(), Dataset(x, y), epochs=1, batch_size=5)
    assert history[0]["train_accuracy"] == sequence_accuracy(x, y)
    # A model without parameters computes in the default dtype: float32.
    torch.testing.assert_close(
        torch.tensor(history[0]["train_loss"], dtype=F64), reference(x, y)[0], rtol=1e-6, atol=0
    )


class Identity:
    def forward(self, x: Tensor) -> Tensor:
        return x

    def backward(self, grad: Tensor) -> Tensor:
        return grad

    def parameters(self) -> list[minidl.Parameter]:
        return []


class Nothing:
    lr = 0.0

    def step(self) -> None:
        pass

    def zero_grad(self) -> None:
        pass
