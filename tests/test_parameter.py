"""Parameter and FlatParameters: every parameter a view into one data and one grad buffer,
so that an optimizer step and a zero_grad are one tensor operation each."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from minidl import FlatParameters, Parameter, Sequential
from minidl.plugins import MSE, SGD, Adam, Linear, ReLU

F64 = torch.float64


def mlp(layers: int) -> Sequential:
    torch.manual_seed(0)
    mods: list[Any] = [Linear(2, 8)]
    for _ in range(layers - 1):
        mods += [ReLU(), Linear(8, 8)]
    return Sequential(*mods, Linear(8, 1))


def shares_memory(t: torch.Tensor, buffer: torch.Tensor) -> bool:
    return t.untyped_storage().data_ptr() == buffer.untyped_storage().data_ptr()


class OpCounter(TorchDispatchMode):
    """Counts the ATen operations run inside it (what a kernel launch would be on a GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.ops[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))


def count_ops(fn: Any) -> Counter[str]:
    with OpCounter() as counter:
        fn()
    return counter.ops


def with_grads(model: Sequential) -> None:
    loss = MSE()
    x = torch.randn(10, 2, generator=torch.Generator().manual_seed(1))
    loss.forward(model(x), torch.zeros(10, 1))
    model.backward(loss.backward())


def test_grad_is_a_zero_tensor_like_data_from_construction() -> None:
    p = Parameter(torch.randn(3, 2, dtype=F64), "w")
    assert isinstance(p.grad, torch.Tensor)
    assert p.grad.shape == p.data.shape == p.shape == (3, 2)
    assert p.grad.dtype == F64 and not p.grad.any()
    assert p.name == "w" and Parameter(torch.zeros(1)).name == ""


def test_params_become_views_of_two_buffers_keeping_their_values() -> None:
    model = mlp(3)
    with_grads(model)
    before = [(p.data.clone(), p.grad.clone()) for p in model.parameters()]
    assert any(g.any() for _, g in before)
    flat = FlatParameters(model.parameters())
    total = sum(p.data.numel() for p in model.parameters())
    assert flat.data.shape == flat.grad.shape == (total,)
    assert flat.params == model.parameters()
    offset = 0
    for p, (data, grad) in zip(model.parameters(), before, strict=True):
        assert shares_memory(p.data, flat.data) and shares_memory(p.grad, flat.grad)
        assert p.data.storage_offset() == p.grad.storage_offset() == offset
        assert torch.equal(p.data, data) and torch.equal(p.grad, grad)  # nothing lost
        offset += p.data.numel()
    # The layers read the views: a write to the buffer is what the model computes with.
    flat.data.zero_()
    assert not model(torch.ones(3, 2)).any()
    model[0].weight.data[0, 0] = 5.0
    assert flat.data[0].item() == 5.0


def test_sgd_step_and_zero_grad_are_one_buffer_operation_each() -> None:
    for layers in (1, 10):
        model = mlp(layers)
        opt = SGD(model.parameters(), lr=0.1)
        with_grads(model)
        before = [p.data.clone() for p in model.parameters()]
        assert count_ops(opt.step) == Counter({"add_": 1})
        for p, b in zip(model.parameters(), before, strict=True):
            torch.testing.assert_close(p.data, b - 0.1 * p.grad, rtol=0, atol=1e-7)
        assert count_ops(opt.zero_grad) == Counter({"zero_": 1})
        assert not any(p.grad.any() for p in model.parameters())


def test_adam_step_costs_the_same_ops_for_any_depth() -> None:
    counts = []
    for layers in (1, 3, 20):
        model = mlp(layers)
        opt = Adam(model.parameters(), lr=0.1, weight_decay=0.01)
        with_grads(model)
        opt.step()  # the first step may differ (lazy state); count a later one
        counts.append(count_ops(opt.step))
    assert counts[0] == counts[1] == counts[2]
    assert sum(counts[0].values()) <= 10


def test_assignment_copies_into_the_buffer() -> None:
    model = mlp(2)
    flat = FlatParameters(model.parameters())
    w = model[0].weight
    ptr = w.data.data_ptr()
    w.data = torch.ones(8, 2)
    w.grad = torch.full((8, 2), 3.0)
    w.grad += torch.ones(8, 2)  # an in-place add that then assigns the same tensor back
    assert w.data.data_ptr() == ptr and shares_memory(w.data, flat.data)
    assert torch.equal(flat.data[:16], torch.ones(16))
    assert torch.equal(flat.grad[:16], torch.full((16,), 4.0))


