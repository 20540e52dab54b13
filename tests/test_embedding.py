"""embedding against torch.nn.Embedding in float64: lookups, repeated ids, errors."""

from __future__ import annotations

import pytest
import torch
from torch_reference import F64, close

import minidl
from minidl.plugins import Embedding


def twin_of(layer: Embedding) -> torch.nn.Embedding:
    twin = torch.nn.Embedding(layer.num_embeddings, layer.embedding_dim, dtype=F64)
    twin.load_state_dict(layer.state_dict())
    return twin


@pytest.mark.parametrize("shape", [(5,), (4, 7), (2, 3, 4)])
@pytest.mark.parametrize("training", [True, False])
def test_embedding_equals_torch_forward_and_backward(shape: tuple, training: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    layer = Embedding(6, 3, dtype=F64).train(training)
    twin = twin_of(layer).train(training)
    ids = torch.randint(6, shape, generator=gen)
    ids[0] = 2  # repeated ids: their gradients add up
    g = torch.randn(*shape, 3, generator=gen, dtype=F64)
    out = layer.forward(ids)
    with torch.enable_grad():
        expected = twin(ids)
        expected.backward(g)
    close(out, expected.detach(), "output")
    grad_in = layer.backward(g)
    assert grad_in.shape == ids.shape and not grad_in.any()
    close(layer.weight.grad, twin.weight.grad, "weight gradient")
    layer.forward(ids)
    layer.backward_parameters(g)  # accumulates, and skips the zeros
    close(layer.weight.grad, 2 * twin.weight.grad, "weight gradient after two steps")


def test_embedding_draws_torchs_table() -> None:
    torch.manual_seed(3)
    ours = Embedding(11, 5)
    torch.manual_seed(3)
    theirs = torch.nn.Embedding(11, 5)
    assert torch.equal(ours.weight.data, theirs.weight.data)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]


def test_embedding_is_registered_and_takes_any_integer_dtype() -> None:
    assert minidl.registry.get("layer", "embedding") is Embedding
    layer = Embedding(4, 2)
    ids = torch.tensor([[0, 3], [1, 1]])
    assert torch.equal(layer.forward(ids.int()), layer.forward(ids))


def test_embedding_names_an_id_out_of_range() -> None:
    layer = Embedding(10, 4)
    with pytest.raises(IndexError, match=r"id 10 is out of range for num_embeddings=10"):
        layer.forward(torch.tensor([[1, 10]]))
    with pytest.raises(IndexError, match=r"id -1 is out of range"):
        layer.forward(torch.tensor([[-1, 2]]))


def test_embedding_refuses_floats_naming_the_dtype() -> None:
    with pytest.raises(
        TypeError, match=r"embedding takes integer ids \(int64\), got torch.float32"
    ):
        Embedding(10, 4).forward(torch.zeros(2, 3))


@pytest.mark.parametrize("args", [(0, 3), (3, 0), (2.5, 3), (True, 3)])
def test_embedding_refuses_bad_sizes(args: tuple) -> None:
    with pytest.raises(ValueError, match="must be a positive integer"):
        Embedding(*args)
