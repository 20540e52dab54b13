"""minidl.cli.sweep and `minidl-run sweep`: Table I's protocol, checked against separate
runs and a torch.nn twin; rows of any TrainConfig changes, model specs, worker processes."""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from click.testing import Result

import minidl
from benchmarks.twin import torch_optimizer, twin_fit
from minidl.cli import TrainConfig, run
from minidl.cli.rows import protocol_notes
from minidl.cli.sweep import (
    TABLE_I,
    RoundFailed,
    Row,
    RowResult,
    grid_rows,
    model_rows,
    round_config,
    sweep,
)
from minidl.plugins.datasets import disc_dataset

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
TINY = ["--n-train", "100", "--n-test", "50"]
MLP = "linear(8), tanh, linear(1), sigmoid"


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
        assert row.label == f"{act}-{opt}"


def test_grid_fills_missing_dimensions_from_table_i() -> None:
    rows = grid_rows(activations=["relu", "tanh"], optimizers=["sgd"], lrs=[0.1, 0.01])
    assert [(r.activation, r.optimizer, r.lr) for r in rows] == [
        ("relu", "sgd", 0.1), ("relu", "sgd", 0.01), ("tanh", "sgd", 0.1), ("tanh", "sgd", 0.01),
    ]  # fmt: skip
    assert all(r.beta1 is None and r.report_mean is None for r in rows)
    # A dimension left out takes the report's values; a row equal to Table I's keeps its numbers.
    assert grid_rows(activations=["tanh"]) == [TABLE_I[2], TABLE_I[5]]
    assert grid_rows() == [TABLE_I[i] for i in (0, 3, 1, 4, 2, 5)]
    # Betas only where the optimizer takes them.
    rows = grid_rows(activations=["relu"], optimizers=["sgd", "adam"], beta1s=[0.5, 0.8])
    assert [(r.optimizer, r.beta1, r.beta2) for r in rows] == [
        ("sgd", None, None), ("adam", 0.5, 0.999), ("adam", 0.8, 0.999),
    ]  # fmt: skip


def test_grid_takes_optimizer_specs() -> None:
    rows = grid_rows(
        activations=["tanh"],
        optimizers=["adam(betas=(0.9, 0.99))", "adam"],
        lrs=[0.01],
        beta1s=[0.5],
    )
    # A spec that sets the betas is not crossed with the beta axes.
    assert [r.changes for r in rows] == [
        {"activation": "tanh", "optimizer": "adam(betas=(0.9, 0.99))", "lr": 0.01},
        {"activation": "tanh", "optimizer": "adam", "lr": 0.01, "beta1": 0.5, "beta2": 0.999},
    ]
    assert all(r.report_mean is None for r in rows)
    assert rows[0].title == "tanh-adam(betas=(0.9, 0.99)) lr 0.01"


def test_rows_for_a_model_vary_the_optimizer_only() -> None:
    # Table I's optimizer settings, each once, without the report's numbers (another model).
    assert [(r.optimizer, r.lr, r.beta1, r.beta2) for r in model_rows()] == [
        ("sgd", 0.5, None, None), ("sgd", 0.1, None, None), ("sgd", 0.9, None, None),
        ("adam", 1e-3, 0.9, 0.999), ("adam", 0.1, 0.5, 0.999),
    ]  # fmt: skip
    assert all(r.activation is None and r.report_mean is None for r in model_rows())
    # Given learning rates, the optimizer's own betas.
    rows = grid_rows(optimizers=["sgd", "adam"], lrs=[0.1, 0.01], model=True)
    assert [r.changes for r in rows] == [
        {"optimizer": o, "lr": lr} for o in ("sgd", "adam") for lr in (0.1, 0.01)
    ]
    assert [r.label for r in rows] == ["sgd", "sgd", "adam", "adam"]
    with pytest.raises(ValueError, match="a model spec has its own activations"):
        grid_rows(activations=["relu"], model=True)
    with pytest.raises(ValueError, match="row relu-sgd lr 0.5 sets the activation"):
        sweep([TABLE_I[0]], TrainConfig(model=MLP), rounds=1)