def test_assignment_of_a_wrong_shape_is_a_clear_error() -> None:
    p = Parameter(torch.zeros(3, 2), "weight")
    with pytest.raises(ValueError) as info:
        p.data = torch.zeros(2, 3)
    assert (
        str(info.value) == "parameter weight: cannot assign data of shape (2, 3), expected (3, 2)"
    )
    with pytest.raises(
        ValueError,
        match=r"parameter \(unnamed\): cannot assign grad of shape \(6,\), expected \(2,\)",
    ):
        Parameter(torch.zeros(2)).grad = torch.zeros(6)
    assert not p.data.any()


def test_flattening_is_idempotent() -> None:
    model = mlp(3)
    first = FlatParameters(model.parameters())
    views = [(p.data, p.grad) for p in model.parameters()]
    second = FlatParameters(model.parameters())
    assert second.data.data_ptr() == first.data.data_ptr()
    assert second.grad.data_ptr() == first.grad.data_ptr()
    assert all(
        p.data is d and p.grad is g for p, (d, g) in zip(model.parameters(), views, strict=True)
    )
    # Two optimizers on one model share the buffers, so both see the same weights.
    sgd, adam = SGD(model.parameters(), lr=0.1), Adam(model.parameters())
    assert sgd.data.data_ptr() == adam.data.data_ptr() == first.data.data_ptr()


def test_flat_parameters_errors() -> None:
    a, b = Parameter(torch.zeros(2)), Parameter(torch.zeros(2, dtype=F64))
    with pytest.raises(ValueError, match="share one dtype and device.*call model.to"):
        FlatParameters([a, b])
    with pytest.raises(ValueError, match="appears twice"):
        FlatParameters([a, a])
    with pytest.raises(ValueError, match="no parameters to optimize"):
        FlatParameters([])


def test_parameter_to_changes_dtype_of_data_and_grad() -> None:
    p = Parameter(torch.arange(4.0).reshape(2, 2), "w")
    p.grad += 1
    p.to(dtype=F64)
    assert p.data.dtype == p.grad.dtype == F64
    assert torch.equal(p.data, torch.arange(4.0, dtype=F64).reshape(2, 2))
    assert torch.equal(p.grad, torch.ones(2, 2, dtype=F64))
    assert repr(p) == "Parameter w(shape=(2, 2), dtype=torch.float64)"
    assert repr(Parameter(torch.zeros(3))) == "Parameter(shape=(3,), dtype=torch.float32)"


def test_parameter_to_unpacks_it_from_the_flat_buffer() -> None:
    model = mlp(1)
    flat = FlatParameters(model.parameters())
    w = model[0].weight
    w.to(dtype=F64)
    assert not shares_memory(w.data, flat.data)
    flat.data.zero_()
    assert w.data.any()  # no longer the buffer's view


def test_an_optimizer_over_one_layer_shares_the_whole_models_buffer() -> None:
    model = mlp(3)
    full = SGD(model.parameters(), lr=1.0)
    part = SGD(model[2].parameters(), lr=1.0)  # the second Linear: consecutive parameters
    assert shares_memory(part.data, full.data) and shares_memory(model[2].weight.data, full.data)
    start = model[0].weight.data.numel() + model[0].bias.data.numel()
    assert part.data.storage_offset() == start
    before = [p.data.clone() for p in model.parameters()]
    model[2].weight.grad += 1.0
    part.step()  # moves only that layer, and the whole-model optimizer sees the move
    for i, (p, b) in enumerate(zip(model.parameters(), before, strict=True)):
        assert torch.equal(p.data, b - 1.0 if i == 2 else b), i
    full.step()
    torch.testing.assert_close(model[2].weight.data, before[2] - 2.0)


def test_repacking_parameters_of_another_buffer_warns() -> None:
    model = mlp(2)
    full = SGD(model.parameters(), lr=1.0)
    weights = [model[0].weight, model[2].weight]  # not consecutive: cannot share
    with pytest.warns(RuntimeWarning, match="re-packing 2 parameter.*no longer updates them"):
        SGD(weights, lr=1.0)
    assert not shares_memory(model[0].weight.data, full.data)
