"""Models beyond the chain: specs that nest, containers built from them with shapes
inferred into and through them, torch's walks over children, and everything that took a
``Sequential`` of leaves (keys, modes, moves, buffers, model files, the first step's
checks) at any depth. The references are torch.nn twins of the same structure.

The containers are the tests' own (tests/layers.py): ``skip`` is a Sequential subclass
(``y = x + f(x)``, as the built-in ``residual`` is), ``scaled`` a ModuleBase holding its
module as an attribute; ``lookup`` takes int64 ids."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import layers
import pytest
import torch
from layers import Lookup, Scale, Scaled, Skip
from test_module import Block, TorchBlock
from torch import Tensor

import minidl
from minidl import ModelFileError, Sequential, Spec, SpecError
from minidl.module import named_modules, state_dict
from minidl.plugins import MSE, SGD, Linear, ReLU, Sigmoid, Tanh

F64 = torch.float64


class Plugin:
    @staticmethod
    def register_layers(register: Callable[[str, Any], None]) -> None:
        layers.register_layers(register)
        register("block", Block)


@pytest.fixture(autouse=True)
def registered(plugin) -> None:  # type: ignore[no-untyped-def]
    plugin(Plugin(), "test-containers")


# ------------------------------------------------------------------------ torch's twins


class TorchSkip(torch.nn.Sequential):
    def forward(self, x: Tensor) -> Tensor:
        return x + super().forward(x)


class TorchScaled(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module, factor: float = 2.0) -> None:
        super().__init__()
        self.inner, self.factor = inner, factor

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x) * self.factor


def nested() -> tuple[Sequential, torch.nn.Sequential]:
    """One architecture two levels deep, with buffers inside a container, twice."""
    torch.manual_seed(0)
    ours = Sequential(
        Linear(3, 4),
        Skip(Linear(4, 4), Tanh(), Scaled(Block(4), 0.5)),
        Sequential(Linear(4, 2), ReLU()),
        Linear(2, 1),
        Sigmoid(),
    )
    theirs = torch.nn.Sequential(
        torch.nn.Linear(3, 4),
        TorchSkip(torch.nn.Linear(4, 4), torch.nn.Tanh(), TorchScaled(TorchBlock(4), 0.5)),
        torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.ReLU()),
        torch.nn.Linear(2, 1),
        torch.nn.Sigmoid(),
    )
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


# ------------------------------------------------------------------------ specs


def test_parse_nests_calls_and_bare_names_as_specs() -> None:
    items = minidl.parse(
        "linear(8), skip(linear(8, bias=False), Relu, scaled(tanh, 0.5)), linear(1)"
    )
    assert items[1] == Spec(
        "skip",
        [Spec("linear", [8], {"bias": False}), Spec("relu"), Spec("scaled", [Spec("tanh"), 0.5])],
    )
    assert str(items[1]) == "skip(linear(8, bias=False), relu, scaled(tanh, 0.5))"
    assert minidl.parse(", ".join(map(str, items))) == items  # str() is the syntax again


def test_other_kinds_keep_literal_arguments_only() -> None:
    with pytest.raises(SpecError, match=r"quote strings: 'x' at column 6"):
        minidl.create("optimizer", "adam(x)", [], lr=0.1)


def test_a_container_receives_built_modules_with_shapes_inferred_into_and_through_it() -> None:
    model = minidl.build("linear(8), skip(linear(8), tanh, scaled(linear(8))), linear(1)", (3,))
    skip = model[1]
    assert type(skip) is Skip and [type(m) for m in skip] == [Linear, Tanh, Scaled]
    assert (skip[0].in_features, skip[2].inner.in_features) == (8, 8)  # from its input
    assert model[2].in_features == 8  # through it: its output probed
    assert skip.init_args == ((skip[0], skip[1], skip[2]), {})
    assert model(torch.ones(5, 3)).shape == (5, 1)


def test_errors_inside_a_container_name_the_path() -> None:
    with pytest.raises(SpecError) as info:
        minidl.build("linear(8), skip(linear(8), relux)", (3,))
    assert str(info.value).startswith(
        "model spec item 2 (skip) > item 2: unknown layer 'relux'. Available names: "
    )
    assert str(info.value).endswith("(a name inside a call is a layer; quote a string: 'relux')")
    with pytest.raises(SpecError) as info:
        minidl.build("skip(relu, linear(in_features=5, out_features=3))", (3,))
    assert str(info.value) == (
        "model spec item 1 (skip) > item 2 (linear) cannot take an input of shape (3,) (per "
        "example): it takes 5 features per example, but its input has 3"
    )
    with pytest.raises(
        SpecError, match=r"model spec item 1 \(skip\) cannot take an input of shape \(3,\)"
    ):
        minidl.build("skip(linear(4))", (3,))  # the inner chain works; adding it does not
    with pytest.raises(
        SpecError, match=r"model spec item 1 \(skip\) > item 1: cannot make layer linear\(3, -1\)"
    ):
        minidl.build("skip(linear(-1))", (3,))


# ------------------------------------------------------------------------ torch's walks


def test_named_modules_children_and_keys_are_torchs() -> None:
    ours, theirs = nested()
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [n for n, _ in ours.named_modules()][:5] == ["", "0", "1", "1.0", "1.1"]
    assert [n for n, _ in ours.named_children()] == [n for n, _ in theirs.named_children()]
    assert [type(m) for m in ours.children()] == [Linear, Skip, Sequential, Linear, Sigmoid]
    assert [m for _, m in ours.named_modules()] == list(ours.modules())
    # The same keys (torch lists a module's buffers before its children's parameters).
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    assert "1.2.inner.lin.weight" in ours.state_dict()
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [p for _, p in ours.named_parameters()] == ours.parameters()
    # A module seen twice is walked once, as torch's.
    shared = Linear(2, 2)
    assert len(list(Sequential(shared, ReLU(), shared).modules())) == 3


def test_apply_visits_children_first_like_torch() -> None:
    ours, theirs = nested()
    seen: list[str] = []
    assert ours.apply(lambda m: seen.append(type(m).__name__)) is ours
    theirs_seen: list[str] = []
    theirs.apply(lambda m: theirs_seen.append(type(m).__name__))
    assert [n.removeprefix("Torch") for n in theirs_seen] == seen
    plain = Scale(2)  # a protocol-only module: fn is applied to it, it has no children
    visited: list[object] = []
    Sequential(plain).apply(visited.append)
    assert visited[0] is plain


def test_forward_and_backward_at_depth_equal_autograd() -> None:
    ours, theirs = nested()
    ours.to(F64).train()
    theirs.to(F64).train()
    x = torch.randn(6, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    xr = x.clone().requires_grad_(True)
    with torch.enable_grad():
        out = theirs(xr)
        (out * out).sum().backward()
    y = ours(x)
    torch.testing.assert_close(y, out.detach(), rtol=1e-12, atol=1e-12)
    grad_x = ours.backward(2 * y)
    torch.testing.assert_close(grad_x, xr.grad, rtol=1e-12, atol=1e-12)
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-12, msg=name)
    assert int(ours[1][2].inner.count) == 1  # the buffer inside moved in training mode


def test_modes_moves_and_float_double_reach_every_depth() -> None:
    ours, theirs = nested()
    inner = ours[1][2].inner  # a Block inside a Scaled inside a Skip
    assert ours.eval() is ours and not inner.training and not inner.lin.training
    assert ours.train() is ours and inner.training
    assert ours.double() is ours
    theirs.double()
    assert {n: t.dtype for n, t in state_dict(ours).items()} == {
        n: t.dtype for n, t in theirs.state_dict().items()
    }
    assert inner.running.dtype == F64 and inner.count.dtype == torch.int64
    assert inner.lin.weight.grad.dtype == F64
    assert ours.float() is ours and inner.lin.weight.data.dtype == torch.float32


def test_load_state_dict_from_torch_at_depth() -> None:
    ours, theirs = nested()
    torch.manual_seed(5)
    other = nested()[1]
    for p in other.parameters():
        torch.nn.init.normal_(p)
    ours.load_state_dict(other.state_dict())
    ours.eval()
    other.eval()
    x = torch.rand(4, 3)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), other(x))


def test_sequential_append_and_iter_like_torch() -> None:
    torch.manual_seed(0)
    model = Sequential(Linear(2, 3))
    assert model.append(ReLU()) is model and model.append(Linear(3, 1)) is model
    assert [type(m) for m in model] == [Linear, ReLU, Linear] and len(model) == 3
    net = torch.nn.Sequential(torch.nn.Linear(2, 3))
    net.append(torch.nn.ReLU()).append(torch.nn.Linear(3, 1))
    net.load_state_dict(model.state_dict())
    x = torch.rand(5, 2)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x))
    assert model.init_args == ((model[0], model[1], model[2]), {})  # so it saves as it is now
    with pytest.raises(TypeError, match="Sequential item 3: int object is not a module"):
        model.append(3)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ model files


def same(a: Any, b: Any) -> bool:
    sa, sb = state_dict(a), state_dict(b)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_nested_model_round_trips(tmp_path: Path) -> None:
    model = minidl.build(
        "linear(4), skip(linear(4), tanh, scaled(linear(4), 0.5)), linear(1)", (2,)
    )
    model.append(Sequential(Sigmoid()))  # a plain Sequential inside, made in Python
    model.to(F64)
    minidl.save_model(model, tmp_path)
    document = json.loads((tmp_path / "model.json").read_text())
    skip = document["layers"][1]
    assert (skip["name"], skip["modules"], skip["args"][2]["modules"]) == ("skip", [0, 1, 2], [0])
    assert skip["args"][2]["args"][0]["args"] == [4, 4] and skip["args"][2]["args"][1] == 0.5
    assert document["layers"][3] == {
        "name": "sequential", "plugin": "minidl", "modules": [0],
        "args": [{"name": "sigmoid", "plugin": "minidl.layers", "args": [], "kwargs": {}}], "kwargs": {},
    }  # fmt: skip
    loaded, _ = minidl.load_model(tmp_path)
    assert [type(m) for _, m in named_modules(loaded)] == [type(m) for _, m in named_modules(model)]
    assert same(loaded, model) and loaded[1][2].factor == 0.5
    x = torch.rand(5, 2, dtype=F64)
    assert torch.equal(loaded(x), model.eval()(x))


def test_a_model_that_is_no_sequential_round_trips(tmp_path: Path) -> None:
    model = Skip(Linear(3, 3), Block(3))
    model.train().forward(torch.rand(4, 3))  # the buffers move
    minidl.save_model(model, tmp_path)
    document = json.loads((tmp_path / "model.json").read_text())
    assert "layers" not in document and document["model"]["name"] == "skip"
    loaded, _ = minidl.load_model(tmp_path)
    assert type(loaded) is Skip and same(loaded, model) and int(loaded[1].count) == 1


def test_a_file_of_minidl_0_2_still_loads(tmp_path: Path) -> None:
    """Version 2, as 0.2 wrote it: a flat list of layers."""
    model = Sequential(Linear(2, 3), Tanh(), Linear(3, 1))
    minidl.save_model(model, tmp_path)  # for the weights
    (tmp_path / "model.json").write_text(
        '{"format": "minidl-model", "version": 2, "dtype": "float32", "layers": ['
        '{"name": "linear", "plugin": "minidl.layers", "args": [2, 3], "kwargs": {}}, '
        '{"name": "tanh", "plugin": "minidl.layers", "args": [], "kwargs": {}}, '
        '{"name": "linear", "plugin": "minidl.layers", "args": [3, 1], "kwargs": {}}], '
        '"metadata": {"note": "0.2"}}'
    )
    loaded, metadata = minidl.load_model(tmp_path)
    assert metadata == {"note": "0.2"} and same(loaded, model)


@pytest.mark.parametrize(
    "change,message",
    [
        (
            lambda d: d["layers"][1].update(modules=[5]),
            "'layers' must be a list of {name, args, kwargs}",
        ),
        (lambda d: d["layers"][1].update(modules=[True]), "'layers' must be a list"),
        (lambda d: d["layers"][1]["args"].__setitem__(0, 3), "'layers' must be a list"),
        (
            lambda d: d["layers"][1]["args"][0].update(name="conv9d"),
            "layer 'conv9d' (saved from plugin 'minidl.layers') is not registered",
        ),
        (lambda d: d["layers"][1].update(modules=[]), "cannot make layer skip({'name': 'linear'"),
        (lambda d: d.update(model=d.pop("layers")[1]), "state_dict does not fit Skip"),
        (lambda d: d.update(model=5), "'model' must be one object"),
    ],
    ids=["position", "bool", "not-an-item", "unregistered", "unmarked", "model", "model-not-item"],
)
def test_malformed_nested_items_are_named(
    tmp_path: Path, change: Callable[[dict], None], message: str
) -> None:
    minidl.save_model(minidl.build("linear(4), skip(linear(4), tanh)", (2,)), tmp_path)
    path = tmp_path / "model.json"
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))
    with pytest.raises(ModelFileError) as info:
        minidl.load_model(tmp_path)
    assert message in str(info.value)


@pytest.mark.parametrize("depth", [450, 5000])  # too deep for Python, for JSON
def test_a_deeply_nested_file_is_refused_not_crashed(tmp_path: Path, depth: int) -> None:
    minidl.save_model(Sequential(ReLU()), tmp_path)
    item = '{"name": "skip", "modules": [0], "args": [' * depth + '{"name": "relu"}' + "]}" * depth
    (tmp_path / "model.json").write_text(
        f'{{"format": "minidl-model", "version": 3, "dtype": "float32", "model": {item}}}'
    )
    with pytest.raises(ModelFileError, match=f"^{tmp_path}"):
        minidl.load_model(tmp_path)


def test_saving_names_an_unregistered_layer_inside_a_container(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError) as info:
        minidl.save_model(Sequential(Linear(2, 2), Skip(ReLU(), Scale(2))), tmp_path)
    assert str(info.value).startswith(
        "cannot save the model: layer 2 (skip) > layer 2 (Scale) is not a registered layer class"
    )


# ------------------------------------------------------------------------ the first step


def fit_once(model: Any, x: Tensor, y: Tensor, loss: Any = None) -> None:
    minidl.fit(
        model, loss or MSE(), SGD(model.parameters(), lr=0.1), minidl.Dataset(x, y), epochs=1
    )


def test_the_first_step_names_a_layer_inside_a_container() -> None:
    x, y = torch.rand(16, 2), torch.rand(16, 1)
    model = Sequential(Linear(2, 8), Skip(Linear(8, 8), Tanh(), Linear(5, 8)), Linear(8, 1))
    with pytest.raises(SpecError) as info:
        fit_once(model, x, y)
    assert str(info.value) == (
        "model layer 2 (skip) > layer 3 (linear) cannot take an input of shape (16, 8): it "
        "takes 5 features per example, but layer 2 (skip) > layer 2 (tanh) gives 8 (layer 2 "
        "(skip) > layer 2 does not say how many it gives, so the input size could not be "
        "inferred; give in_features= explicitly)"
    )
    top = Skip(Tanh(), Linear(3, 2))  # no Sequential at the top: paths start inside it
    with pytest.raises(
        SpecError,
        match=r"^model layer 2 \(linear\) cannot take an input of shape \(16, 2\): it takes 3",
    ):
        fit_once(top, x, y)
    # Targets out of a nested last layer's range are named with its path.
    with pytest.raises(
        minidl.DataError, match=r"the model's last layer 2 \(Sequential\) > layer 2 \(sigmoid\)"
    ):
        fit_once(Sequential(Linear(2, 1), Sequential(Tanh(), Sigmoid())), x, y * 3)


def test_the_first_step_is_the_models_own_at_depth() -> None:
    """The checked first step and the model's forward and backward give the same numbers."""
    ours, _ = nested()
    twin = nested()[0]
    x, y = torch.rand(20, 3), torch.rand(20, 1)
    fit_once(ours, x, y)
    twin.train()
    loss, opt = MSE(), SGD(twin.parameters(), lr=0.1)
    for xb, yb in minidl.Dataset(x, y).batches(100, torch.Generator().manual_seed(0)):
        opt.zero_grad()
        loss.forward(twin.forward(xb), yb)
        twin.backward(loss.backward())
        opt.step()
    assert same(ours, twin)


