"""ModuleBase and Sequential against torch.nn on the same calls: the same names, keys, modes,
moves and numbers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from layers import Scale
from torch import Tensor

import minidl
from minidl import ModuleBase, Parameter, Sequential
from minidl.module import state_dict as any_state_dict
from minidl.plugins import MSE, SGD, CrossEntropy, Linear, ReLU, Sigmoid, Tanh

F64 = torch.float64


class Block(ModuleBase):
    """A composite layer: a child Linear, an own parameter and two buffers (one integer)."""

    def __init__(self, n: int, *, gain: float = 1.0) -> None:
        self.lin = Linear(n, n)
        self.scale = Parameter(torch.full((n,), gain), "scale")
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))
        self.register_buffer("running", torch.zeros(n))

    def forward(self, x: Tensor) -> Tensor:
        self._h = self.lin.forward(x)
        if self.training:
            self.count += 1
            self.running.mul_(0.9).add_(self._h.mean(0), alpha=0.1)
        return self._h * self.scale.data

    def backward(self, grad_output: Tensor) -> Tensor:
        self.scale.grad += (grad_output * self._h).sum(0)
        return self.lin.backward(grad_output * self.scale.data)


class TorchBlock(torch.nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(n, n)
        self.scale = torch.nn.Parameter(torch.ones(n))
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))
        self.register_buffer("running", torch.zeros(n))

    def forward(self, x: Tensor) -> Tensor:
        return self.lin(x) * self.scale


def models() -> tuple[Sequential, torch.nn.Sequential]:
    """The same architecture twice: minidl's and torch.nn's."""
    ours = Sequential(
        Block(3), Linear(3, 4), Tanh(), Sequential(Linear(4, 2, bias=False), ReLU()), Linear(2, 1)
    )
    theirs = torch.nn.Sequential(
        TorchBlock(3),
        torch.nn.Linear(3, 4),
        torch.nn.Tanh(),
        torch.nn.Sequential(torch.nn.Linear(4, 2, bias=False), torch.nn.ReLU()),
        torch.nn.Linear(2, 1),
    )
    return ours, theirs


def test_named_parameters_names_and_order_equal_torchs() -> None:
    ours, theirs = models()
    names = [n for n, _ in ours.named_parameters()]
    assert names == [n for n, _ in theirs.named_parameters()]
    assert names[:3] == ["0.scale", "0.lin.weight", "0.lin.bias"]  # own parameters first
    assert [p for _, p in ours.named_parameters()] == ours.parameters()
    shapes = [tuple(p.shape) for p in ours.parameters()]
    assert shapes == [tuple(p.shape) for p in theirs.parameters()]
    assert [n for n, _ in ours[0].named_parameters("pre.")] == [
        "pre.scale",
        "pre.lin.weight",
        "pre.lin.bias",
    ]


def test_state_dict_keys_equal_torch_sequentials() -> None:
    ours, theirs = models()
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    only_parameters = Sequential(Linear(2, 3), ReLU(), Linear(3, 1, bias=False), Sigmoid())
    reference = torch.nn.Sequential(
        torch.nn.Linear(2, 3),
        torch.nn.ReLU(),
        torch.nn.Linear(3, 1, bias=False),
        torch.nn.Sigmoid(),
    )
    assert list(only_parameters.state_dict()) == list(reference.state_dict())
    # The values are the module's own tensors, not copies.
    assert only_parameters.state_dict()["0.weight"] is only_parameters[0].weight.data


def test_a_layer_without_a_base_class_gets_keys_from_its_attributes() -> None:
    model = Sequential(Linear(2, 2), Scale(2))
    assert list(model.state_dict()) == ["0.weight", "0.bias", "1.w"]
    assert list(any_state_dict(Scale(3))) == ["w"]


def test_a_torch_state_dict_loads_and_gives_torchs_outputs_in_float64() -> None:
    ours, theirs = models()
    ours.to(F64)
    theirs.to(F64)
    torch.manual_seed(7)
    with torch.no_grad():
        for p in theirs.parameters():
            p.uniform_(-1, 1)
    theirs[0].running.fill_(0.25)
    theirs[0].count.fill_(5)
    ours.load_state_dict(theirs.state_dict())
    for key, value in ours.state_dict().items():
        assert torch.equal(value, theirs.state_dict()[key]), key
    ours.eval()
    theirs.eval()
    x = torch.randn(6, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = theirs(x)
    out = ours(x)
    assert out.dtype == F64
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-14)
    assert out.abs().max() > 0


def test_load_state_dict_copies_in_place_and_the_optimizer_keeps_working() -> None:
    torch.manual_seed(0)
    model = Sequential(Linear(2, 3), ReLU(), Linear(3, 1))
    opt = SGD(model.parameters(), lr=0.5)
    views = [p.data for p in model.parameters()]
    new = {k: torch.full_like(v, 0.5) for k, v in model.state_dict().items()}
    model.load_state_dict(new)
    assert [p.data for p in model.parameters()] == views  # the same tensor objects
    assert torch.equal(opt.data, torch.full_like(opt.data, 0.5))  # written into the buffer
    for p in model.parameters():
        p.grad.fill_(1.0)
    opt.step()
    assert all(torch.equal(p.data, torch.zeros_like(p.data)) for p in model.parameters())
    # The state dict given is not aliased: changing it afterwards changes nothing.
    new["0.weight"].fill_(9.0)
    assert not model[0].weight.data.any()


def test_load_state_dict_rejects_missing_unexpected_keys_and_wrong_shapes() -> None:
    model = Sequential(Linear(2, 3), ReLU(), Linear(3, 1))
    good = {k: v.clone() for k, v in model.state_dict().items()}
    before = {k: v.clone() for k, v in good.items()}
    missing = {k: v for k, v in good.items() if k != "2.bias"}
    with pytest.raises(ValueError, match=r"missing keys \['2.bias'\], unexpected keys \[\]"):
        model.load_state_dict(missing)
    with pytest.raises(ValueError, match=r"missing keys \[\], unexpected keys \['3.weight'\]"):
        model.load_state_dict({**good, "3.weight": torch.zeros(1)})
    with pytest.raises(
        ValueError, match=r"key '0.weight' has shape \(2, 3\), the module's \(3, 2\)"
    ):
        model.load_state_dict({**good, "0.weight": torch.zeros(2, 3)})
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    # strict=False loads what is there, as torch does.
    model.load_state_dict({"2.bias": torch.full((1,), 4.0)}, strict=False)
    assert model[2].bias.data.item() == 4.0


def dtypes_and_devices(module: object) -> dict[str, tuple[torch.dtype, str]]:
    return {k: (v.dtype, v.device.type) for k, v in module.state_dict().items()}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "args,kwargs",
    [
        ((torch.float64,), {}),
        (("cpu",), {}),
        ((torch.device("cpu"), torch.float64), {}),
        (("cpu", torch.float16), {}),
        ((torch.zeros(1, dtype=torch.float64),), {}),
        ((), {"dtype": torch.float64}),
        ((), {"device": "cpu", "dtype": torch.bfloat16}),
    ],
    ids=["dtype", "device-str", "device-dtype", "str-dtype", "tensor", "kw-dtype", "kw-both"],
)
def test_to_moves_like_torch(args: tuple[object, ...], kwargs: dict[str, object]) -> None:
    ours, theirs = models()
    assert ours.to(*args, **kwargs) is ours
    theirs.to(*args, **kwargs)
    assert dtypes_and_devices(ours) == dtypes_and_devices(theirs)
    assert ours[0].count.dtype == torch.int64  # integer buffers keep their dtype
    # Gradients follow their parameters.
    assert all(p.grad.dtype == p.data.dtype for p in ours.parameters())


def test_to_float64_then_back_changes_floating_buffers_only() -> None:
    block = Block(2)
    block.to(F64)
    assert block.running.dtype == F64 and block.count.dtype == torch.int64
    assert block.buffers()[0] is block.count
    block.to(torch.float32)
    assert block.running.dtype == torch.float32
    with pytest.raises(TypeError, match="takes a device, a dtype or a tensor"):
        block.to(3.5)
    with pytest.raises(TypeError, match="unexpected keyword arguments"):
        block.to(dtype=F64, copy=True)


def test_to_moves_a_layer_without_a_to_method() -> None:
    model = Sequential(Linear(2, 2), Scale(2))
    model.to(F64)
    assert model[1].w.data.dtype == model[1].w.grad.dtype == F64
    assert model(torch.ones(1, 2, dtype=F64)).dtype == F64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_to_cuda_and_back_like_torch() -> None:
    ours, theirs = models()
    ours.to("cuda", F64)
    theirs.to("cuda", F64)
    assert dtypes_and_devices(ours) == dtypes_and_devices(theirs)
    assert ours(torch.ones(2, 3, device="cuda", dtype=F64)).device.type == "cuda"
    ours.to(torch.zeros(1))
    theirs.to(torch.zeros(1))
    assert dtypes_and_devices(ours) == dtypes_and_devices(theirs)


def test_train_and_eval_return_self_and_propagate() -> None:
    ours, theirs = models()
    plain = Scale(2)
    ours = Sequential(*ours.layers[:-1], Linear(2, 2), plain)
    modules = [ours, ours[0], ours[0].lin, ours[1], ours[2], ours[3], ours[3][0], ours[3][1]]
    assert all(m.training for m in modules)
    assert ours.eval() is ours
    assert theirs.eval() is theirs
    assert not any(m.training for m in modules)
    assert ours.train() is ours and all(m.training for m in modules)
    assert ours.train(False) is ours and not any(m.training for m in modules)
    # A layer without train() has no modes: nothing is set on it.
    assert not hasattr(plain, "training")
    assert ours[3][0].train(True) is ours[3][0] and ours[3][0].training
    assert not ours[3].training  # a child's mode does not climb to its parent


def test_a_buffer_changes_in_training_mode_only() -> None:
    block = Block(2)
    x = torch.ones(3, 2)
    block.forward(x)
    assert block.count.item() == 1 and block.running.any()
    block.eval()
    running = block.running.clone()
    block.forward(x)
    assert block.count.item() == 1 and torch.equal(block.running, running)


def test_register_buffer_buffers_and_named_buffers_like_torch() -> None:
    ours, theirs = models()
    names = [n for n, _ in ours.named_buffers()]
    assert names == [n for n, _ in theirs.named_buffers()] == ["0.count", "0.running"]
    assert ours.buffers() == [ours[0].count, ours[0].running]
    block = Block(2)
    replacement = torch.ones(2)
    block.register_buffer("running", replacement)  # again: replaced, not listed twice
    assert [n for n, _ in block.named_buffers()] == ["count", "running"]
    assert block.running is replacement
    assert Linear(2, 2).buffers() == [] and ReLU().named_buffers() == []


def test_init_args_are_recorded_and_rebuild_the_layer() -> None:
    layer = Linear(2, 3, bias=False)
    assert layer.init_args == ((2, 3), {"bias": False})
    block = Block(4, gain=2.0)
    assert block.init_args == ((4,), {"gain": 2.0})
    for made in (layer, block):
        args, kwargs = made.init_args
        again = type(made)(*args, **kwargs)
        assert [tuple(p.shape) for p in again.parameters()] == [
            tuple(p.shape) for p in made.parameters()
        ]
    assert torch.equal(
        Block(*block.init_args[0], **block.init_args[1]).scale.data, block.scale.data
    )
    assert ReLU().init_args == ((), {})


def test_linear_without_bias_equals_torch_in_init_forward_and_backward() -> None:
    torch.manual_seed(3)
    ours = Linear(2, 3, bias=False, dtype=F64)
    after = torch.get_rng_state()
    torch.manual_seed(3)
    ref = torch.nn.Linear(2, 3, bias=False, dtype=F64)
    assert torch.equal(ours.weight.data, ref.weight.detach())  # bit for bit
    assert torch.equal(after, torch.get_rng_state())  # the generator advanced alike
    assert ours.bias is None and ours.parameters() == [ours.weight]
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["weight"]
    assert repr(ours) == "Linear(in_features=2, out_features=3, bias=False)"
    x = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    g = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    xr = x.clone().requires_grad_(True)
    with torch.enable_grad():
        out = ref(xr)
        out.backward(g)
    torch.testing.assert_close(ours(x), out.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(ours.backward(g), xr.grad, rtol=1e-12, atol=0)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-12, atol=0)


def test_losses_are_callable_like_torch_functional() -> None:
    g = torch.Generator().manual_seed(0)
    p, t = torch.randn(8, 3, dtype=F64, generator=g), torch.randn(8, 3, dtype=F64, generator=g)
    torch.testing.assert_close(MSE()(p, t), F.mse_loss(p, t), rtol=1e-12, atol=0)
    classes = torch.tensor([0, 2, 1, 1, 0, 2, 2, 1])
    torch.testing.assert_close(
        CrossEntropy()(p, classes), F.cross_entropy(p, classes), rtol=1e-12, atol=0
    )
    probabilities = torch.softmax(t, 1)
    torch.testing.assert_close(
        CrossEntropy()(p, probabilities), F.cross_entropy(p, probabilities), rtol=1e-12, atol=0
    )


def test_call_is_forward_and_the_base_asks_for_forward_and_backward() -> None:
    torch.manual_seed(0)
    layer = Linear(2, 2)
    x = torch.randn(3, 2)
    assert torch.equal(layer(x), layer.forward(x))

    class Empty(ModuleBase):
        pass

    with pytest.raises(NotImplementedError, match="Empty does not define forward"):
        Empty()(x)
    with pytest.raises(NotImplementedError, match="Empty does not define backward"):
        Empty().backward(x)
    assert repr(Empty()) == "Empty()" and Empty().parameters() == []
    assert isinstance(Empty(), minidl.Module)


def test_zero_grad_resets_gradients_and_never_weights() -> None:
    torch.manual_seed(0)
    model = Sequential(Linear(2, 4), Tanh(), Block(4), Linear(4, 1))
    loss = MSE()
    x, y = torch.randn(8, 2), torch.randn(8, 1)
    weights = [p.data.clone() for p in model.parameters()]
    for zero_grad, cleared in (
        (model.zero_grad, model.parameters()),
        (model[2].zero_grad, model[2].parameters()),
        (SGD(model.parameters(), lr=0.1).zero_grad, model.parameters()),
    ):
        loss.forward(model(x), y)
        model.backward(loss.backward())
        assert all(p.grad.any() for p in cleared)
        zero_grad()
        assert not any(p.grad.any() for p in cleared)
        for p, w in zip(model.parameters(), weights, strict=True):
            assert torch.equal(p.data, w)
