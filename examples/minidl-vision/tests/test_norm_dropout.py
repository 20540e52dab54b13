"""batchnorm1d, batchnorm2d and dropout against torch.nn.functional, in float64."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from minidl_vision import BatchNorm1d, BatchNorm2d, Dropout
from vision_parity import F64, close, reference

from minidl.testing import check_layer

# (layer class, input shape); channels are dimension 1.
SHAPES = [
    (BatchNorm2d, (6, 3, 4, 5)),
    (BatchNorm2d, (2, 4, 1, 1)),
    (BatchNorm1d, (7, 3)),
    (BatchNorm1d, (5, 4, 6)),
]


class TorchBatchNorm:
    """torch.nn.BatchNorm1d/2d (which calls F.batch_norm, with momentum=None turned into
    a cumulative average), its affine parameters replaced by the given autograd leaves."""

    def __init__(self, cls: type, channels: int, eps: float, momentum: float | None) -> None:
        kind = torch.nn.BatchNorm2d if cls is BatchNorm2d else torch.nn.BatchNorm1d
        self.module = kind(channels, eps=eps, momentum=momentum, dtype=F64)

    def __call__(
        self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, training: bool
    ) -> torch.Tensor:
        self.module.train(training)
        return torch.func.functional_call(self.module, {"weight": w, "bias": b}, (x,))


def make(cls: type, channels: int, eps: float, momentum: float | None, gen: torch.Generator):
    layer = cls(channels, eps=eps, momentum=momentum, dtype=F64)
    # Not the initial ones and zeros, so that the affine part is tested too.
    layer.weight.data = torch.rand(channels, generator=gen, dtype=F64) + 0.5
    layer.bias.data = torch.randn(channels, generator=gen, dtype=F64)
    return layer


@pytest.mark.parametrize("cls, shape", SHAPES)
@pytest.mark.parametrize("momentum", [0.1, 0.5, 1.0, 0.0, None])
@pytest.mark.parametrize("eps", [1e-5, 1e-2])
def test_batchnorm_equals_torch_over_steps_in_both_modes(
    cls: type, shape: tuple, momentum: float | None, eps: float
) -> None:
    gen = torch.Generator().manual_seed(0)
    channels = shape[1]
    layer = make(cls, channels, eps, momentum, gen)
    twin = TorchBatchNorm(cls, channels, eps, momentum)
    w, b = layer.weight.data.clone(), layer.bias.data.clone()
    grad_w, grad_b = torch.zeros_like(w), torch.zeros_like(b)
    # Three training steps, then two in eval mode, then training again.
    for step, training in enumerate([True, True, True, False, False, True]):
        layer.train(training)
        x = torch.randn(shape, generator=gen, dtype=F64) * (step + 1) + step
        out = layer.forward(x)
        g = torch.randn(out.shape, generator=gen, dtype=F64)
        mode = functools.partial(twin, training=training)
        expected, (gx, gw, gb) = reference(mode, g, x, w, b)
        grad_w += gw
        grad_b += gb
        what = f"step {step} ({'training' if training else 'eval'})"
        close(out, expected, f"{what}: output")
        close(layer.backward(g), gx, f"{what}: input gradient")
        close(layer.weight.grad, grad_w, f"{what}: weight gradient")
        close(layer.bias.grad, grad_b, f"{what}: bias gradient")
        close(layer.running_mean, twin.module.running_mean, f"{what}: running_mean")
        close(layer.running_var, twin.module.running_var, f"{what}: running_var")
        assert torch.equal(layer.num_batches_tracked, twin.module.num_batches_tracked), what


def test_batchnorm_eval_mode_changes_nothing() -> None:
    layer = BatchNorm2d(3)
    layer.forward(torch.randn(4, 3, 2, 2))
    layer.eval()
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    layer.forward(torch.randn(4, 3, 2, 2) * 5)
    for key, value in layer.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_batchnorm_backward_follows_the_mode_forward_ran_in() -> None:
    gen = torch.Generator().manual_seed(3)
    layer = make(BatchNorm2d, 3, 1e-5, 0.1, gen)
    x = torch.randn(4, 3, 2, 5, generator=gen, dtype=F64)
    g = torch.randn(4, 3, 2, 5, generator=gen, dtype=F64)
    w, b = layer.weight.data.clone(), layer.bias.data.clone()
    rm, rv = layer.running_mean.clone(), layer.running_var.clone()
    layer.forward(x)
    layer.eval()  # between forward and backward: the batch statistics still apply
    _, (gx, _, _) = reference(lambda x, w, b: F.batch_norm(x, rm, rv, w, b, True), g, x, w, b)
    close(layer.backward(g), gx, "input gradient")


def test_batchnorm_buffers_are_torchs() -> None:
    for mine, theirs in (
        (BatchNorm2d(4), torch.nn.BatchNorm2d(4)),
        (BatchNorm1d(4), torch.nn.BatchNorm1d(4)),
    ):
        ours, torchs = mine.state_dict(), theirs.state_dict()
        assert list(ours) == list(torchs)
        for key in ours:
            assert torch.equal(ours[key], torchs[key]), key
            assert ours[key].dtype == torchs[key].dtype and ours[key].shape == torchs[key].shape
        assert [name for name, _ in mine.named_buffers()] == [
            "running_mean",
            "running_var",
            "num_batches_tracked",
        ]


def test_batchnorm_moves_to_float64_and_loads_in_place() -> None:
    layer = BatchNorm2d(3).to(F64)
    assert layer.weight.data.dtype == layer.running_mean.dtype == layer.running_var.dtype == F64
    assert layer.num_batches_tracked.dtype == torch.int64
    out = layer.forward(torch.randn(4, 3, 2, 2, dtype=F64))
    assert out.dtype == F64 and layer.backward(torch.ones_like(out)).dtype == F64
    mean = layer.running_mean
    state = {k: v.clone() + 1 for k, v in layer.state_dict().items()}
    layer.load_state_dict(state)
    assert layer.running_mean is mean and torch.equal(mean, state["running_mean"])
    layer.forward(torch.randn(4, 3, 2, 2, dtype=F64))  # updates the loaded tensors in place
    assert layer.running_mean is mean and int(layer.num_batches_tracked) == 3


def test_batchnorm_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm1d(3).forward(torch.randn(1, 3))
    assert BatchNorm1d(3).eval().forward(torch.randn(1, 3)).shape == (1, 3)
    with pytest.raises(ValueError, match=r"takes inputs of shape \(N, C, H, W\) with C = 3"):
        BatchNorm2d(3).forward(torch.randn(2, 4, 2, 2))
    with pytest.raises(ValueError, match="takes inputs of shape"):
        BatchNorm1d(3).forward(torch.randn(2, 3, 2, 2))
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm2d(3, momentum=1.5)
    with pytest.raises(ValueError, match="num_features"):
        BatchNorm2d(0)


@pytest.mark.parametrize(
    "make, shape, independent",
    [
        (lambda: BatchNorm2d(2), (3, 2, 5, 4), False),
        (lambda: BatchNorm1d(4), (5, 4), False),
        (lambda: BatchNorm1d(3, momentum=None), (4, 3, 2), False),
        (lambda: Dropout(0.3), (3, 7), True),
    ],
)
def test_layers_pass_minidls_kit(make: object, shape: tuple, independent: bool) -> None:
    check_layer(make, input_shape=shape, batch_independent=independent)
