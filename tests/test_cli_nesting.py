"""Nested models and token sequences through ``minidl-run``: ``train --model "...skip(...)"
--out`` saves the nesting and ``predict`` reads it back; a dataset of int64 ids trains a
model that starts with an ids layer, ``cross_entropy`` on ``(N, T, C)``, and ``predict``
keeps the ids integers. The layers and the dataset are tests/layers.py, loaded with ``-p``
as a user loads a one-file plugin. (Resuming is in test_resume.py, ``--nproc 2`` in
test_cli_distributed.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_cli_errors import fresh_cli  # noqa: F401 (a fixture)

import minidl
from minidl.cli import plots as cli_plots
from minidl.module import named_modules

LAYERS = str(Path(__file__).parent / "layers.py")
NESTED = "linear(8), skip(linear(8), tanh, scaled(linear(8), 0.5)), linear(1), sigmoid"
SMALL = ["--n-train", "200", "--n-test", "50", "--epochs", "2", "--dtype", "float64"]


@pytest.fixture(autouse=True)
def quiet(fresh_cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    monkeypatch.setattr(cli_plots, "available", lambda: False)  # plots take time


def test_train_out_then_predict_a_nested_model(tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    result = invoke("-p", LAYERS, "train", "--model", NESTED, *SMALL, "--out", str(out), "--json")
    metrics = json.loads(result.stdout)
    document = json.loads((out / "model.json").read_text())
    skip = document["layers"][1]
    assert [item["name"] for item in skip["args"]] == ["linear", "tanh", "scaled"]
    assert skip["args"][2]["args"][0] == {
        "name": "linear", "plugin": "minidl.layers", "args": [8, 8], "kwargs": {},
    }  # fmt: skip
    # The diagnostics name the layers the forward runs in turn; a container is one.
    history = (out / "history.csv").read_text().splitlines()[0].split(",")
    assert "grad_norm/linear1" in history and "saturation/sigmoid0" in history
    model, metadata = minidl.load_model(out)
    assert [n for n, _ in named_modules(model)][:6] == ["", "0", "1", "1.0", "1.1", "1.2"]
    assert metadata["input_dtype"] == "float32"
    train, test = minidl.create("dataset", "disc", seed=0, n_train=200, n_test=50)
    loss = minidl.create("loss", "mse")
    assert minidl.evaluate(model, loss, test) == (metrics["test_loss"], metrics["test_accuracy"])
    done = json.loads(invoke("-p", LAYERS, "predict", str(out), "0.5", "0.25", "--json").stdout)
    expected = minidl.predict(model, torch.tensor([[0.5, 0.25]]))
    assert done["predictions"][0]["output"] == expected[0].tolist()


def test_int64_ids_train_through_the_command_line(tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    """The model spec is probed with ids (else lookup would refuse the float probe), fit
    keeps them int64, cross_entropy scores each sequence, and predict passes integers."""
    out = tmp_path / "run"
    args = ["-p", LAYERS, "train", "--dataset", "tokens", "--model", "lookup(7, 7)"]
    args += ["--loss", "cross_entropy", "--optimizer", "sgd", "--lr", "20", "--epochs", "6"]
    metrics = json.loads(invoke(*args, "--out", str(out), "--json").stdout)
    assert metrics["test_accuracy"] == 1.0  # every position that counts: (id + 1) % 7
    model, metadata = minidl.load_model(out)
    assert metadata["input_dtype"] == "int64" and metadata["input_shape"] == [6]
    done = json.loads(
        invoke("-p", LAYERS, "predict", str(out), *"1 2 3 4 5 6".split(), "--json").stdout
    )
    assert done["predictions"][0]["label"] == [2, 3, 4, 5, 6, 0]
    expected = minidl.predict(model, torch.tensor([[1, 2, 3, 4, 5, 6]]))
    assert done["predictions"][0]["output"] == expected.flatten().tolist()
    result = invoke("-p", LAYERS, "predict", str(out), *"1 2 3 4 5 6.5".split(), code=2)
    assert "the model takes integer inputs (ids)" in result.stderr
