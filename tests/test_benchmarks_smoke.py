"""The benchmark's quick mode runs end to end, reports every case and column, and writes
files only where it is told to; its contenders train the same network.

No timing is asserted: these machines are shared and noisy. Only the shape of the report,
that every time and ratio is a finite positive number, and that the contenders compute the
same losses and weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
from pathlib import Path

import pytest
import torch

import minidl
from benchmarks import bench, convnet, gpt
from benchmarks.contenders import (
    Net,
    Training,
    make_fit,
    make_floor,
    make_minidl,
    make_twin,
    minidl_model,
)
from minidl.cli.sweep import TABLE_I
from minidl.plugins.datasets import disc

ROOT = Path(__file__).resolve().parent.parent
MLP_CONTENDERS = {"twin", "minidl", "fit", "floor"}
VISION = convnet.unavailable() is None
#: The convnet rows of a --quick run.
CONVNET_ROWS = [bench.CONVNET] + [
    net.label(bench.QUICK_CONVNET_BATCH) for net in (convnet.MNIST, convnet.CIFAR)
]


def finite_positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def fingerprint(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` and a hash of its content."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, dict[str, str]]:
    """``python -m benchmarks.bench --quick --out DIR``, in this process (torch is
    imported already): its stdout, DIR, and what it left in benchmarks/results/ before."""
    out = tmp_path_factory.mktemp("bench")
    committed = fingerprint(bench.RESULTS)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert bench.main(["--quick", "--out", str(out)]) == 0
    return stdout.getvalue(), out, committed


def test_quick_run_reports_every_case_and_column(
    quick_run: tuple[str, Path, dict[str, str]],
) -> None:
    _, out, _ = quick_run
    results = json.loads((out / "bench.json").read_text())
    assert results["quick"] is True
    assert results["machine"]["torch"] == torch.__version__
    assert len(results["machine"]["load_before"]) == 3
    # The minidl contenders ran as a user's code does: autograd's grad mode as torch starts.
    assert results["settings"]["grad_mode"] is True
    cases = {r["case"]: r for r in results["steps"]}
    expected = [
        f"2-25-25-25-1 b={batch} {optimizer}"
        for optimizer in ("sgd", "adam")
        for batch in (1, 10, 100, 1000, 10000)
    ]
    expected += [f"{bench.QUICK_WIDE_NET.label} b=1000 {opt}" for opt in ("sgd", "adam")]
    assert [r["case"] for r in results["steps"] if r["net"] not in ("convnet", "gpt")] == expected
    if gpt.unavailable() is None:
        # gpt-nano, then the large GPT at --quick's small batch.
        gpt_rows = [gpt.NANO.label(), gpt.LARGE.label(bench.QUICK_GPT_BATCH)]
        assert [r["case"] for r in results["steps"] if r["net"] == "gpt"] == gpt_rows
        assert cases[gpt_rows[0]]["targets"] == {"twin/minidl": [">=", 1.5]}
        assert cases[gpt_rows[1]]["targets"] == {"twin/minidl": [">=", 1.0]}
        for label in gpt_rows:
            assert set(cases[label]["step_us"]) == {"twin", "minidl"}
    for label in expected:
        r = cases[label]
        assert set(r["step_us"]) == MLP_CONTENDERS, label
        assert set(r["ratios"]) == set(bench.RATIOS), label
        assert "minidl/floor" in r["targets"]
    if VISION:
        # The digits convnet, then the MNIST and CIFAR ones at --quick's small batch.
        assert [r["case"] for r in results["steps"] if r["net"] == "convnet"] == CONVNET_ROWS
        for label in CONVNET_ROWS:
            r = cases[label]
            assert set(r["step_us"]) == {"twin", "minidl", "fit"}
            assert set(r["ratios"]) == {"twin/minidl", "twin/fit"}
            assert r["targets"] == {"twin/minidl": [">=", 1.0]}
        assert [s["case"] for s in results["skipped"] if "gpt" not in s["case"]] == []
        memory = results["convnet_memory"]
        assert list(memory) == [convnet.CIFAR.label(bench.QUICK_CONVNET_BATCH)]
        for m in memory.values():
            assert finite_positive(m["twin_mb"]) and finite_positive(m["minidl_mb"])
            assert m["ratio"] == pytest.approx(m["minidl_mb"] / m["twin_mb"])
            assert m["pass"] == (m["ratio"] <= 1.0)
    else:
        assert [s["case"] for s in results["skipped"] if "gpt" not in s["case"]] == CONVNET_ROWS
        assert results["convnet_memory"] == {}
    for r in results["steps"]:
        assert all(finite_positive(v) for v in r["step_us"].values()), r
        assert all(finite_positive(v) for v in r["ratios"].values()), r
        assert r["checks"] == {k: bench.meets(r["ratios"][k], t) for k, t in r["targets"].items()}
        assert r["pass"] == all(r["checks"].values())
    sweep = results["sweep"]
    assert sweep["configurations"] == len(TABLE_I) == 6
    assert sweep["trainings"] == len(TABLE_I) * sweep["rounds"]
    assert finite_positive(sweep["ratio"])
    assert all(finite_positive(s) for s in sweep["seconds"].values())
    assert list(sweep["test_accuracy"]) == [f"{r.activation} ({r.optimizer})" for r in TABLE_I]
    # minidl and its twin train the same networks on the same data: the same accuracies.
    for label, accuracy in sweep["test_accuracy"].items():
        assert abs(accuracy["minidl"] - accuracy["twin"]) < 0.05, label
    memory = results["memory"]
    assert all(finite_positive(memory[k]) for k in ("rss_early_mb", "rss_late_mb", "peak_mb"))
    assert math.isfinite(memory["growth_mb"])
    assert memory["peak_mb"] >= memory["rss_late_mb"] - 1e-6


def test_quick_run_prints_the_table_and_writes_only_into_out(
    quick_run: tuple[str, Path, dict[str, str]],
) -> None:
    stdout, out, committed = quick_run
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "bench.md"]
    assert fingerprint(bench.RESULTS) == committed  # the committed results are untouched
    markdown = (out / "bench.md").read_text()
    for text in (stdout, markdown):
        assert "| case | twin µs | minidl µs | fit µs | floor µs |" in text
        assert "| 2-25-25-25-1 b=10000 adam |" in text
        assert f"| {bench.QUICK_WIDE_NET.label} b=1000 sgd |" in text
        assert bench.CONVNET in text
        if VISION:
            assert "| mnist convnet b=8 adam |" in text and "| cifar convnet b=8 adam |" in text
            assert "Memory of convnet training" in text
        assert "Table I sweep" in text
        assert "Memory" in text
        assert "checks pass" in text
        assert "load average" in text
        assert "PASS" in text or "FAIL" in text
    assert f"wrote {out / 'bench.json'}" in stdout


def test_without_out_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    committed = fingerprint(bench.RESULTS)
    monkeypatch.chdir(tmp_path)
    assert bench.main(["--quick", "--only", "convnet"]) == 0
    assert "not written" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())
    assert fingerprint(bench.RESULTS) == committed


def test_the_convnet_row_is_skipped_without_the_vision_plugin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if VISION:  # block the plugin that provides the layers, for this test only
        minidl.registry.block(minidl.registry.table("layer")["conv2d"].plugin)
    try:
        assert convnet.unavailable() is not None
        assert bench.main(["--quick", "--only", "convnet", "--out", str(tmp_path)]) == 0
        assert convnet.main(["--quick"]) == 0
    finally:
        if VISION:
            minidl.registry.reset()
    stdout = capsys.readouterr().out
    results = json.loads((tmp_path / "bench.json").read_text())
    assert results["steps"] == []
    assert [s["case"] for s in results["skipped"]] == CONVNET_ROWS
    reason = results["skipped"][0]["reason"]
    assert reason.startswith("skipped:") and "conv2d" in reason and "not registered" in reason
    assert f"{bench.CONVNET}: {reason}" in stdout  # under the table
    assert f"convnet: {reason}" in stdout  # python -m benchmarks.convnet
    assert "0 of 0 checks pass; 3 skipped" in stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the skip without CUDA")
def test_cuda_device_skips_cleanly_without_cuda(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(["--device", "cuda", "--out", str(tmp_path)]) == 0
    assert "CUDA is not available" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_mlp_contenders_train_the_same_network(activation: str, optimizer: str) -> None:
    """The benchmark compares like with like: from the same weights and data, the floor's
    losses and weights equal minidl's bit for bit, the torch twin's agree to float64
    rounding, and minidl.fit's weights follow too."""
    t = Training(Net((2, 7, 5, 1), activation), optimizer, 0.1, dtype=torch.float64)
    data = disc(20, torch.Generator().manual_seed(1))
    x, y = data.x.double(), data.y.double()
    contenders = {
        "minidl": make_minidl(t, x, y),
        "floor": make_floor(t, x, y),
        "twin": make_twin(t, x, y),
        "fit": make_fit(t, x, y, steps_per_epoch=1),
    }
    start = torch.cat([p.data.flatten() for p in minidl_model(t).parameters()])
    for name, c in contenders.items():
        assert torch.equal(c.weights(), start), name
    for _ in range(10):
        losses = {}
        for name, c in contenders.items():
            assert c.run(1) == 1
            losses[name] = c.last_loss()
        assert losses["fit"] is None
        assert losses["floor"] == losses["minidl"]
        assert losses["twin"] == pytest.approx(losses["minidl"], rel=1e-12)
    ours = contenders["minidl"].weights()
    assert not torch.equal(ours, start)  # they trained
    assert torch.equal(contenders["floor"].weights(), ours)
    torch.testing.assert_close(contenders["twin"].weights(), ours, rtol=1e-12, atol=1e-14)
    # fit shuffles its one batch every epoch: the same sums in another order.
    torch.testing.assert_close(contenders["fit"].weights(), ours, rtol=1e-10, atol=1e-12)


