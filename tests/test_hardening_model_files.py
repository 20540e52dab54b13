"""Model files from strangers: truncated, random, a pickle crafted to run code, a layer no
installed plugin provides. `minidl-run predict` (and `train --resume`) answer each with one
line, exit code 2, and never execute anything from the files."""

from __future__ import annotations

import io
import json
import pickle
import random
from pathlib import Path

import pytest
import torch
from test_hardening_common import (  # noqa: F401
    FAST,
    error_line,
    fresh_registry,
    invoke,
    reset_process,
    write_plugin,
)

pytestmark = pytest.mark.usefixtures("fresh_registry")

#: names under which model weights are commonly shipped (and pickles hidden)
PLAUSIBLE = [
    "model.pt",
    "model.pth",
    "model.bin",
    "model.pkl",
    "pytorch_model.bin",
    "weights.pt",
    "checkpoint.pt",
    "checkpoint.pth",
]


class Payload:
    """Unpickling this calls Path.touch(marker): proof that the file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def payloads(marker: Path) -> dict[str, bytes]:
    plain = pickle.dumps({"0.0": Payload(marker)})
    buffer = io.BytesIO()
    torch.save({"0.0": Payload(marker)}, buffer)  # torch's zip-of-pickles format
    return {"pickle": plain, "torch.save": buffer.getvalue()}


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    invoke("train", *FAST, "--out", str(tmp_path / "m"))
    return tmp_path / "m"


def predict(directory: Path, code: int = 2) -> str:
    result = invoke("predict", str(directory), "0.5", "0.5", code=code)
    return error_line(result) if code else result.stdout


def test_truncated_weights(model_dir: Path) -> None:
    weights = model_dir / "model.safetensors"
    whole = weights.read_bytes()
    for cut in (0, 4, 8, 40, len(whole) // 2, len(whole) - 1):
        weights.write_bytes(whole[:cut])
        line = predict(model_dir)
        assert f"{weights}: not a valid safetensors file" in line, (cut, line)
    weights.write_bytes(whole)
    assert "label" in predict(model_dir, code=0)


def test_random_bytes_and_lying_headers(model_dir: Path) -> None:
    weights = model_dir / "model.safetensors"
    rng = random.Random(7)
    for size in (1, 100, 5000):
        weights.write_bytes(bytes(rng.randrange(256) for _ in range(size)))
        assert "not a valid safetensors file" in predict(model_dir)
    # A header claiming to be 2**60 bytes long: refused, not allocated.
    weights.write_bytes((2**60).to_bytes(8, "little") + b"{}")
    assert "not a valid safetensors file" in predict(model_dir)


def test_truncated_or_random_architecture(model_dir: Path) -> None:
    architecture = model_dir / "model.json"
    text = architecture.read_text()
    architecture.write_text(text[: len(text) // 2])
    assert "model.json: not valid JSON" in predict(model_dir)
    architecture.write_bytes(bytes(range(256)))
    assert "model.json: not valid JSON" in predict(model_dir)
    architecture.write_text("[1, 2, 3]")
    assert "not a minidl-model file" in predict(model_dir)
    architecture.unlink()
    assert "not a saved model (no model.json)" in predict(model_dir)


@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_a_pickle_posing_as_the_weights_is_never_run(model_dir: Path, kind: str) -> None:
    marker = model_dir.parent / "pwned"
    (model_dir / "model.safetensors").write_bytes(payloads(marker)[kind])
    assert "model.safetensors: not a valid safetensors file" in predict(model_dir)
    assert not marker.exists()


def test_pickles_under_other_plausible_names_are_never_opened(model_dir: Path) -> None:
    marker = model_dir.parent / "pwned"
    for i, name in enumerate(PLAUSIBLE):
        data = payloads(marker)["pickle" if i % 2 else "torch.save"]
        (model_dir / name).write_bytes(data)
    assert "label" in predict(model_dir, code=0)  # the real model still loads
    assert not marker.exists()


def test_a_pickle_posing_as_a_checkpoint_is_never_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    marker = tmp_path / "pwned"
    (run / "checkpoint.safetensors").write_bytes(payloads(marker)["pickle"])
    result = invoke("train", *FAST, "--out", str(run), "--resume", code=2)
    error_line(result, "checkpoint.safetensors: not a valid checkpoint")
    assert not marker.exists()


def test_code_in_the_architecture_is_a_name_never_evaluated(model_dir: Path) -> None:
    marker = model_dir.parent / "pwned"
    architecture = model_dir / "model.json"
    document = json.loads(architecture.read_text())
    document["layers"][0]["name"] = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    document["layers"][0]["args"] = [{"__reduce__": "os.system"}]
    architecture.write_text(json.dumps(document))
    assert "unknown layer" in predict(model_dir)
    assert not marker.exists()


def test_a_layer_no_loaded_plugin_provides_names_the_plugin(tmp_path: Path) -> None:
    plugin = write_plugin(tmp_path)
    model = tmp_path / "m"
    invoke("--layer-plugin", str(plugin), "train", *FAST, "--model", "linear(4), twice, linear(in_features=8, out_features=1), sigmoid", "--out", str(model))  # fmt: skip
    reset_process()  # a new process: the plugin is not loaded
    line = predict(model)
    assert "unknown layer 'twice'" in line
    assert f"it came from plugin {str(plugin)!r}" in line
    assert f"load it with --layer-plugin {plugin}" in line
    # And as the message says:
    result = invoke("--layer-plugin", str(plugin), "predict", str(model), "0.5", "0.5")
    assert "label" in result.stdout