def test_a_row_is_any_set_of_config_changes() -> None:
    base = TrainConfig(epochs=2, n_train=100, n_test=50, seed=3)
    narrow, wide = Row({"hidden": [4]}, "narrow"), Row({"hidden": [12], "batch_size": 20})
    results = sweep([narrow, wide], base, rounds=2)
    for row, result in zip((narrow, wide), results, strict=True):
        expected = [run(base.replace(**row.changes, seed=3 + r)) for r in range(2)]
        assert result.accuracies == [e.test_accuracy for e in expected]
    assert wide.label == wide.title == "hidden 12, batch_size 20"
    assert (
        narrow.title == "narrow" and TABLE_I[5].title == "tanh-adam lr 0.1, beta1 0.5, beta2 0.999"
    )
    with pytest.raises(ValueError, match="cannot change 'seed': the rounds set the seed"):
        Row({"seed": 1})
    with pytest.raises(ValueError, match="cannot change 'learning_rate': no TrainConfig field"):
        Row({"learning_rate": 1})


def test_each_round_is_a_seeded_run() -> None:
    base = TrainConfig(epochs=3, n_train=200, n_test=100, seed=4)
    [result] = sweep([TABLE_I[5]], base, rounds=3)
    # The reference: the same config, written out here, one run per round's seed.
    expected = [
        run(
            base.replace(
                activation="tanh", optimizer="adam", lr=0.1, beta1=0.5, beta2=0.999, seed=s
            )
        )
        for s in (4, 5, 6)
    ]
    assert result.accuracies == [e.test_accuracy for e in expected]
    assert result.train_accuracies == [e.train_accuracy for e in expected]
    assert len(set(result.accuracies)) > 1  # fresh data each round: not one number thrice
    assert result.mean == pytest.approx(statistics.mean(result.accuracies))
    assert result.std == pytest.approx(statistics.stdev(result.accuracies))


def test_diverged_rounds_are_reported_not_fatal() -> None:
    base = TrainConfig(model="linear(25), relu, linear(1)", epochs=5, n_train=500, n_test=100)
    [diverging, fine] = sweep(
        grid_rows(optimizers=["sgd"], lrs=[10.0, 0.01], model=True), base, rounds=2
    )
    assert diverging.diverged == [0, 1] and diverging.accuracies == []
    assert "diverged" in diverging.errors[0]
    assert diverging.as_dict()["mean"] is None and diverging.as_dict()["std"] is None
    assert fine.diverged == [] and len(fine.accuracies) == 2


def test_row_std_is_the_sample_std() -> None:
    r = RowResult(TABLE_I[0], accuracies=[0.9, 0.95, 0.97])
    assert r.std == pytest.approx(statistics.stdev([0.9, 0.95, 0.97]))
    assert RowResult(TABLE_I[0], accuracies=[0.9]).std == 0.0


def test_shorthands_go_to_the_optimizers_that_take_them(invoke: Callable[..., Result]) -> None:
    base = TrainConfig(eps=1e-6, beta1=0.8)
    assert round_config(base, TABLE_I[0], 0).eps is None  # SGD
    assert round_config(base, TABLE_I[0], 0).beta1 is None
    assert round_config(base, TABLE_I[3], 0).eps == 1e-6  # Adam
    assert round_config(base, TABLE_I[3], 0).beta1 == 0.9  # the row's own
    assert round_config(base, Row({"optimizer": "adam"}), 2).beta1 == 0.8  # the base's
    assert round_config(base, Row({"optimizer": "adam"}), 2).seed == 2
    result = invoke(
        "sweep", "--eps", "1e-6", "--rounds", "1", "--epochs", "1", "--n-train", "50", "--json"
    )
    assert len(json.loads(result.stdout)["rows"]) == 6