# ------------------------------------------------------------------------ integer inputs


def ids(n: int, length: int, vocab: int, seed: int = 0) -> Tensor:
    return torch.randint(0, vocab, (n, length), generator=torch.Generator().manual_seed(seed))


def test_build_probes_with_the_inputs_dtype_and_no_random_number() -> None:
    torch.manual_seed(0)
    state = torch.get_rng_state()
    minidl.build("scaled(lookup(10, 4))", (5,), torch.int64)
    assert torch.equal(state, torch.get_rng_state())  # lookup draws nothing; nor does the probe
    model = minidl.build("lookup(10, 4), linear(3)", (), torch.int64)
    assert model[1].in_features == 4
    assert (
        minidl.build("linear(3)", (5,), F64)[0].weight.data.dtype == torch.float32
    )  # floats: as made


def test_ids_into_a_float_layer_and_floats_into_an_ids_layer_are_named() -> None:
    with pytest.raises(SpecError) as info:
        minidl.build("linear(3)", (5,), torch.int64)
    assert str(info.value) == (
        "model spec item 1 (linear) cannot take an input of shape (5,) (per example) and dtype "
        "int64: its inputs are int64 ids, but it computes in float32: only a layer that takes "
        "ids (such as an embedding) can take integer inputs"
    )
    with pytest.raises(
        SpecError,
        match=r"model spec item 1 \(lookup\) cannot take an input of shape \(5,\) \(per example\): TypeError: lookup takes int64 ids, got torch.float32",
    ):
        minidl.build("lookup(10, 4)", (5,))
    with pytest.raises(SpecError) as info:  # and in the first step of training
        fit_once(Sequential(Scaled(Linear(5, 1))), ids(8, 5, 10), torch.rand(8, 1))
    assert str(info.value).startswith(
        "model layer 1 (scaled) > layer 1 (linear) cannot take an input of shape (8, 5) and dtype "
        "int64: its inputs are int64 ids, but it computes in float32"
    )