@pytest.mark.skipif(not VISION, reason="the minidl-vision plugin is not installed")
@pytest.mark.parametrize("name, batch", [("digits", 8), ("mnist", 3), ("cifar", 4)])
def test_the_convnet_contenders_train_the_same_network(name: str, batch: int) -> None:
    """In float64, from the same weights, with the same dropout masks (torch's generator
    seeded alike before each step): the twin, minidl's step and fit's step take the same
    losses, and end with the same weights; minidl.fit starts from them too and trains."""
    contenders = convnet.make_contenders(
        batch, torch.float64, fit_steps_per_epoch=1, net=convnet.NETS[name]
    )
    assert set(contenders) == {"twin", "minidl", "minidl fit step", "fit"}
    start = contenders["minidl"].weights()
    for name, c in contenders.items():
        assert torch.equal(c.weights(), start), name
    for step in range(3):
        losses = {}
        for name, c in contenders.items():
            torch.manual_seed(100 + step)
            assert c.run(1) == 1
            losses[name] = c.last_loss()
        assert losses["fit"] is None
        assert losses["minidl fit step"] == losses["minidl"]
        assert losses["twin"] == pytest.approx(losses["minidl"], rel=1e-9)
    ours = contenders["minidl"].weights()
    assert not torch.equal(ours, start)
    assert torch.equal(contenders["minidl fit step"].weights(), ours)
    torch.testing.assert_close(contenders["twin"].weights(), ours, rtol=1e-7, atol=1e-9)
    fitted = contenders["fit"].weights()
    assert bool(fitted.isfinite().all()) and not torch.equal(fitted, start)