def test_protocol_notes_say_what_is_not_the_reports() -> None:
    assert protocol_notes(TrainConfig(), 10) == []
    assert protocol_notes(TrainConfig(n_train=1000, n_test=1000, seed=5), 10) == []
    assert protocol_notes(TrainConfig(epochs=5), 2) == [
        "5 epochs per round (the report trained 100): not comparable with its column",
        "2 rounds per row (the report's had 10): the mean and std are rougher",
    ]
    [note] = protocol_notes(TrainConfig(n_train=200, hidden=[8], batch_size=50), 10)
    assert note == (
        "unlike the report: n-train 200 (report: 1000), hidden 8 (report: 25,25,25), "
        "batch-size 50 (report: 100): not comparable with its column"
    )


# --- minidl-run sweep ----------------------------------------------------------------


def test_cli_default_is_table_i_json(invoke: Callable[..., Result]) -> None:
    result = invoke("sweep", "--rounds", "2", "--epochs", "2", *TINY, "--json")
    document = json.loads(result.stdout)
    rows = document["rows"]
    assert [(r["activation"], r["optimizer"], r["lr"], r["beta1"], r["beta2"]) for r in rows] == [
        row[:5] for row in REPORT
    ]
    for r, row in zip(rows, REPORT, strict=True):
        assert len(r["accuracies"]) == r["rounds"] == 2
        assert r["mean"] == pytest.approx(statistics.mean(r["accuracies"]))
        assert r["std"] == pytest.approx(statistics.stdev(r["accuracies"]))
        assert r["report_mean"] == pytest.approx(row[5] / 100)
        assert r["label"] == f"{row[0]}-{row[1]}"
    assert (document["rounds"], document["epochs"], document["seed"]) == (2, 2, 0)
    assert document["config"]["n_train"] == 100 and document["config"]["model"] is None
    assert document["notes"][0].startswith("2 epochs per round (the report trained 100)")


