"""A plugin layer with its own parameters in data-parallel training: each rank loads the
plugin (registry.replay of the parent's --layer-plugin specs) and the run equals a single
process on the same global batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import minidl
from minidl import distributed, registry
from minidl.testing import check_layer

PLUGIN = """
import torch
from minidl import Parameter, hookimpl

class Gate:
    '''y = x * sigmoid(g), one trainable gate per feature; no base class.'''

    def __init__(self, in_features):
        self.g = Parameter(torch.zeros(in_features), "g")
        self.out_features = in_features

    def forward(self, x):
        self.x, self.s = x, torch.sigmoid(self.g.data)
        return x * self.s

    def backward(self, grad_output):
        self.g.grad.add_((grad_output * self.x).sum(0) * self.s * (1 - self.s))
        return grad_output * self.s

    def parameters(self):
        return [self.g]

@hookimpl
def register_layers(register):
    register("gate", Gate)
"""

WORKER = """
import json, sys
import torch
import minidl
from minidl import distributed, registry

out, specs = sys.argv[1], json.loads(sys.argv[2])
registry.replay(specs)  # what the parent process loaded with --layer-plugin
distributed.init_from_env()
config = minidl.TrainConfig(**json.loads(sys.argv[3]))
model, loss, optimizer, train, test = minidl.experiment.setup(config)
history = minidl.fit(model, loss, distributed.DataParallel(optimizer), train, test,
                     epochs=config.epochs, batch_size=config.batch_size, seed=config.seed)
if torch.distributed.get_rank() == 0:
    torch.save([p.data for p in model.parameters()], out + ".pt")
    with open(out + ".json", "w") as f:
        json.dump(history, f)
distributed.shutdown()
"""

CONFIG = {
    "model": "gate, linear(8), tanh, linear(1), sigmoid",
    "n_train": 120,
    "n_test": 40,
    "epochs": 2,
    "batch_size": 30,
    "dtype": "float64",
    "optimizer": "sgd",
    "lr": 0.5,
}


@pytest.fixture(autouse=True)
def clean() -> object:
    registry.reset()
    yield
    registry.reset()


def test_plugin_layer_in_data_parallel_training_equals_one_process(tmp_path: Path) -> None:
    plugin = tmp_path / "gate.py"
    plugin.write_text(textwrap.dedent(PLUGIN))
    registry.load_plugin(str(plugin))
    check_layer(lambda: registry.get("layer", "gate")(3), (4, 3))
    specs = list(registry.loaded_specs)
    out = tmp_path / "run"
    distributed.launch(
        [sys.executable, "-c", WORKER, str(out), json.dumps(specs), json.dumps(CONFIG)], 2
    )
    history = json.loads(out.with_suffix(".json").read_text())
    weights = torch.load(out.with_suffix(".pt"))

    expected = minidl.run(minidl.TrainConfig(**CONFIG))  # type: ignore[arg-type]
    assert type(expected.model[0]).__name__ == "Gate"
    for got, want in zip(history, expected.history, strict=True):
        for key in ("train_loss", "test_loss"):
            assert got[key] == pytest.approx(want[key], rel=1e-9)
    for w, p in zip(weights, expected.model.parameters(), strict=True):
        torch.testing.assert_close(w, p.data, rtol=1e-9, atol=1e-12)
    assert bool(weights[0].abs().min() > 0)  # the gate itself was trained


def test_layer_plugin_with_train_nproc(tmp_path: Path) -> None:
    """`minidl-run --layer-plugin gate.py train --nproc 2`: every rank re-runs the command
    line, --layer-plugin included (a relative path: the ranks share the cwd)."""
    (tmp_path / "gate.py").write_text(textwrap.dedent(PLUGIN))
    args = [
        "--layer-plugin", "gate.py", "train", "--model", CONFIG["model"], "--n-train", "120",
        "--n-test", "40", "--epochs", "2", "--batch-size", "30", "--dtype", "float64",
        "--optimizer", "sgd", "--lr", "0.5", "--json",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    runs = []
    for extra in ([], ["--nproc", "2"]):
        done = subprocess.run(
            [str(Path(sys.executable).parent / "minidl-run"), *args, *extra],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        runs.append(json.loads(done.stdout)["history"])
    for one, two in zip(*runs, strict=True):
        for key in ("train_loss", "test_loss"):
            assert two[key] == pytest.approx(one[key], rel=1e-9)
