"""minidl.sweep and `minidl-run sweep`: Table I's protocol, checked against a torch.nn twin."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
import torch
from clitools import invoke, one_thread  # noqa: F401 (one_thread: an autouse fixture)
from twin import make_torch_optimizer, twin_fit

import minidl
from minidl.plugins.datasets import disc_dataset
from minidl.sweep import TABLE_I, Row, RowResult, grid, round_config, sweep

# The seed report's Table I, as printed there: activation, optimizer, lr, beta1, beta2,
# accuracy mean and std (%).
REPORT = [
    ("relu", "sgd", 0.5, None, None, 93.08, 2.93),
    ("sigmoid", "sgd", 0.1, None, None, 49.62, 1.74),
    ("tanh", "sgd", 0.9, None, None, 91.32, 3.41),
    ("relu", "adam", 1e-3, 0.9, 0.999, 95.57, 1.00),
    ("sigmoid", "adam", 1e-3, 0.9, 0.999, 49.21, 1.15),
    ("tanh", "adam", 0.1, 0.5, 0.999, 49.41, 1.19),
]


def test_table_i_is_the_reports() -> None:
    assert len(TABLE_I) == len(REPORT)
    for row, (act, opt, lr, b1, b2, mean, std) in zip(TABLE_I, REPORT, strict=True):
        assert (row.activation, row.optimizer, row.lr, row.beta1, row.beta2) == (
            act,
            opt,
            lr,
            b1,
            b2,
        )
        assert row.report_mean == pytest.approx(mean / 100)
        assert row.report_std == pytest.approx(std / 100)


def test_grid_fills_missing_dimensions_from_table_i() -> None:
    rows = grid(activations=["relu", "tanh"], optimizers=["sgd"], lrs=[0.1, 0.01])
    assert [(r.activation, r.optimizer, r.lr) for r in rows] == [
        ("relu", "sgd", 0.1), ("relu", "sgd", 0.01), ("tanh", "sgd", 0.1), ("tanh", "sgd", 0.01),
    ]  # fmt: skip
    assert all(r.beta1 is None and r.report_mean is None for r in rows)
    # A dimension left out takes the report's values; a row equal to Table I's keeps its numbers.
    assert grid(activations=["tanh"]) == [TABLE_I[2], TABLE_I[5]]
    assert grid() == [TABLE_I[i] for i in (0, 3, 1, 4, 2, 5)]
    # Betas only where the optimizer takes them.
    rows = grid(activations=["relu"], optimizers=["sgd", "adam"], beta1s=[0.5, 0.8])
    assert [(r.optimizer, r.beta1, r.beta2) for r in rows] == [
        ("sgd", None, None), ("adam", 0.5, 0.999), ("adam", 0.8, 0.999),
    ]  # fmt: skip


def test_each_round_is_a_seeded_run() -> None:
    base = minidl.TrainConfig(epochs=3, n_train=200, n_test=100, seed=4)
    [result] = sweep([TABLE_I[3]], base, rounds=3)
    expected = [minidl.run(round_config(base, TABLE_I[3], r)) for r in range(3)]
    assert [c.config.seed for c in expected] == [4, 5, 6]
    assert result.accuracies == [e.test_accuracy for e in expected]
    assert result.train_accuracies == [e.train_accuracy for e in expected]
    assert result.mean == pytest.approx(statistics.mean(result.accuracies))
    assert result.std == pytest.approx(statistics.stdev(result.accuracies))


def test_diverged_rounds_are_reported_not_fatal() -> None:
    base = minidl.TrainConfig(
        model="linear(25), relu, linear(1)", epochs=5, n_train=500, n_test=100
    )
    [diverging, fine] = sweep([Row("relu", "sgd", 10.0), Row("relu", "sgd", 0.01)], base, rounds=2)
    assert diverging.diverged == [0, 1] and diverging.accuracies == []
    assert "diverged" in diverging.errors[0]
    assert diverging.as_dict()["mean"] is None
    assert fine.diverged == [] and len(fine.accuracies) == 2


def test_row_std_is_the_sample_std() -> None:
    r = RowResult(TABLE_I[0], accuracies=[0.9, 0.95, 0.97])
    assert r.std == pytest.approx(statistics.stdev([0.9, 0.95, 0.97]))
    assert RowResult(TABLE_I[0], accuracies=[0.9]).std == 0.0


def test_cli_default_is_table_i_json() -> None:
    result = invoke(
        "sweep", "--rounds", "2", "--epochs", "2", "--n-train", "100", "--n-test", "50", "--json"
    )
    rows = json.loads(result.stdout)["rows"]
    assert [(r["activation"], r["optimizer"], r["lr"], r["beta1"], r["beta2"]) for r in rows] == [
        row[:5] for row in REPORT
    ]
    for r, row in zip(rows, REPORT, strict=True):
        assert len(r["accuracies"]) == r["rounds"] == 2
        assert r["mean"] == pytest.approx(statistics.mean(r["accuracies"]))
        assert r["std"] == pytest.approx(statistics.stdev(r["accuracies"]))
        assert r["report_mean"] == pytest.approx(row[5] / 100)


def test_cli_text_table_beside_the_report_and_out_files(tmp_path: Path) -> None:
    result = invoke(
        "sweep", "--rounds", "2", "--epochs", "1", "--n-train", "100", "--n-test", "50",
        "--out", str(tmp_path),
    )  # fmt: skip
    lines = result.stdout.splitlines()
    for (act, opt, lr, *_, mean, std), line in zip(REPORT, lines[2:8], strict=True):
        assert line.split()[:3] == [act, opt, f"{lr:g}"]
        assert line.endswith(f"{mean:.2f} ± {std:.2f}")
    assert {p.name for p in tmp_path.iterdir()} >= {
        "table.csv",
        "table.md",
        "sweep.json",
        "accuracy.png",
    }
    with open(tmp_path / "table.csv") as f:
        table = list(csv.DictReader(f))
    document = json.loads((tmp_path / "sweep.json").read_text())
    assert [float(r["mean"]) for r in table] == [r["mean"] for r in document["rows"]]
    markdown = (tmp_path / "table.md").read_text().splitlines()
    assert len(markdown) == 2 + 6 and "93.08 ± 2.93" in markdown[2]
    assert (tmp_path / "accuracy.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_grid_flags() -> None:
    result = invoke(
        "sweep", "--activation", "relu,tanh", "--optimizer", "sgd", "--lr", "0.1,0.01",
        "--rounds", "1", "--epochs", "1", "--n-train", "50", "--n-test", "50", "--json",
    )  # fmt: skip
    rows = json.loads(result.stdout)["rows"]
    assert [(r["activation"], r["lr"]) for r in rows] == [
        ("relu", 0.1), ("relu", 0.01), ("tanh", 0.1), ("tanh", 0.01),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--activation", "relu,nope"], ["'--activation'", "unknown activation 'nope'", "relu, sigmoid"]),
        (["--optimizer", "adamw"], ["'--optimizer'", "unknown optimizer 'adamw'", "adam, sgd"]),
        (["--lr", "0.1,x"], ["'--lr'", "'0.1,x'"]),
        (["--lr", "0"], ["'--lr'", "0"]),
        (["--beta1", "1.5"], ["'--beta1'", "1.5"]),
        (["--rounds", "0"], ["'--rounds'", "0"]),
        (["--jobs", "0"], ["'--jobs'", "0"]),
    ],
)  # fmt: skip
def test_cli_sweep_usage_errors(args: list[str], fragments: list[str]) -> None:
    result = invoke("sweep", *args, code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


# --- agreement with the torch.nn twin ----------------------------------------------------

_ACTIVATIONS = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh}


def twin_round(
    activation: str, optimizer: str, lr: float, betas: tuple | None, seed: int, epochs: int
) -> float:
    """The report's protocol in torch.nn + autograd + torch.optim, built independently of
    minidl's sweep: the round's data and torch.nn's own initialisation from the round's seed."""
    train, test = disc_dataset(seed=seed, n_train=1000, n_test=1000)
    torch.manual_seed(seed)
    act = _ACTIVATIONS[activation]
    net = torch.nn.Sequential(
        torch.nn.Linear(2, 25), act(), torch.nn.Linear(25, 25), act(),
        torch.nn.Linear(25, 25), act(), torch.nn.Linear(25, 1), torch.nn.Sigmoid(),
    )  # fmt: skip
    kwargs = {"betas": betas} if betas else {}
    opt = make_torch_optimizer(optimizer, net.parameters(), lr=lr, **kwargs)
    history = twin_fit(net, opt, train, test, epochs=epochs, batch_size=100, seed=seed)
    return history[-1]["test_accuracy"]


def test_reduced_table_i_agrees_with_the_torch_twin() -> None:
    """Table I's protocol with fewer rounds and epochs: each row's mean is within the
    run-to-run spread of the twin's on the same seeds."""
    rounds, epochs = 3, 15
    result = invoke(
        "sweep", "--rounds", str(rounds), "--epochs", str(epochs), "--seed", "11", "--json"
    )
    rows = json.loads(result.stdout)["rows"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is fastest, and spares a busy machine
    try:
        for r, (act, opt, lr, b1, b2, *_) in zip(rows, REPORT, strict=True):
            betas = (b1, b2) if b1 is not None else None
            twin = [twin_round(act, opt, lr, betas, 11 + k, epochs) for k in range(rounds)]
            # Float32 rounding sends a chaotic run (a high learning rate) its own way now and
            # then, so the two means may differ by about one run-to-run standard deviation.
            spread = statistics.stdev(twin + r["accuracies"]) + 2 / 1000
            assert abs(r["mean"] - statistics.mean(twin)) <= spread, (
                act,
                opt,
                r["accuracies"],
                twin,
            )
    finally:
        torch.set_num_threads(threads)


def test_eps_goes_to_the_optimizers_that_take_it() -> None:
    base = minidl.TrainConfig(eps=1e-6)
    assert round_config(base, TABLE_I[0], 0).eps is None  # SGD
    assert round_config(base, TABLE_I[3], 0).eps == 1e-6  # Adam
    result = invoke(
        "sweep", "--eps", "1e-6", "--rounds", "1", "--epochs", "1", "--n-train", "50", "--json"
    )
    assert len(json.loads(result.stdout)["rows"]) == 6