def test_cli_text_table_beside_the_report_with_notes_and_out_files(
    invoke: Callable[..., Result], tmp_path: Path
) -> None:
    result = invoke("sweep", "--rounds", "2", "--epochs", "1", *TINY, "--out", str(tmp_path))
    lines = result.stdout.splitlines()
    assert (
        lines[0]
        == "test accuracy (%) after 1 epoch, over 2 rounds per row: mean ± std (sample std)"
    )
    assert lines[1].split() == [
        "activation",
        "optimizer",
        "lr",
        "beta1",
        "beta2",
        "minidl",
        "report",
    ]
    for (act, opt, lr, *_, mean, std), line in zip(REPORT, lines[2:8], strict=True):
        assert line.split()[:3] == [act, opt, f"{lr:g}"]
        assert line.endswith(f"{mean:.2f} ± {std:.2f}")
    assert lines[8:11] == [
        "note: 1 epoch per round (the report trained 100): not comparable with its column",
        "note: 2 rounds per row (the report's had 10): the mean and std are rougher",
        "note: unlike the report: n-train 100 (report: 1000), n-test 50 (report: 1000): not "
        "comparable with its column",
    ]
    assert {p.name for p in tmp_path.iterdir()} == {
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
    assert "| minidl, 1 epochs, 2 rounds (%) | report (%) |" in markdown[0]
    assert len(markdown) >= 2 + 6 and "93.08 ± 2.93" in markdown[2]
    assert "1 epoch per round (the report trained 100): not comparable with its column." in markdown
    assert (tmp_path / "accuracy.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_grid_flags(invoke: Callable[..., Result]) -> None:
    result = invoke(
        "sweep", "--activation", "relu,tanh", "--optimizer", "sgd", "--lr", "0.1,0.01",
        "--rounds", "1", "--epochs", "1", "--n-train", "50", "--n-test", "50", "--json",
    )  # fmt: skip
    rows = json.loads(result.stdout)["rows"]
    assert [(r["activation"], r["lr"]) for r in rows] == [
        ("relu", 0.1), ("relu", 0.01), ("tanh", 0.1), ("tanh", 0.01),
    ]  # fmt: skip


def test_cli_model_loss_and_optimizer_specs_equal_separate_runs(
    invoke: Callable[..., Result],
) -> None:
    args = ["sweep", "--model", MLP, "--optimizer", "sgd,adam(betas=(0.9, 0.99))", "--lr", "0.5",
            "--rounds", "2", "--epochs", "2", *TINY, "--loss", "mse", "--seed", "7"]  # fmt: skip
    document = json.loads(invoke(*args, "--json").stdout)
    base = TrainConfig(model=MLP, epochs=2, n_train=100, n_test=50)
    for row, optimizer in zip(document["rows"], ["sgd", "adam(betas=(0.9, 0.99))"], strict=True):
        assert (row["activation"], row["optimizer"], row["lr"]) == (None, optimizer, 0.5)
        expected = [
            run(base.replace(optimizer=optimizer, lr=0.5, seed=s)).test_accuracy for s in (7, 8)
        ]
        assert row["accuracies"] == expected and row["report_mean"] is None
    assert document["config"]["model"] == MLP and document["notes"] == []
    # No report column for another model, so no notes about it; the heading says the protocol.
    lines = invoke(*args).stdout.splitlines()
    assert lines[0].startswith("test accuracy (%) after 2 epochs, over 2 rounds per row")
    assert lines[1].split() == ["optimizer", "lr", "minidl"] and len(lines) == 4


def test_cli_model_default_rows_are_table_i_optimizer_settings(
    invoke: Callable[..., Result],
) -> None:
    document = json.loads(
        invoke("sweep", "--model", MLP, "--rounds", "1", "--epochs", "1", *TINY, "--json").stdout
    )
    assert [(r["optimizer"], r["lr"]) for r in document["rows"]] == [
        ("sgd", 0.5), ("sgd", 0.1), ("sgd", 0.9), ("adam", 1e-3), ("adam", 0.1),
    ]  # fmt: skip


def write_csv(path: Path, data: minidl.Dataset) -> str:
    rows = torch.cat([data.x, data.y], 1).tolist()
    path.write_text("x,y,label\n" + "".join(f"{a},{b},{int(c)}\n" for a, b, c in rows))
    return str(path)


def test_cli_data_files_and_cross_entropy(invoke: Callable[..., Result], tmp_path: Path) -> None:
    train, test = disc_dataset(seed=3, n_train=120, n_test=60)
    args = ["--data", write_csv(tmp_path / "train.csv", train), "--test-data", write_csv(tmp_path / "test.csv", test),
            "--loss", "cross_entropy", "--model", "linear(8), tanh, linear(2)", "--epochs", "2"]  # fmt: skip
    document = json.loads(
        invoke(
            "sweep", *args, "--optimizer", "adam", "--lr", "0.01", "--rounds", "2", "--json"
        ).stdout
    )
    [row] = document["rows"]
    config = TrainConfig(
        data=args[1], test_data=args[3], loss="cross_entropy", model=args[7], epochs=2
    )
    expected = [
        run(config.replace(optimizer="adam", lr=0.01, seed=s)).test_accuracy for s in (0, 1)
    ]
    assert row["accuracies"] == expected
    # The same files each round: only the weights and the shuffling change.
    assert document["config"]["data"] == args[1]
    error = invoke("sweep", *args, "--dataset", "disc", code=2)
    assert "--dataset and --data exclude each other" in error.stderr


def test_cli_config_file_sets_rows_and_base(invoke: Callable[..., Result], tmp_path: Path) -> None:
    config = tmp_path / "sweep.toml"
    config.write_text(
        'hidden = [6]\nn-train = 100\nn_test = 50\n[sweep]\nactivation = "tanh"\n'
        'optimizer = ["sgd", "adam(eps=1e-6)"]\nlr = [0.5, 0.05]\nrounds = 2\nepochs = 2\n'
    )
    document = json.loads(invoke("sweep", "--config", str(config), "--lr", "0.3", "--json").stdout)
    assert [(r["optimizer"], r["lr"]) for r in document["rows"]] == [
        ("sgd", 0.3),
        ("adam(eps=1e-6)", 0.3),
    ]
    assert document["rounds"] == 2 and document["config"]["hidden"] == [6]
    [first] = sweep([Row({"activation": "tanh", "optimizer": "sgd", "lr": 0.3})], TrainConfig(hidden=[6], n_train=100, n_test=50, epochs=2), rounds=2)  # fmt: skip
    assert document["rows"][0]["accuracies"] == first.accuracies
    config.write_text("[sweep]\nrunds = 2\n")
    result = invoke("sweep", "--config", str(config), code=2)
    assert "unknown option 'runds'; did you mean 'rounds'?" in result.stderr


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--activation", "relu,nope"], ["'--activation'", "unknown activation 'nope'", "relu, sigmoid"]),
        (["--optimizer", "rmsprop"], ["'--optimizer'", "unknown optimizer 'rmsprop'", "adam, adamw, sgd"]),
        (["--optimizer", "adam(betas=(0.9, 0.99)"], ["'--optimizer'", "never closed"]),
        (["--lr", "0.1,x"], ["'--lr'", "'x' is not a number"]),
        (["--lr", "0"], ["'--lr'", "not a finite number > 0"]),
        (["--beta1", "1.5"], ["'--beta1'", "1.5"]),
        (["--rounds", "0"], ["'--rounds'", "0"]),
        (["--jobs", "0"], ["'--jobs'", "0"]),
        (["--model", MLP, "--activation", "relu"], ["--activation and --model exclude each other"]),
        (["--optimizer", "sgd", "--beta1", "0.5", "--eps", "-1"], ["'--eps'"]),
    ],
)  # fmt: skip
def test_cli_sweep_usage_errors(
    invoke: Callable[..., Result], args: list[str], fragments: list[str]
) -> None:
    result = invoke("sweep", *args, code=2)
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: ") and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[-1]


