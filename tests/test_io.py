"""save_model / load_model: model.json (data) + model.safetensors (raw tensors), nothing else."""

from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_registry import make_plugin, registry_state
from test_sequential import Scale, register_scale

import minidl
from minidl import registry
from minidl.io import atomic_write


def trained(dtype: str = "float32", **changes: object) -> minidl.RunResult:
    return minidl.run(
        epochs=2,
        n_train=100,
        n_test=100,
        standardize=True,
        dtype=dtype,
        activation="tanh",
        **changes,
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_keeps_weights_predictions_and_metadata(tmp_path: Path, dtype: str) -> None:
    result = trained(dtype)
    metadata = {"test_accuracy": result.test_accuracy, "note": "é", "config": {"lr": 1e-3}}
    minidl.save_model(result.model, tmp_path / "m", metadata)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "model.safetensors"]

    model, meta = minidl.load_model(tmp_path / "m")
    assert meta == metadata
    assert [type(m) for m in model.layers] == [type(m) for m in result.model.layers]
    assert model.spec == result.model.spec
    for p, q in zip(model.parameters(), result.model.parameters(), strict=True):
        assert p.data.dtype == q.data.dtype == getattr(torch, dtype)
        assert torch.equal(p.data, q.data)
    x = result.test.x.to(getattr(torch, dtype))
    assert torch.equal(model(x), result.model(x))


def test_files_are_plain_data(tmp_path: Path) -> None:
    result = trained()
    minidl.save_model(result.model, tmp_path)
    architecture = json.loads((tmp_path / "model.json").read_text())
    assert architecture["format"] == "minidl-model" and architecture["version"] == 1
    assert architecture["dtype"] == "float32"
    assert [layer["name"] for layer in architecture["layers"]] == [
        "standardize", "linear", "tanh", "linear", "tanh", "linear", "tanh", "linear", "sigmoid"
    ]  # fmt: skip
    tensors = load_file(tmp_path / "model.safetensors")  # raw tensors, readable by anyone
    assert sorted(tensors) == sorted(f"{i}.{j}" for i in (1, 3, 5, 7) for j in (0, 1))
    assert torch.equal(tensors["1.0"], result.model[1].weight.data)


def test_loading_never_executes_code_from_the_files(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (Path.touch, (marker,))

    minidl.save_model(trained().model, tmp_path / "m")
    # A pickle posing as the weights: loading must refuse it, not unpickle it.
    (tmp_path / "m" / "model.safetensors").write_bytes(pickle.dumps({"1.0": Exploit()}))
    with pytest.raises(minidl.ModelFileError, match="not a valid safetensors file"):
        minidl.load_model(tmp_path / "m")
    # Python code posing as a layer name: it is looked up as a name, never evaluated.
    minidl.save_model(trained().model, tmp_path / "n")
    path = tmp_path / "n" / "model.json"
    architecture = json.loads(path.read_text())
    architecture["layers"][0]["name"] = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    path.write_text(json.dumps(architecture))
    with pytest.raises(minidl.ModelFileError, match="unknown layer"):
        minidl.load_model(tmp_path / "n")
    assert not marker.exists()


def test_io_module_uses_no_code_loading_deserializer() -> None:
    tree = ast.parse(Path(minidl.io.__file__).read_text())
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {"pickle", "marshal", "shelve", "dill"} & modules
    calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert not {"torch.load", "eval", "exec", "__import__", "importlib.import_module"} & calls


def test_third_party_layer_saves_and_names_its_plugin_when_missing(tmp_path: Path) -> None:
    with registry_state():
        registry.pm.register(make_plugin("scaling", register_layers=register_scale), name="scaling")
        model = minidl.build_model("linear(3), scale, relu, linear(1)", 2)
        model[1].w.data = torch.tensor([1.0, -2.0, 3.0])
        minidl.save_model(model, tmp_path)
        loaded, _ = minidl.load_model(tmp_path)
        assert isinstance(loaded[1], Scale) and torch.equal(loaded[1].w.data, model[1].w.data)
    with pytest.raises(minidl.ModelFileError) as info:
        minidl.load_model(tmp_path)
    assert "unknown layer 'scale'" in str(info.value)
    assert "is the plugin that provides it installed?" in str(info.value)


def _edit(path: Path, **changes: object) -> None:
    architecture = json.loads(path.read_text())
    architecture.update(changes)
    path.write_text(json.dumps(architecture))


def test_bad_model_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(minidl.ModelFileError, match="not a saved model \\(no model.json\\)"):
        minidl.load_model(tmp_path / "nothing")
    model = minidl.build_model("linear(3), relu, linear(1)", 2)
    minidl.save_model(model, tmp_path / "m")
    arch = tmp_path / "m" / "model.json"
    good = arch.read_text()

    _edit(arch, version=99)
    with pytest.raises(
        minidl.ModelFileError, match="format version 99; this minidl reads version 1"
    ):
        minidl.load_model(tmp_path / "m")
    arch.write_text("{not json")
    with pytest.raises(minidl.ModelFileError, match="not valid JSON"):
        minidl.load_model(tmp_path / "m")
    arch.write_text(good)
    _edit(
        arch,
        layers=[
            {"name": "linear", "args": [2, 4]},
            {"name": "relu"},
            {"name": "linear", "args": [4, 1]},
        ],
    )
    with pytest.raises(
        minidl.ModelFileError, match=r"tensor 0.0 has shape \(3, 2\), expected \(4, 2\)"
    ):
        minidl.load_model(tmp_path / "m")
    _edit(arch, layers=[{"name": "linear", "args": [2, 3]}])
    with pytest.raises(minidl.ModelFileError, match="holds tensors .* the architecture needs"):
        minidl.load_model(tmp_path / "m")
    _edit(arch, layers="linear")
    with pytest.raises(minidl.ModelFileError, match="'layers' must be a list"):
        minidl.load_model(tmp_path / "m")
    arch.write_text(good)
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(minidl.ModelFileError, match="no model.safetensors"):
        minidl.load_model(tmp_path / "m")


def test_only_models_built_from_a_spec_can_be_saved(tmp_path: Path) -> None:
    from minidl.plugins import Linear

    with pytest.raises(ValueError, match="build it with minidl.build_model"):
        minidl.save_model(minidl.Sequential(Linear(2, 1)), tmp_path)


def test_atomic_write_replaces_whole_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    atomic_write(target, "old")
    atomic_write(target, b"new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_unserializable_metadata_fails_before_touching_the_saved_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    first = minidl.build_model("linear(3), relu, linear(1)", 2)
    minidl.save_model(first, tmp_path, {"run": 1})
    second = minidl.build_model("linear(3), relu, linear(1)", 2)
    with pytest.raises(ValueError, match="metadata must be JSON data"):
        minidl.save_model(second, tmp_path, {"accuracy": torch.tensor(0.9)})
    model, metadata = minidl.load_model(tmp_path)  # still the first model, whole
    assert metadata == {"run": 1}
    assert all(
        torch.equal(p.data, q.data)
        for p, q in zip(model.parameters(), first.parameters(), strict=True)
    )
