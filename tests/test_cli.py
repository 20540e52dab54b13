"""minidl-run's group and `train`, driven with click's CliRunner."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import Result
from clitools import invoke, one_thread  # noqa: F401 (one_thread: an autouse fixture)

import minidl
from minidl.cli import output as cli_output
from minidl.cli import plots as cli_plots
from minidl.experiment import DISC_RADIUS
from minidl.plugins.datasets import disc_dataset

FAST = ["--epochs", "2", "--n-train", "200", "--n-test", "100"]


def train_json(*args: str) -> dict:
    result = invoke("train", *args, "--json")
    return json.loads(result.stdout)  # exactly one JSON document, nothing else on stdout


def assert_one_line_error(result: Result, *fragments: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        if fragment.startswith("available: "):
            # Every built-in name is listed (installed plugins may add more).
            listed = lines[0].split("available: ", 1)[1].split(", ")
            assert set(fragment.removeprefix("available: ").split(", ")) <= set(listed), lines[0]
        else:
            assert fragment in lines[0], (fragment, lines[0])


# --- the group -----------------------------------------------------------------------


def test_seed_experiment_defaults_are_the_reports() -> None:
    c = minidl.TrainConfig()
    assert (c.dataset, c.n_train, c.n_test) == ("disc", 1000, 1000)
    assert (c.hidden, c.activation, c.model) == ([25, 25, 25], "relu", None)
    assert (c.loss, c.optimizer, c.lr, c.beta1, c.beta2) == ("mse", "adam", 1e-3, None, None)
    assert (c.epochs, c.batch_size) == (100, 100)


def test_no_command_runs_the_seed_experiment() -> None:
    result = invoke()
    expected = minidl.run()
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"train accuracy {100 * expected.train_accuracy:.2f}%")
    assert f"error {100 * (1 - expected.train_accuracy):.2f}%" in lines[0]
    assert lines[1].startswith(f"test  accuracy {100 * expected.test_accuracy:.2f}%")
    assert f"error {100 * (1 - expected.test_accuracy):.2f}%" in lines[1]
    assert result.stderr == ""  # no progress bar off a terminal


def test_progress_bar_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    assert invoke("train", *FAST).stderr == ""
    monkeypatch.setattr(cli_output, "is_tty", lambda: True)
    assert "training" in invoke("train", *FAST).stderr


def test_version_and_help() -> None:
    assert minidl.__version__ in invoke("--version").stdout
    text = invoke("--help").stdout
    for command in ("train", "sweep", "predict", "plugins"):
        assert command in text
    assert "--layer-plugin" in text
    train_help = invoke("train", "--help").stdout
    for flag in (
        "--activation", "--hidden", "--model", "--loss", "--optimizer", "--lr", "--beta1",
        "--beta2", "--eps", "--epochs", "--batch-size", "--init", "--dataset", "--data",
        "--test-data", "--seed", "--device", "--dtype", "--out", "--json", "--config",
    ):  # fmt: skip
        assert flag in train_help, flag


# --- train: every flag reaches the run ----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fields"),
    [
        (
            ["--activation", "tanh", "--hidden", "10,5", "--optimizer", "sgd", "--lr", "0.3",
             "--batch-size", "50", "--init", "xavier", "--seed", "7", "--dtype", "float64"],
            {"activation": "tanh", "hidden": [10, 5], "optimizer": "sgd", "lr": 0.3,
             "batch_size": 50, "init": "xavier", "seed": 7, "dtype": "float64"},
        ),
        (
            ["--beta1", "0.5", "--beta2", "0.99", "--eps", "1e-6", "--lr", "0.01",
             "--standardize", "--schedule", "cosine", "--gain", "0.5"],
            {"beta1": 0.5, "beta2": 0.99, "eps": 1e-6, "lr": 0.01, "standardize": True,
             "schedule": "cosine", "gain": 0.5},
        ),
        (
            ["--model", "linear(8), tanh, linear(1), sigmoid", "--loss", "mse", "--device", "cpu"],
            {"model": "linear(8), tanh, linear(1), sigmoid", "loss": "mse", "device": "cpu"},
        ),
    ],
)  # fmt: skip
def test_train_flags_reach_the_run(args: list[str], fields: dict) -> None:
    document = train_json(*FAST, *args)
    for key, value in fields.items():
        assert document["config"][key] == value, key
    # The same run through the Python API gives the same numbers: every flag was used.
    expected = minidl.run(minidl.TrainConfig(**document["config"]))
    assert document["test_accuracy"] == expected.test_accuracy
    assert document["train_accuracy"] == expected.train_accuracy
    assert [h["train_loss"] for h in document["history"]] == [
        h["train_loss"] for h in expected.history
    ]


def test_train_json_document() -> None:
    document = train_json(*FAST)
    assert 0 <= document["train_accuracy"] <= 1 and 0 <= document["test_accuracy"] <= 1
    assert document["test_error"] == pytest.approx(1 - document["test_accuracy"])
    history = document["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    for record in history:
        for key in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
            assert isinstance(record[key], float)
    assert history[-1]["test_accuracy"] == document["test_accuracy"]
    assert document["config"]["epochs"] == 2


def test_show_misclassified_lists_fig3_points() -> None:
    document = train_json(*FAST, "--show-misclassified")
    wrong = document["misclassified"]
    assert len(wrong) == round(document["test_error"] * 100)
    _, test = disc_dataset(seed=0, n_train=200, n_test=100)
    for record in wrong:
        x, y = record["input"]
        assert record["distance"] == pytest.approx(math.dist((x, y), (0.5, 0.5)))
        assert record["radius"] == pytest.approx(1 / math.sqrt(2 * math.pi))
        assert record["inside"] == (record["distance"] < DISC_RADIUS)
        assert record["actual"] == int(test.y[record["index"], 0]) == int(record["inside"])
        assert record["predicted"] != record["actual"]
    text = invoke("train", *FAST, "--show-misclassified").stdout
    assert f"misclassified test points: {len(wrong)} of 100" in text
    assert "0.3989" in text  # the radius, beside each point's distance


def test_out_writes_metrics_history_model_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "run"
    document = train_json(*FAST, "--out", str(out))
    names = {p.name for p in out.iterdir()}
    assert {"metrics.json", "history.csv", "misclassified.csv", "model.json"} <= names
    assert {"model.safetensors", "loss.png", "accuracy.png", "decision_boundary.png"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    for png in ("loss.png", "accuracy.png", "decision_boundary.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] == document["test_accuracy"]
    assert metrics["config"] == document["config"]
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[-1]["test_loss"]) == pytest.approx(document["history"][-1]["test_loss"])
    with open(out / "misclassified.csv") as f:
        assert len(list(csv.DictReader(f))) == round(document["test_error"] * 100)
    # The saved model is the trained one: it scores the reported accuracy on the test set.
    model, metadata = minidl.load_model(out)
    assert metadata["config"] == document["config"]
    _, test = disc_dataset(seed=0, n_train=200, n_test=100)
    assert minidl.accuracy(model.forward(test.x), test.y) == document["test_accuracy"]


def test_out_without_matplotlib_writes_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_plots, "available", lambda: False)
    result = invoke("train", *FAST, "--out", str(tmp_path))
    assert "matplotlib is not installed" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    names = {p.name for p in tmp_path.iterdir()}
    assert "metrics.json" in names and "model.json" in names
    assert not [n for n in names if n.endswith(".png")]


def test_config_file_sets_options_and_flags_win(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text(
        'activation = "tanh"\nhidden = [6, 4]\nbatch-size = 20\nepochs = 3\n'
        "n_train = 100\nn-test = 50\n[train]\nlr = 0.02\n[sweep]\nrounds = 3\n"
    )
    document = train_json("--config", str(config), "--epochs", "2")
    c = document["config"]
    assert (c["activation"], c["hidden"], c["batch_size"], c["lr"]) == ("tanh", [6, 4], 20, 0.02)
    assert (c["n_train"], c["n_test"], c["epochs"]) == (100, 50, 2)  # the flag won
    config.write_text("epohcs = 3\n")
    result = invoke("train", "--config", str(config), code=2)
    assert_one_line_error(result, "--config", "unknown option 'epohcs'", "epochs")
    config.write_text("epochs = \n")
    assert_one_line_error(
        invoke("train", "--config", str(config), code=2), "not valid TOML", "line 1"
    )


def _write_csv(path: Path, data: minidl.Dataset, header: bool = True) -> None:
    lines = ["x,y,label"] if header else []
    lines += [
        f"{a},{b},{int(t)}" for (a, b), (t,) in zip(data.x.tolist(), data.y.tolist(), strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")


def test_train_on_csv_files(tmp_path: Path) -> None:
    train, test = disc_dataset(seed=3, n_train=150, n_test=60)
    _write_csv(tmp_path / "train.csv", train)
    _write_csv(tmp_path / "test.csv", test, header=False)
    document = train_json(
        "--data",
        str(tmp_path / "train.csv"),
        "--test-data",
        str(tmp_path / "test.csv"),
        "--epochs",
        "2",
    )
    assert (document["train_points"], document["test_points"]) == (150, 60)
    expected = minidl.run(minidl.TrainConfig(**document["config"]))
    assert document["test_accuracy"] == expected.test_accuracy
    # Without --test-data a fifth is held out.
    held = train_json("--data", str(tmp_path / "train.csv"), "--epochs", "1")
    assert (held["train_points"], held["test_points"]) == (120, 30)


def test_data_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y,label\n0.1,0.2,1\n0.3,oops,0\n")
    assert_one_line_error(invoke("train", "--data", str(bad), code=2), f"{bad}, line 3", "'oops'")
    bad.write_text("0.1,0.2,1\n0.3,0.4\n")
    assert_one_line_error(invoke("train", "--data", str(bad), code=2), "line 2", "2 columns")
    missing = tmp_path / "missing.csv"
    assert_one_line_error(
        invoke("train", "--data", str(missing), code=2), str(missing), "no such file"
    )


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--activation", "nope"], ["'--activation'", "unknown activation 'nope'", "available: relu, sigmoid, tanh"]),
        (["--activation", "linear"], ["'--activation'", "'linear' needs arguments", "available: relu, sigmoid, tanh"]),
        (["--optimizer", "adamw"], ["'--optimizer'", "unknown optimizer 'adamw'", "available: adam, sgd"]),
        (["--loss", "l1"], ["'--loss'", "unknown loss 'l1'", "available: mse"]),
        (["--init", "zeros"], ["'--init'", "unknown initializer 'zeros'", "available: default, he, xavier"]),
        (["--dataset", "spirals"], ["'--dataset'", "unknown dataset 'spirals'", "available: disc"]),
        (["--schedule", "nope"], ["'--schedule'", "unknown schedule 'nope'", "constant"]),
        (["--model", "linear(25), relux"], ["'--model'", "'linear(25), relux'", "unknown layer 'relux'", "available: linear"]),
        (["--model", "linear(25, relu"], ["'--model'", "invalid syntax", "column"]),
        (["--model", "linear(25, foo=1), relu, linear(1)"], ["'--model'", "foo"]),
        (["--hidden", "25,x"], ["'--hidden'", "'25,x'"]),
        (["--lr", "-1"], ["'--lr'", "-1"]),
        (["--beta1", "1.5"], ["'--beta1'", "1.5"]),
        (["--epochs", "0"], ["'--epochs'", "0"]),
        (["--dtype", "float16"], ["'--dtype'", "'float16'", "float32", "float64"]),
        (["--device", "banana"], ["'--device'", "'banana'"]),
        (["--optimizer", "sgd", "--beta1", "0.5"], ["optimizer 'sgd'", "--beta1"]),
        (["--data", "a.csv", "--dataset", "disc"], ["--dataset", "--data"]),
        (["--test-data", "a.csv"], ["--test-data", "--data"]),
        (["--nope"], ["--nope"]),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line_exit_2(args: list[str], fragments: list[str]) -> None:
    result = invoke("train", *FAST, *args, code=2)
    assert_one_line_error(result, *fragments)
    assert result.stdout == ""


def test_unknown_command_suggests() -> None:
    assert_one_line_error(invoke("trian", code=2), "'trian'", "train")


def test_divergence_exits_1_with_its_message() -> None:
    result = invoke(
        "train", "--epochs", "5", "--model", "linear(25), relu, linear(1)", "--optimizer", "sgd", "--lr", "10", code=1
    )  # fmt: skip
    assert_one_line_error(result, "training diverged", "lr=10")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_train_on_cuda_equals_float64_cpu_closely() -> None:
    gpu = train_json(*FAST, "--device", "cuda", "--dtype", "float64")
    cpu = train_json(*FAST, "--dtype", "float64")
    for a, b in zip(gpu["history"], cpu["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-9)