# --- worker processes --------------------------------------------------------------------

FRAGILE = """
import os
import torch
import minidl


class Fragile(minidl.ModuleBase):
    # The identity, except in the round seeded FRAGILE_SEED (a plugin's bug: it raises) or
    # FRAGILE_EXIT_SEED (the worker process dies outright). Not at build time (eval mode).
    def forward(self, x):
        seed = torch.initial_seed()
        if self.training and seed == int(os.environ.get("FRAGILE_SEED", "-1")):
            raise RuntimeError("fragile layer broke")
        if self.training and seed == int(os.environ.get("FRAGILE_EXIT_SEED", "-1")):
            os._exit(9)
        return x

    def backward(self, grad):
        return grad


@minidl.hookimpl
def register_layers(register):
    register("fragile", Fragile)
"""


@pytest.fixture(scope="module")
def fragile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """The plugin, loaded here (as --layer-plugin does) and named for the workers."""
    plugin = tmp_path_factory.mktemp("plugin") / "fragile_plugin.py"
    plugin.write_text(FRAGILE)
    name = minidl.registry.load(str(plugin))
    yield [str(plugin)]
    minidl.registry.unregister(name=name)


def test_jobs_give_the_same_numbers_as_one_process(fragile: list[str]) -> None:
    """Two fresh worker processes that load the plugin: the numbers of one process."""
    base = TrainConfig(
        model="linear(8), fragile, tanh, linear(1), sigmoid", epochs=2, n_train=100, n_test=50
    )
    rows = grid_rows(optimizers=["sgd", "adam(eps=1e-6)"], lrs=[0.3], model=True)
    one = sweep(rows, base, rounds=2)
    two = sweep(rows, base, rounds=2, jobs=2)  # the workers load what this process did
    assert fragile[0] in minidl.cli.workers.loaded_plugins()
    assert [r.as_dict() for r in one] == [r.as_dict() for r in two]
    assert len({a for r in one for a in r.accuracies}) > 1


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failing_round_stops_the_sweep_naming_it(
    fragile: list[str], monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    monkeypatch.setenv("FRAGILE_SEED", "3")  # round 1 (seed 2 + 1) breaks
    base = TrainConfig(
        model="linear(4), fragile, linear(1), sigmoid", epochs=2, n_train=100, n_test=50, seed=2
    )
    with pytest.raises(RoundFailed) as caught:
        sweep([Row({"optimizer": "sgd", "lr": 0.1})], base, rounds=3, jobs=jobs, plugins=fragile)
    message = caught.value.message
    assert caught.value.exit_code == 1 and "\n" not in message
    assert message.startswith("round 1 of row sgd lr 0.1 (seed 3) failed: ")
    assert "RuntimeError: fragile layer broke" in message and message.endswith(
        "; stopped the sweep"
    )


def test_a_worker_that_dies_is_named(fragile: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAGILE_EXIT_SEED", "1")
    base = TrainConfig(
        model="linear(4), fragile, linear(1), sigmoid", epochs=2, n_train=100, n_test=50
    )
    with pytest.raises(
        RoundFailed, match=r"a sweep worker process died \(process \d+, exit code 9\)"
    ):
        sweep([Row({"optimizer": "sgd"})], base, rounds=2, jobs=2, plugins=fragile)


# --- agreement with the torch.nn twin ----------------------------------------------------

_ACTIVATIONS = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh}


def twin_round(
    activation: str, optimizer: str, lr: float, betas: tuple | None, seed: int, epochs: int
) -> float:
    """The report's protocol in torch.nn + autograd + torch.optim (float64), built
    independently of minidl's sweep: the round's data and torch.nn's own initialisation
    from the round's seed."""
    train, test = disc_dataset(seed=seed, n_train=1000, n_test=1000)
    torch.manual_seed(seed)
    act = _ACTIVATIONS[activation]
    net = torch.nn.Sequential(
        torch.nn.Linear(2, 25), act(), torch.nn.Linear(25, 25), act(),
        torch.nn.Linear(25, 25), act(), torch.nn.Linear(25, 1), torch.nn.Sigmoid(),
    ).double()  # fmt: skip
    kwargs = {"betas": betas} if betas else {}
    opt = torch_optimizer(optimizer, net.parameters(), lr=lr, **kwargs)
    history = twin_fit(net, opt, train, test, epochs=epochs, batch_size=100, seed=seed)
    return history[-1]["test_accuracy"]


def test_reduced_table_i_equals_the_torch_twin_round_by_round(
    invoke: Callable[..., Result],
) -> None:
    """Table I's protocol with fewer rounds and epochs, in float64, where minidl and the
    twin compute the same numbers to rounding: every round's test accuracy is the twin's
    (a point within rounding of the 0.5 threshold may fall either way)."""
    rounds, epochs = 2, 6
    args = ["--rounds", str(rounds), "--epochs", str(epochs), "--seed", "11", "--dtype", "float64"]
    rows = json.loads(invoke("sweep", *args, "--json").stdout)["rows"]
    for r, (act, opt, lr, b1, b2, *_) in zip(rows, REPORT, strict=True):
        betas = (b1, b2) if b1 is not None else None
        twin = [twin_round(act, opt, lr, betas, 11 + k, epochs) for k in range(rounds)]
        assert r["accuracies"] == pytest.approx(twin, abs=1.5 / 1000), (act, opt)
    # Not a vacuous check: the rows learn different things in these six epochs.
    assert len({round(r["mean"], 3) for r in rows}) > 2


PARENT_ONLY = """
import multiprocessing

import minidl

if multiprocessing.parent_process() is not None:
    raise ImportError("this plugin needs the main process")


@minidl.hookimpl
def register_layers(register):
    pass
"""


def test_a_plugin_only_the_workers_cannot_load_stops_the_sweep(
    invoke: Callable[..., Result], tmp_path: Path, plugin: Callable[..., str]
) -> None:
    """`-p FILE` loads here but not in the worker processes (``plugin``: the registry is
    reset afterwards): each round says why, and the first to fail stops the sweep in one
    line, exit code 1."""
    path = tmp_path / "parent_only.py"
    path.write_text(PARENT_ONLY)
    args = ["-p", str(path), "sweep", "--activation", "relu", "--optimizer", "sgd", "--hidden", "4",
            "--epochs", "1", "--n-train", "50", "--n-test", "20", "--rounds", "2", "--jobs", "2"]  # fmt: skip
    result = invoke(*args, code=1)
    assert result.stdout == "" and "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: round "), line
    assert f"a worker process could not load plugin {str(path)!r}: " in line
    assert "this plugin needs the main process" in line and line.endswith("; stopped the sweep")
