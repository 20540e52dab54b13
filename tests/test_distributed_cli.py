"""`minidl-run train --nproc N` and under torchrun: same numbers as one process, clean failures."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from minidl import distributed

BIN = Path(sys.executable).parent
ARGS = [
    "train",
    "--epochs",
    "3",
    "--n-train",
    "201",
    "--n-test",
    "50",
    "--batch-size",
    "20",
    "--dtype",
    "float64",
    "--lr",
    "0.01",
    "--json",
]  # 201 rows: a last batch of 1, so some ranks get none


def minidl_run(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return subprocess.run(
        [str(BIN / "minidl-run"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "model.safetensors")


def assert_same_run(a: dict, b: dict, dir_a: Path, dir_b: Path) -> None:
    for x, y in zip(a["history"], b["history"], strict=True):
        for key in ("train_loss", "test_loss"):
            assert x[key] == pytest.approx(y[key], rel=1e-9)
    wa, wb = weights(dir_a), weights(dir_b)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    tmp = tmp_path_factory.mktemp("single")
    done = minidl_run(*ARGS, "--out", "one", cwd=tmp)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), tmp / "one"


@pytest.mark.parametrize("nproc", [2, 3])
def test_nproc_equals_one_process(tmp_path: Path, single: tuple[dict, Path], nproc: int) -> None:
    done = minidl_run(*ARGS, "--nproc", str(nproc), "--out", "dp", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert_same_run(
        json.loads(done.stdout), single[0], tmp_path / "dp", single[1]
    )  # one JSON document


def test_two_node_torchrun_on_loopback(tmp_path: Path, single: tuple[dict, Path]) -> None:
    port = str(distributed._free_port())
    nodes = [
        subprocess.Popen(
            [
                str(BIN / "torchrun"),
                "--nnodes",
                "2",
                "--node-rank",
                str(n),
                "--nproc-per-node",
                "1",
                "--master-addr",
                "127.0.0.1",
                "--master-port",
                port,
                "--no-python",
                str(BIN / "minidl-run"),
                *ARGS,
                "--out",
                "dp",
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in (0, 1)
    ]
    outputs = [node.communicate(timeout=120) for node in nodes]
    for node, (_, err) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, err
    assert outputs[1][0] == ""  # only rank 0 prints
    assert_same_run(json.loads(outputs[0][0]), single[0], tmp_path / "dp", single[1])


FAILING_PLUGIN = """
import os
import minidl

class Fragile:
    def forward(self, x):
        if os.environ.get("RANK") == "1":
            raise RuntimeError("this rank's layer broke")
        return x
    def backward(self, g):
        return g
    def parameters(self):
        return []

@minidl.hookimpl
def register_layers(register):
    register("fragile", Fragile)
"""


def test_a_failing_rank_ends_the_job_with_its_rank_named(tmp_path: Path) -> None:
    (tmp_path / "fragile.py").write_text(FAILING_PLUGIN)
    start = time.monotonic()
    done = minidl_run(
        "--layer-plugin",
        "fragile.py",
        *ARGS,
        "--nproc",
        "2",
        "--out",
        "dp",
        "--model",
        "fragile, linear(4), relu, linear(1), sigmoid",
        cwd=tmp_path,
    )
    assert time.monotonic() - start < 60
    assert done.returncode == 1
    assert "rank 1" in done.stderr and "this rank's layer broke" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "dp" / "model.safetensors").exists()
