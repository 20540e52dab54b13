"""A plugin layer with its own parameters in data-parallel training: each rank loads the
plugin (the same --layer-plugin) and the run equals a single process on the same batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from minidl import registry
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


def test_layer_plugin_with_train_nproc(tmp_path: Path) -> None:
    """`minidl-run --layer-plugin gate.py train --nproc 2`: every rank re-runs the command
    line, --layer-plugin included (a relative path: the ranks share the cwd)."""
    (tmp_path / "gate.py").write_text(textwrap.dedent(PLUGIN))
    registry.load_plugin(str(tmp_path / "gate.py"))
    check_layer(lambda: registry.get("layer", "gate")(3), (4, 3))  # its gradients are right
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