# ------------------------------------------------------------------------ sequence targets


def sequences(n: int, seed: int) -> minidl.Dataset:
    """Next-id prediction where the first two positions (the prompt) are ignored."""
    x = ids(n, 6, 7, seed)
    y = (x + 1) % 7
    y[:, :2] = -100
    return minidl.Dataset(x, y)


def test_fit_keeps_ids_int64_and_learns_sequence_targets() -> None:
    train, test = sequences(64, 0), sequences(32, 1)
    model = minidl.build("lookup(7, 7)", (6,), torch.int64).to(F64)
    loss = minidl.create("loss", "cross_entropy")
    assert minidl.evaluate(model, loss, test)[1] < 0.5
    seen: list[torch.dtype] = []
    original = Lookup.forward
    Lookup.forward = lambda self, x: seen.append(x.dtype) or original(self, x)  # type: ignore[method-assign]
    try:
        history = minidl.fit(
            model, loss, SGD(model.parameters(), lr=20.0), train, test, epochs=30, batch_size=16
        )
    finally:
        Lookup.forward = original  # type: ignore[method-assign]
    assert set(seen) == {torch.int64}
    assert history[-1]["test_accuracy"] == 1.0
    out = minidl.predict(model, test.x)
    assert out.shape == (32, 6, 7) and out.dtype == F64
    assert minidl.labels(out)[:, 2:].equal(test.y[:, 2:])
    assert minidl.evaluate(model, loss, test)[1] == 1.0
