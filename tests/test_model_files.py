"""save_model / load_model: model.json (data naming registered layers and their arguments) and
model.safetensors (raw tensors under torch's keys), nothing else; never code from a file."""

from __future__ import annotations

import ast
import io
import json
import os
import pickle
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch import Tensor

import minidl
from minidl import ModelFileError, ModuleBase, Parameter, Sequential, hookimpl
from minidl.io import atomic_write
from minidl.plugins import Linear, ReLU, Sigmoid, Standardize, Tanh

F64 = torch.float64


class RunningMean(ModuleBase):
    """Subtracts a running mean kept in buffers (one float, one integer); dropout-like in
    training (it zeroes odd features), so train and eval outputs differ."""

    def __init__(self, in_features: int, momentum: float = 0.5) -> None:
        self.momentum = momentum
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self.mean.lerp_(x.mean(0), self.momentum)
            self.updates += 1
            x = x.clone()
            x[:, 1::2] = 0
        return x - self.mean

    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output


class Scale:
    """A layer with no base class; made by a spec, it gets init_args from build()."""

    def __init__(self, in_features: int) -> None:
        self.w = Parameter(torch.linspace(0.5, 1.5, in_features), "w")

    def forward(self, x: Tensor) -> Tensor:
        return x * self.w.data

    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output * self.w.data

    def parameters(self) -> list[Parameter]:
        return [self.w]


class Extras:
    @hookimpl
    def register_layers(self, register: Callable[[str, Any], None]) -> None:
        register("running_mean", RunningMean)
        register("scale", Scale)


@pytest.fixture
def extras(plugin: Callable[[object, str], str]) -> str:
    return plugin(Extras(), "extras")


def trained(dtype: torch.dtype = torch.float32) -> tuple[Sequential, minidl.Dataset]:
    torch.manual_seed(0)
    train, test = minidl.registry.get("dataset", "disc")(seed=0, n_train=100, n_test=50)
    model = minidl.build(
        "standardize([0.5, 0.5], [0.3, 0.3]), linear(8), tanh, linear(1), sigmoid", (2,)
    ).to(dtype)
    opt = minidl.create("optimizer", "adam", model.parameters(), lr=0.05)
    minidl.fit(model, minidl.plugins.MSE(), opt, train, epochs=2, batch_size=25)
    return model, test


def same_tensors(a: Sequential, b: Sequential) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa
    )


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_round_trip_of_a_spec_built_model(tmp_path: Path, dtype: torch.dtype) -> None:
    model, test = trained(dtype)
    metadata = {"test_accuracy": 0.5, "note": "é", "config": {"lr": 1e-3}}
    minidl.save_model(model, tmp_path / "m", metadata)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "model.safetensors"]
    loaded, meta = minidl.load_model(tmp_path / "m")
    assert meta == metadata
    assert [type(m) for m in loaded.layers] == [type(m) for m in model.layers]
    assert [m.init_args for m in loaded.layers] == [m.init_args for m in model.layers]
    assert same_tensors(loaded, model)
    assert {p.data.dtype for p in loaded.parameters()} == {dtype}
    x = test.x.to(dtype)
    assert torch.equal(loaded(x), model(x))