@pytest.mark.skipif(gpt.unavailable() is not None, reason="the minidl-text plugin is not installed")
def test_the_gpt_twin_trains_the_same_network() -> None:
    """In float64, from the same weights: minidl's GPT and its torch.nn twin (an
    nn.MultiheadAttention GPT with AdamW) take the same losses for three steps and end with
    the same weights."""
    size = gpt.GPTSize("tiny", 2, 2, 8, 5, 7, 3, target=1.0, steps=1)
    contenders = gpt.make_contenders(size, dtype=torch.float64, compiled=False)
    assert set(contenders) == {"twin", "minidl"}
    start = contenders["minidl"].weights()
    assert torch.equal(contenders["twin"].weights(), start)
    for _ in range(3):
        losses = {name: (c.run(1), c.last_loss())[1] for name, c in contenders.items()}
        assert losses["twin"] == pytest.approx(losses["minidl"], rel=1e-10)
    ours = contenders["minidl"].weights()
    assert not torch.equal(ours, start)
    torch.testing.assert_close(contenders["twin"].weights(), ours, rtol=1e-8, atol=1e-10)


def test_gpt_quick_run_prints_both_sizes() -> None:
    if gpt.unavailable() is not None:
        pytest.skip("the minidl-text plugin is not installed")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert gpt.main(["--quick", "--size", "nano"]) == 0
    text = stdout.getvalue()
    assert "gpt nano step" in text and "| twin " in text and "| minidl " in text


def test_sizes_quick_prints_a_row_per_size_with_its_bound() -> None:
    from benchmarks import sizes

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert sizes.main(["--quick", "--family", "mlp", "--rounds", "1"]) == 0
    rows = [line for line in stdout.getvalue().splitlines() if line.startswith("| mlp ")]
    assert len(rows) == 2 * len(sizes.sizes("mlp", quick=True))  # as measured, then the table
    assert all("x |" in row and "overhead" in row for row in rows)


def test_the_mlp_memory_probe_trains_either_contender_and_reports_its_peak() -> None:
    """``memory_probe.py --mlp WIDTH``'s measurement, in this process on a tiny MLP (the
    numbers themselves mean something only in a fresh process)."""
    from benchmarks import memory_probe

    for contender in ("minidl", "twin"):
        result = memory_probe.mlp_step(16, contender, 8, 2)
        assert (result["mlp"], result["contender"], result["batch"]) == (16, contender, 8)
        assert result["peak_mb"] >= result["rss_start_mb"] > 0
        assert result["training_peak_mb"] == result["peak_mb"] - result["rss_start_mb"]
