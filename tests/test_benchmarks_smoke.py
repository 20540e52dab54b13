"""The benchmark's quick mode runs end to end and reports well-formed results.

No timing is asserted: these machines are shared and noisy. Only the shape of the report and
that every time and ratio is a finite positive number.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the benchmarks package lives at the repository root
    sys.path.insert(0, str(ROOT))


def finite_positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, out


def test_quick_run_writes_json_with_every_case(quick_run: tuple[str, Path]) -> None:
    _, out = quick_run
    results = json.loads((out / "bench.json").read_text())
    assert results["quick"] is True
    assert results["machine"]["torch"] == torch.__version__
    cases = {r["case"] for r in results["steps"]}
    for optimizer in ("sgd", "adam"):
        for batch in (1, 10, 100, 1000, 10000):
            assert f"2-25-25-25-1 b={batch} {optimizer}" in cases
        assert f"2-1024-1024-1024-1 b=1000 {optimizer}" in cases
    for r in results["steps"]:
        assert set(r["step_us"]) == {"twin", "minidl", "fit", "floor"}
        assert all(finite_positive(v) for v in r["step_us"].values()), r
        assert set(r["ratios"]) == {"twin/minidl", "twin/fit", "minidl/floor", "fit/floor"}
        assert all(finite_positive(v) for v in r["ratios"].values()), r
        assert "minidl/floor" in r["targets"]
        assert r["pass"] == all(r["checks"].values())
    sweep = results["sweep"]
    assert sweep["trainings"] == 6 * sweep["rounds"]
    assert finite_positive(sweep["ratio"])
    assert all(finite_positive(s) for s in sweep["seconds"].values())
    # minidl and its twin train the same networks on the same data: comparable accuracies.
    for label, accuracy in sweep["test_accuracy"].items():
        assert abs(accuracy["minidl"] - accuracy["twin"]) < 0.05, label
    memory = results["memory"]
    assert all(finite_positive(memory[k]) for k in ("rss_early_mb", "rss_late_mb", "peak_mb"))
    assert math.isfinite(memory["growth_mb"])
    assert memory["peak_mb"] >= memory["rss_late_mb"] - 1e-6


def test_quick_run_prints_and_writes_the_table(quick_run: tuple[str, Path]) -> None:
    stdout, out = quick_run
    markdown = (out / "bench.md").read_text()
    for text in (stdout, markdown):
        assert "| case | twin µs | minidl µs | fit µs | floor µs |" in text
        assert "2-25-25-25-1 b=10000 adam" in text
        assert "Table I sweep" in text
        assert "Memory" in text
        assert "checks pass" in text
        assert "PASS" in text or "FAIL" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the skip without CUDA")
def test_cuda_device_skips_cleanly_without_cuda(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/bench.py", "--device", "cuda", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "CUDA is not available" in done.stdout
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_contenders_train_the_same_network(activation: str, optimizer: str) -> None:
    """The benchmark compares like with like: from the same weights and data, the floor
    equals minidl bit for bit and the torch twin agrees to float64 rounding."""
    import minidl
    from benchmarks.contenders import (
        Net,
        Training,
        linear_weights,
        minidl_model,
        minidl_optimizer,
        twin_model,
        twin_optimizer,
    )
    from benchmarks.floor import FusedMLP

    t = Training(Net((2, 7, 5, 1), activation), optimizer, 0.1, dtype=torch.float64)
    data = minidl.data.disc(20, torch.Generator().manual_seed(1))
    x, y = data.x.double(), data.y.double()
    model, loss = minidl_model(t), minidl.plugins.MSE()
    opt = minidl_optimizer(t, model)
    floor = FusedMLP(linear_weights(minidl_model(t)), activation, optimizer, t.lr)
    net = twin_model(t)
    twin_opt = twin_optimizer(t, net)
    for _ in range(10):
        opt.zero_grad()
        ours = loss.forward(model.forward(x), y)
        model.backward(loss.backward())
        opt.step()
        assert torch.equal(floor.step(x, y), ours)
        with torch.enable_grad():
            twin_opt.zero_grad()
            theirs = torch.nn.functional.mse_loss(net(x), y)
            theirs.backward()
            twin_opt.step()
        torch.testing.assert_close(ours, theirs.detach(), rtol=1e-12, atol=0)
    flat = torch.cat([p.data.flatten() for p in model.parameters()])
    assert torch.equal(flat, floor.data)
    twin_flat = torch.cat([p.detach().flatten() for p in net.parameters()])
    torch.testing.assert_close(flat, twin_flat, rtol=1e-12, atol=1e-14)