def test_round_trip_of_a_hand_built_model(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = Sequential(
        Standardize([0.1, 0.2], [1.0, 2.0]),
        Linear(2, 25),
        ReLU(),
        Linear(25, 25, bias=False),
        Tanh(),
        Linear(25, 1, dtype=torch.float32),  # placement arguments are not recorded
        Sigmoid(),
    )
    minidl.save_model(model, tmp_path)
    document = json.loads((tmp_path / "model.json").read_text())
    assert [layer["name"] for layer in document["layers"]] == [
        "standardize", "linear", "relu", "linear", "tanh", "linear", "sigmoid"
    ]  # fmt: skip
    assert document["layers"][3]["args"] == [25, 25] and document["layers"][3]["kwargs"] == {
        "bias": False
    }
    assert document["layers"][5]["kwargs"] == {}
    assert document["layers"][1]["plugin"] == minidl.registry.table("layer")["linear"].plugin
    loaded, meta = minidl.load_model(tmp_path)
    assert meta == {} and loaded[3].bias is None
    assert same_tensors(loaded, model)
    x = torch.rand(7, 2)
    model.eval()
    assert torch.equal(loaded(x), model(x))


def test_files_are_plain_data_under_torchs_keys(tmp_path: Path) -> None:
    model, _ = trained(F64)
    minidl.save_model(model, tmp_path)
    document = json.loads((tmp_path / "model.json").read_text())
    assert document["format"] == "minidl-model" and document["version"] == 3
    assert document["dtype"] == "float64"
    tensors = load_file(tmp_path / "model.safetensors")  # raw tensors, readable by anyone
    assert list(tensors) == sorted(model.state_dict())
    assert sorted(tensors) == ["1.bias", "1.weight", "3.bias", "3.weight"]
    assert torch.equal(tensors["1.weight"], model[1].weight.data)
    # torch.nn reads the weights as they are.
    net = torch.nn.Sequential(
        torch.nn.Identity(), torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
    )
    net.to(F64).load_state_dict(tensors)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_buffers_are_saved_and_loaded_in_place(
    tmp_path: Path, extras: str, dtype: torch.dtype
) -> None:
    torch.manual_seed(2)
    model = minidl.build("linear(4), running_mean(momentum=0.25), linear(1)", (2,))
    model.forward(torch.rand(10, 2))
    model.forward(torch.rand(10, 2))
    assert model[1].updates.item() == 2 and model[1].mean.any()
    model.to(dtype)
    minidl.save_model(model, tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    assert {"1.mean", "1.updates"} <= set(tensors) and tensors["1.updates"].dtype == torch.int64
    # Loading writes into the tensors the new layer made (or, for another dtype, the ones
    # to() made of them), never replacing them.
    original_init = RunningMean.__init__

    def spy(self: RunningMean, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._made_with = (self.mean, self.updates)  # type: ignore[attr-defined]

    RunningMean.__init__ = spy  # type: ignore[method-assign]
    try:
        loaded, _ = minidl.load_model(tmp_path)
    finally:
        RunningMean.__init__ = original_init  # type: ignore[method-assign]
    layer = loaded[1]
    assert layer.momentum == 0.25
    assert layer.updates is layer._made_with[1]  # an integer buffer keeps its dtype and tensor
    if dtype == torch.float32:
        assert layer.mean is layer._made_with[0]
    assert torch.equal(layer.mean, model[1].mean) and layer.mean.dtype == dtype
    assert layer.updates.item() == 2 and layer.updates.dtype == torch.int64
    assert same_tensors(loaded, model)


def test_a_loaded_model_is_in_eval_mode_with_identical_outputs(tmp_path: Path, extras: str) -> None:
    torch.manual_seed(3)
    model = minidl.build("linear(4), running_mean, tanh, linear(1)", (2,))
    x = torch.rand(6, 2)
    model.forward(x)  # training mode: moves the running mean
    minidl.save_model(model, tmp_path)
    loaded, _ = minidl.load_model(tmp_path)
    assert not loaded.training and not loaded[1].training
    model.eval()
    assert torch.equal(loaded(x), model(x))
    model.train()
    assert not torch.equal(loaded(x), model(x))  # the modes differ: the check can fail


def test_a_protocol_only_layer_built_by_a_spec_saves_and_names_its_plugin_when_missing(
    tmp_path: Path, extras: str
) -> None:
    model = minidl.build("linear(3), scale, relu, linear(1)", (2,))
    model[1].w.data = torch.tensor([1.0, -2.0, 3.0])
    minidl.save_model(model, tmp_path)
    loaded, _ = minidl.load_model(tmp_path)
    assert isinstance(loaded[1], Scale) and torch.equal(loaded[1].w.data, model[1].w.data)
    minidl.registry.reset()  # the plugin is gone
    with pytest.raises(ModelFileError) as info:
        minidl.load_model(tmp_path)
    assert str(info.value).startswith(
        f"{tmp_path}: layer 'scale' (saved from plugin 'extras') is not registered; is the "
        "plugin that provides it installed and loaded? Available names: "
    )


# ---------------------------------------------------------------------------- refused saves


def test_a_layer_that_is_not_a_registered_class_is_refused(tmp_path: Path) -> None:
    class Unregistered(ModuleBase):
        def forward(self, x: Tensor) -> Tensor:
            return x

        def backward(self, g: Tensor) -> Tensor:
            return g

    with pytest.raises(ModelFileError) as info:
        minidl.save_model(Sequential(Linear(2, 2), Unregistered()), tmp_path / "m")
    assert str(info.value) == (
        "cannot save the model: layer 2 (Unregistered) is not a registered layer class; "
        "register the class itself through register_layers so a file can name it"
    )
    assert not (tmp_path / "m").exists()  # nothing written


def test_a_layer_without_init_args_is_refused_saying_what_it_needs(
    tmp_path: Path, extras: str
) -> None:
    with pytest.raises(ModelFileError) as info:
        minidl.save_model(Sequential(Linear(2, 3), Scale(3)), tmp_path / "m")
    assert str(info.value) == (
        "cannot save the model: layer 2 (scale) does not say how it was made; subclass "
        "minidl.ModuleBase (it records its constructor arguments) or give the layer "
        "init_args = (args, kwargs)"
    )
    assert not (tmp_path / "m").exists()
    layer = Scale(3)
    layer.init_args = ((3,), {})  # type: ignore[attr-defined]
    minidl.save_model(Sequential(Linear(2, 3), layer), tmp_path / "m")
    assert isinstance(minidl.load_model(tmp_path / "m")[0][1], Scale)


def test_arguments_that_are_not_json_data_are_refused(tmp_path: Path) -> None:
    def init(weight: Tensor, bias: Tensor) -> None:
        weight.fill_(0.5)
        bias.zero_()

    with pytest.raises(ModelFileError) as info:
        minidl.save_model(Sequential(Linear(2, 3, init=init)), tmp_path / "m")
    assert str(info.value).startswith(
        "cannot save the model: layer 1 (linear) was made with arguments that are not JSON data"
    )
    assert "a file records numbers, strings, lists and dicts" in str(info.value)
    with pytest.raises(ModelFileError, match="model metadata must be JSON data"):
        minidl.save_model(Sequential(Linear(2, 3)), tmp_path / "m", {"t": torch.tensor(1.0)})
    assert not (tmp_path / "m").exists()


def test_unserializable_metadata_fails_before_touching_the_saved_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    first = minidl.build("linear(3), relu, linear(1)", (2,))
    minidl.save_model(first, tmp_path, {"run": 1})
    second = minidl.build("linear(3), relu, linear(1)", (2,))
    with pytest.raises(ModelFileError, match="metadata must be JSON data"):
        minidl.save_model(second, tmp_path, {"accuracy": torch.tensor(0.9)})
    model, metadata = minidl.load_model(tmp_path)  # still the first model, whole
    assert metadata == {"run": 1} and same_tensors(model, first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]


def test_atomic_write_replaces_whole_and_leaves_no_temporary_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f.json"
    atomic_write(target, "old")
    target.chmod(0o640)
    atomic_write(target, b"new")
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o640  # replacing keeps the file's mode
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]

    def fail(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, "half")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


# ---------------------------------------------------------------------------- never code


class Payload:
    """Unpickling this calls Path.touch(marker): proof that the file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def payloads(marker: Path) -> dict[str, bytes]:
    buffer = io.BytesIO()
    torch.save({"0.weight": Payload(marker)}, buffer)  # torch's zip-of-pickles format
    return {"pickle": pickle.dumps({"0.weight": Payload(marker)}), "torch.save": buffer.getvalue()}


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    minidl.save_model(minidl.build("linear(3), relu, linear(1)", (2,)), tmp_path / "m")
    return tmp_path / "m"


@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_a_pickle_posing_as_the_weights_is_never_run(saved: Path, kind: str) -> None:
    marker = saved.parent / "pwned"
    (saved / "model.safetensors").write_bytes(payloads(marker)[kind])
    with pytest.raises(ModelFileError, match="model.safetensors: not a valid safetensors file"):
        minidl.load_model(saved)
    assert not marker.exists()


def test_pickles_under_other_plausible_names_are_never_opened(saved: Path) -> None:
    marker = saved.parent / "pwned"
    for i, name in enumerate(
        ["model.pt", "model.pth", "model.bin", "pytorch_model.bin", "model.pkl"]
    ):
        (saved / name).write_bytes(payloads(marker)["pickle" if i % 2 else "torch.save"])
    model, _ = minidl.load_model(saved)  # the real model still loads
    assert model.forward(torch.zeros(1, 2)).shape == (1, 1)
    assert not marker.exists()


def test_code_in_the_architecture_is_a_name_never_evaluated(saved: Path) -> None:
    marker = saved.parent / "pwned"
    path = saved / "model.json"
    document = json.loads(path.read_text())
    document["layers"][0]["name"] = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    document["layers"][0]["args"] = [{"__reduce__": "os.system"}]
    path.write_text(json.dumps(document))
    with pytest.raises(ModelFileError, match="is not registered"):
        minidl.load_model(saved)
    document["layers"][0]["name"] = "linear"
    path.write_text(json.dumps(document))
    with pytest.raises(ModelFileError, match="cannot make layer linear"):
        minidl.load_model(saved)
    assert not marker.exists()


def test_io_module_uses_no_code_loading_deserializer() -> None:
    tree = ast.parse(Path(minidl.io.__file__).read_text())
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "safetensors.torch" in modules  # the scan sees the real imports
    assert not {"pickle", "marshal", "shelve", "dill"} & modules
    calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert "json.loads" in calls
    assert not {"torch.load", "eval", "exec", "__import__", "importlib.import_module"} & calls


# ---------------------------------------------------------------------------- malformed files


def edit(saved: Path, **changes: object) -> None:
    path = saved / "model.json"
    document = json.loads(path.read_text())
    document.update(changes)
    path.write_text(json.dumps(document))


def truncate_weights(saved: Path, cut: int) -> None:
    weights = saved / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:cut])


ARCHITECTURE_CASES: dict[str, tuple[Callable[[Path], object], str]] = {
    "not JSON": (lambda d: (d / "model.json").write_text("{not json"), "model.json: not valid JSON"),
    "half JSON": (lambda d: (d / "model.json").write_text((d / "model.json").read_text()[:50]), "model.json: not valid JSON"),
    "binary": (lambda d: (d / "model.json").write_bytes(bytes(range(256))), "model.json: not valid JSON"),
    "deeply nested": (lambda d: (d / "model.json").write_text("[" * 100_000 + "]" * 100_000), "model.json: not valid JSON"),
    "a list": (lambda d: (d / "model.json").write_text("[1, 2, 3]"), "model.json: not a minidl-model file"),
    "wrong format": (lambda d: edit(d, format="keras"), "model.json: not a minidl-model file"),
    "version 1": (lambda d: edit(d, version=1), "model.json: format version 1; this minidl reads versions 2 and 3"),
    "version 99": (lambda d: edit(d, version=99), "format version 99"),
    "layers not a list": (lambda d: edit(d, layers="linear"), "model.json: 'layers' must be a list of {name, args, kwargs} objects"),
    "layer name not a string": (lambda d: edit(d, layers=[{"name": 5}]), "'layers' must be a list"),
    "args not a list": (lambda d: edit(d, layers=[{"name": "relu", "args": 5}]), "'layers' must be a list"),
    "unknown layer": (lambda d: edit(d, layers=[{"name": "conv9d"}]), "layer 'conv9d' is not registered"),
    "bad arguments": (lambda d: edit(d, layers=[{"name": "linear", "args": [2, -3]}]), "cannot make layer linear(2, -3)"),
    "huge layer": (lambda d: edit(d, layers=[{"name": "linear", "args": [2, 10**13]}]), "cannot make layer linear(2, 10000000000000)"),
    "unknown dtype": (lambda d: edit(d, dtype="float128"), "unknown dtype 'float128'"),
    "not a float dtype": (lambda d: edit(d, dtype="int64"), "unknown dtype 'int64'"),
    "a dtype that is a function": (lambda d: edit(d, dtype="load"), "unknown dtype 'load'"),
    "fewer layers than tensors": (lambda d: edit(d, layers=[{"name": "linear", "args": [2, 3]}]), "model.safetensors: state_dict does not fit Sequential: missing keys [], unexpected keys ['2."),
    "wrong shapes": (lambda d: edit(d, layers=[{"name": "linear", "args": [2, 4]}, {"name": "relu"}, {"name": "linear", "args": [4, 1]}]), "model.safetensors: state_dict key '0.weight' has shape (3, 2), the module's (4, 2)"),
    "no model.json": (lambda d: (d / "model.json").unlink(), "not a saved model (no model.json)"),
    "model.json a folder": (lambda d: ((d / "model.json").unlink(), (d / "model.json").mkdir()), "not a saved model (no model.json)"),
    "too large": (lambda d: os.truncate(d / "model.json", 16 * 2**20 + 1), "model.json: too large for a model architecture"),
    "no weights": (lambda d: (d / "model.safetensors").unlink(), "no model.safetensors"),
    "weights a folder": (lambda d: ((d / "model.safetensors").unlink(), (d / "model.safetensors").mkdir()), "model.safetensors: not a valid safetensors file"),
    "empty weights": (lambda d: truncate_weights(d, 0), "model.safetensors: not a valid safetensors file"),
    "8 bytes of weights": (lambda d: truncate_weights(d, 8), "model.safetensors: not a valid safetensors file"),
    "half the weights": (lambda d: truncate_weights(d, 100), "model.safetensors: not a valid safetensors file"),
    "all but a byte": (lambda d: truncate_weights(d, len((d / "model.safetensors").read_bytes()) - 1), "model.safetensors: not a valid safetensors file"),
    "random bytes": (lambda d: (d / "model.safetensors").write_bytes(random.Random(7).randbytes(5000)), "model.safetensors: not a valid safetensors file"),
    "lying header": (lambda d: (d / "model.safetensors").write_bytes((2**60).to_bytes(8, "little") + b"{}"), "model.safetensors: not a valid safetensors file"),
}  # fmt: skip


@pytest.mark.parametrize("case", ARCHITECTURE_CASES)
def test_every_malformed_file_is_a_model_file_error_naming_it(saved: Path, case: str) -> None:
    damage, message = ARCHITECTURE_CASES[case]
    damage(saved)
    with pytest.raises(ModelFileError) as info:
        minidl.load_model(saved)
    text = str(info.value)
    assert text.startswith(str(saved)), text
    assert message in text, text
    assert info.value.exit_code == 2


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=f"{tmp_path / 'nothing'}: no such directory"):
        minidl.load_model(tmp_path / "nothing")
    with pytest.raises(ModelFileError, match=r"not a saved model \(no model.json\)"):
        minidl.load_model(tmp_path)
