"""Data-parallel training equals single-process training on the same global batches."""

import json
import sys
import time
from pathlib import Path

import pytest
import torch

import minidl
from minidl import distributed

WORKER = str(Path(__file__).with_name("dp_worker.py"))


def single_process(batch_size: int) -> tuple[list[dict], list[torch.Tensor]]:
    config = minidl.TrainConfig(
        n_train=201, n_test=50, epochs=3, batch_size=batch_size, dtype="float64", lr=0.05
    )
    model, loss, optimizer, train, test = minidl.experiment.setup(config)
    history = minidl.fit(
        model, loss, optimizer, train, test, epochs=3, batch_size=batch_size, seed=config.seed
    )
    return history, [p.data for p in model.parameters()]


@pytest.mark.parametrize("nproc", [2, 3])
def test_data_parallel_equals_single_process(tmp_path: Path, nproc: int) -> None:
    batch_size = 20  # 201 rows: the last global batch has 1 row, so some ranks get none
    distributed.launch(
        [sys.executable, WORKER, str(tmp_path / "run"), str(batch_size), "-1"], nproc
    )
    history = json.loads((tmp_path / "run.json").read_text())
    weights = torch.load(tmp_path / "run.pt")
    expected_history, expected_weights = single_process(batch_size)
    for a, b in zip(history, expected_history, strict=True):
        for key in ("train_loss", "test_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-9)
    for w, e in zip(weights, expected_weights, strict=True):
        torch.testing.assert_close(w, e, rtol=1e-9, atol=1e-12)


def test_a_failing_rank_ends_the_job(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(distributed.WorkerFailed, match="rank 1"):
        distributed.launch([sys.executable, WORKER, str(tmp_path / "run"), "20", "1"], 2)
    assert time.monotonic() - start < 30
    assert not (tmp_path / "run.json").exists()


def test_two_node_torchrun_on_loopback_equals_single_process(tmp_path: Path) -> None:
    """Two torchrun launches, node ranks 0 and 1, as two machines would run them."""
    import subprocess

    torchrun = Path(sys.executable).with_name("torchrun")
    port = str(distributed._free_port())
    nodes = [
        subprocess.Popen(
            [
                str(torchrun),
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
                WORKER,
                str(tmp_path / "run"),
                "20",
                "-1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for n in (0, 1)
    ]
    for node in nodes:
        output, _ = node.communicate(timeout=120)
        assert node.returncode == 0, output
    history = json.loads((tmp_path / "run.json").read_text())
    expected_history, expected_weights = single_process(20)
    for a, b in zip(history, expected_history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-9)
    for w, e in zip(torch.load(tmp_path / "run.pt"), expected_weights, strict=True):
        torch.testing.assert_close(w, e, rtol=1e-9, atol=1e-12)
