"""causal_self_attention, positional_embedding and transformer_block against torch.nn in
float64: outputs, input and parameter gradients, in training and eval mode."""

from __future__ import annotations

import pytest
import torch
from minidl_text import CausalSelfAttention, PositionalEmbedding, TransformerBlock
from text_parity import F64, TorchCausalAttention, close, randomize, run_torch, torch_block

import minidl
from minidl.plugins import LayerNorm, Residual
from minidl.testing import check_layer


def compare(ours, theirs, x: torch.Tensor, seed: int | None = None) -> None:  # type: ignore[no-untyped-def]
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(9), dtype=F64)
    ours.zero_grad()
    if seed is not None:
        torch.manual_seed(seed)
    expected, grad_x, grads = run_torch(theirs, x, g)
    if seed is not None:
        torch.manual_seed(seed)  # the same dropout masks
    close(ours.forward(x), expected, "output")
    close(ours.backward(g), grad_x, "input gradient")
    assert [n for n, _ in ours.named_parameters()] == list(grads)
    for name, p in ours.named_parameters():
        close(p.grad, grads[name], f"{name} gradient")


# Lengths below 8 and from 8 on: rows shorter and longer than a vector register of floats.
@pytest.mark.parametrize(
    "width, heads, length", [(8, 2, 5), (12, 3, 1), (6, 1, 7), (16, 4, 4), (8, 2, 12)]
)
@pytest.mark.parametrize("training", [True, False])
def test_attention_equals_torch_multihead_attention(
    width: int, heads: int, length: int, training: bool
) -> None:
    ours = CausalSelfAttention(width, heads).to(F64).train(training)
    randomize(ours)
    theirs = TorchCausalAttention(width, heads).train(training)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(3, length, width, generator=torch.Generator().manual_seed(1), dtype=F64)
    compare(ours, theirs, x)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_attention_dropout_equals_torchs_in_training_mode(p: float) -> None:
    ours = CausalSelfAttention(8, 2, dropout=p).to(F64)
    randomize(ours)
    theirs = TorchCausalAttention(8, 2, dropout=p, need_weights=True)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(4, 6, 8, generator=torch.Generator().manual_seed(2), dtype=F64)
    compare(ours, theirs, x, seed=5)
    ours.eval()
    theirs.eval()
    compare(ours, theirs, x)  # eval mode: no dropout


def test_attention_parameters_are_torchs_and_drawn_alike() -> None:
    torch.manual_seed(0)
    ours = CausalSelfAttention(8, 2)
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]


def test_attention_is_causal() -> None:
    layer = CausalSelfAttention(8, 2).to(F64)
    x = torch.randn(2, 5, 8, dtype=F64)
    y = layer.forward(x)
    changed = x.clone()
    changed[:, 3:] += 1.0  # the future: positions 0..2 must not see it
    assert torch.equal(layer.forward(changed)[:, :3], y[:, :3])
    assert not torch.equal(layer.forward(changed)[:, 3:], y[:, 3:])


def test_attention_passes_the_kit() -> None:
    check_layer(lambda: CausalSelfAttention(4, 2), (2, 3, 4))
    check_layer(lambda: CausalSelfAttention(4, 2, dropout=0.3), (2, 3, 4))


def test_attention_errors() -> None:
    with pytest.raises(ValueError, match="width 10 must be divisible by num_heads=4"):
        CausalSelfAttention(10, 4)
    with pytest.raises(ValueError, match=r"takes inputs of shape \(N, T, 8\), got \(2, 8\)"):
        CausalSelfAttention(8, 2).forward(torch.zeros(2, 8))
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        CausalSelfAttention(8, 2, dropout=1.0)


@pytest.mark.parametrize("training", [True, False])
def test_positional_embedding_adds_its_table(training: bool) -> None:
    layer = PositionalEmbedding(4, 7).to(F64).train(training)
    table = torch.nn.Embedding(7, 4, dtype=F64)
    table.load_state_dict(layer.state_dict())

    class Twin(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = table

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.table(torch.arange(x.shape[1]))

    x = torch.randn(3, 5, 4, dtype=F64)
    g = torch.randn(3, 5, 4, dtype=F64)
    expected, grad_x, grads = run_torch(Twin(), x, g)
    close(layer.forward(x), expected, "output")
    close(layer.backward(g), grad_x, "input gradient")
    close(layer.weight.grad, grads["table.weight"], "table gradient")
    assert layer.weight.grad[5:].abs().sum() == 0  # positions beyond T get nothing


def test_positional_embedding_names_a_sequence_too_long() -> None:
    with pytest.raises(ValueError, match="length 9 is longer than max_len=8"):
        PositionalEmbedding(4, 8).forward(torch.zeros(2, 9, 4))
    check_layer(lambda: PositionalEmbedding(3, 5), (2, 4, 3))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("width, heads, ratio", [(8, 2, 4), (6, 3, 2)])
def test_block_equals_a_torch_twin(training: bool, width: int, heads: int, ratio: int) -> None:
    ours = TransformerBlock(width, heads, mlp_ratio=ratio).to(F64).train(training)
    randomize(ours)
    theirs = torch_block(width, heads, ratio).train(training)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(3, 5, width, generator=torch.Generator().manual_seed(3), dtype=F64)
    compare(ours, theirs, x)


def test_block_with_dropout_equals_the_twin_in_training_mode() -> None:
    ours = TransformerBlock(8, 2, dropout=0.2).to(F64)
    randomize(ours)
    theirs = torch_block(8, 2, dropout=0.2)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(3, 4, 8, generator=torch.Generator().manual_seed(4), dtype=F64)
    compare(ours, theirs, x, seed=7)


def test_block_is_made_of_the_builtins_in_minGPTs_order() -> None:
    block = TransformerBlock(8, 2)
    assert [type(r) for r in block.layers] == [Residual, Residual]
    assert isinstance(block[0][0], LayerNorm) and isinstance(block[0][1], CausalSelfAttention)
    assert [type(m).__name__ for m in block[1].layers] == ["LayerNorm", "Linear", "GELU", "Linear"]
    assert list(block.state_dict()) == [
        "0.0.weight", "0.0.bias", "0.1.in_proj_weight", "0.1.in_proj_bias",
        "0.1.out_proj.weight", "0.1.out_proj.bias", "1.0.weight", "1.0.bias",
        "1.1.weight", "1.1.bias", "1.3.weight", "1.3.bias",
    ]  # fmt: skip
    assert list(block.state_dict()) == list(torch_block(8, 2).state_dict())


def test_block_passes_the_kit() -> None:
    check_layer(lambda: TransformerBlock(4, 2, mlp_ratio=2), (2, 3, 4))


def test_layers_are_registered_with_widths_inferred() -> None:
    model = minidl.build(
        "positional_embedding(6), transformer_block(2), causal_self_attention(4)", (5, 8)
    )
    assert [m.in_features for m in model.layers] == [8, 8, 8]
    assert model[1].num_heads == 2 and model[2].num_heads == 4
    for name, cls in [
        ("causal_self_attention", CausalSelfAttention),
        ("positional_embedding", PositionalEmbedding),
        ("transformer_block", TransformerBlock),
    ]:
        assert minidl.registry.get("layer", name) is cls
