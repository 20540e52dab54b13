"""`minidl-run` with no command and `minidl-run train`: every option reaches the run, the
JSON document, the files of --out, settings in spec syntax from the command line and from
--config, class-label CSV files, and the installed console script."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_cli_errors import error_line, progress_epochs

import minidl
from minidl.cli import TrainConfig, run
from minidl.cli import output as cli_output
from minidl.cli import plots as cli_plots
from minidl.cli.experiment import load_data
from minidl.cli.results import FILES
from minidl.plugins.datasets import CENTRE, RADIUS, disc_dataset

FAST = ["--epochs", "2", "--n-train", "200", "--n-test", "100"]
SEED_MODEL = "linear(25), relu, linear(25), relu, linear(25), relu, linear(1), sigmoid"


def train_json(invoke, *args: str) -> dict:  # type: ignore[no-untyped-def]
    result = invoke("train", *args, "--json")
    return json.loads(result.stdout)  # exactly one JSON document, nothing else on stdout


def same_numbers(document: dict, expected: minidl.cli.RunResult) -> None:
    assert document["train_accuracy"] == expected.train_accuracy
    assert document["test_accuracy"] == expected.test_accuracy
    assert [h["train_loss"] for h in document["history"]] == [
        h["train_loss"] for h in expected.history
    ]
    assert [h["test_loss"] for h in document["history"]] == [
        h["test_loss"] for h in expected.history
    ]


# --- the group and the seed experiment ------------------------------------------------------


def test_the_defaults_are_the_seed_reports_experiment() -> None:
    c = TrainConfig()
    assert (c.dataset, c.data, c.n_train, c.n_test, c.model) == ("disc", None, None, None, None)
    assert (c.hidden, c.activation, c.loss, c.optimizer, c.lr) == (
        [25, 25, 25],
        "relu",
        "mse",
        "adam",
        1e-3,
    )
    assert (c.beta1, c.beta2, c.eps, c.schedule, c.init) == (
        None,
        None,
        None,
        "constant",
        "default",
    )
    assert (c.epochs, c.batch_size, c.seed, c.dtype) == (100, 100, 0, "float32")
    train, _, test = load_data(c)
    assert (len(train), len(test)) == (1000, 1000)


def test_no_command_runs_the_seed_experiment(invoke) -> None:  # type: ignore[no-untyped-def]
    result = invoke()
    expected = run()
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    for line, split in zip(lines, ("train", "test"), strict=True):
        accuracy = getattr(expected, f"{split}_accuracy")
        assert line.startswith(
            f"{split:<5} accuracy {100 * accuracy:.2f}%  error {100 * (1 - accuracy):.2f}%"
        )
        assert line.endswith("(1000 points)")
    # Off a terminal, a line per epoch on stderr, not a bar.
    assert progress_epochs(result.stderr) == list(range(1, 101))
    assert invoke("train").stdout == result.stdout


def test_progress_bar_only_on_a_terminal(invoke, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    lines = invoke("train", *FAST).stderr
    assert progress_epochs(lines) == [1, 2]
    assert "test loss" in lines and "acc" in lines
    assert invoke("train", *FAST, "--quiet").stderr == ""
    every = invoke("train", *FAST[2:], "--epochs", "7", "--log-every", "3").stderr
    assert progress_epochs(every) == [3, 6, 7]  # and the last
    monkeypatch.setattr(cli_output, "is_tty", lambda: True)
    bar = invoke("train", *FAST).stderr  # (click draws the bar itself on a real terminal)
    assert "training" in bar and not progress_epochs(bar.replace("training", "").strip())


def test_version_and_help(invoke) -> None:  # type: ignore[no-untyped-def]
    assert invoke("--version").stdout == f"minidl-run, version {minidl.__version__}\n"
    text = invoke("--help").stdout
    for command in ("train", "predict", "plugins"):
        assert f"  {command} " in text, command
    assert "--layer-plugin" in text and "-p," in text
    train_help = invoke("train", "--help").stdout
    for flag in (
        "--activation", "--hidden", "--model", "--loss", "--optimizer", "--lr", "--beta1",
        "--beta2", "--eps", "--epochs", "--batch-size", "--init", "--gain", "--dataset", "--data",
        "--test-data", "--n-train", "--n-test", "--standardize", "--schedule", "--seed",
        "--device", "--dtype", "--out", "--json", "--config", "--diagnostics", "--resume",
        "--show-misclassified", "--nproc",
    ):  # fmt: skip
        assert flag in train_help, flag


# --- every option reaches the run -----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fields"),
    [
        (
            ["--activation", "tanh", "--hidden", "10,5", "--optimizer", "sgd", "--lr", "0.3",
             "--batch-size", "50", "--init", "xavier", "--seed", "7", "--dtype", "float64"],
            {"activation": "tanh", "hidden": [10, 5], "optimizer": "sgd", "lr": 0.3,
             "batch_size": 50, "init": "xavier", "seed": 7, "dtype": "float64",
             "model": "linear(10), tanh, linear(5), tanh, linear(1), sigmoid"},
        ),
        (
            ["--beta1", "0.5", "--beta2", "0.99", "--eps", "1e-6", "--lr", "0.01",
             "--standardize", "--schedule", "cosine", "--gain", "0.5"],
            {"beta1": 0.5, "beta2": 0.99, "eps": 1e-6, "lr": 0.01, "standardize": True,
             "schedule": "cosine", "gain": 0.5, "model": SEED_MODEL},
        ),
        (
            ["--model", "linear(8), tanh, linear(1), sigmoid", "--loss", "mse", "--device", "cpu"],
            {"model": "linear(8), tanh, linear(1), sigmoid", "hidden": None, "activation": None,
             "loss": "mse", "device": "cpu"},
        ),
        (
            ["--optimizer", "adam(betas=(0.5, 0.99), eps=1e-6, weight_decay=0.01)",
             "--schedule", "step(step_size=1, gamma=0.5)", "--init", "he(gain=1.0)",
             "--dataset", "disc(n_test=60)", "--lr", "0.01"],
            {"optimizer": "adam(betas=(0.5, 0.99), eps=1e-6, weight_decay=0.01)",
             "schedule": "step(step_size=1, gamma=0.5)", "init": "he(gain=1.0)",
             "dataset": "disc(n_test=60)"},
        ),
    ],
    ids=["mlp", "adam-shorthands", "model", "spec-settings"],
)  # fmt: skip
def test_options_reach_the_run(invoke, args: list[str], fields: dict) -> None:  # type: ignore[no-untyped-def]
    document = train_json(invoke, *FAST, *args)
    for key, value in fields.items():
        assert document["config"][key] == value, key
    # The same run through the Python API gives the same numbers: every option was used.
    same_numbers(document, run(TrainConfig(**document["config"])))


def test_settings_in_spec_syntax_take_effect(invoke) -> None:  # type: ignore[no-untyped-def]
    plain = train_json(invoke, *FAST, "--lr", "0.01", "--epochs", "3")
    tuned = train_json(
        invoke, *FAST, "--lr", "0.01", "--epochs", "3", "--optimizer", "adam(betas=(0.5, 0.99))",
        "--schedule", "step(step_size=2, gamma=0.5)", "--dataset", "disc(n_test=60)",
    )  # fmt: skip
    assert [h["lr"] for h in tuned["history"]] == [0.01, 0.01, 0.005]  # the schedule's settings
    assert [h["lr"] for h in plain["history"]] == [0.01, 0.01, 0.01]
    assert (tuned["test_points"], plain["test_points"]) == (60, 100)  # the dataset's
    # The optimizer's: the same run with betas given as the shorthands, not the default's.
    shorthands = train_json(
        invoke, *FAST, "--lr", "0.01", "--epochs", "3", "--beta1", "0.5", "--beta2", "0.99",
        "--schedule", "step(step_size=2, gamma=0.5)", "--dataset", "disc(n_test=60)",
    )  # fmt: skip
    assert [h["train_loss"] for h in shorthands["history"]] == [
        h["train_loss"] for h in tuned["history"]
    ]
    assert plain["history"][0]["train_loss"] != tuned["history"][0]["train_loss"]


def test_adam_shorthands_equal_the_spec_and_are_refused_for_sgd(invoke) -> None:  # type: ignore[no-untyped-def]
    shorthand = train_json(invoke, *FAST, "--beta1", "0.8", "--beta2", "0.95", "--eps", "1e-4")
    spec = train_json(invoke, *FAST, "--optimizer", "adam(betas=(0.8, 0.95), eps=1e-4)")
    assert shorthand["history"] == spec["history"]
    for flag, value, name in (
        ("--beta1", "0.5", "beta1/beta2"),
        ("--beta2", "0.9", "beta1/beta2"),
        ("--eps", "1e-6", "eps"),
    ):
        result = invoke("train", *FAST, "--optimizer", "sgd", flag, value, code=2)
        error_line(result, f"optimizer 'sgd' takes no {name}")


def test_json_is_exactly_one_document(invoke) -> None:  # type: ignore[no-untyped-def]
    result = invoke("train", *FAST, "--json")
    assert progress_epochs(result.stderr) == [1, 2]
    document = json.loads(result.stdout)  # raises on anything else on stdout
    assert set(document) == {
        "train_accuracy", "test_accuracy", "train_error", "test_error", "train_loss",
        "test_loss", "epochs", "train_points", "test_points", "config", "history",
    }  # fmt: skip
    assert document["test_error"] == pytest.approx(1 - document["test_accuracy"])
    assert (document["epochs"], document["train_points"], document["test_points"]) == (2, 200, 100)
    history = document["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    for record in history:
        for key in ("lr", "train_loss", "test_loss", "train_accuracy", "test_accuracy"):
            assert isinstance(record[key], float), key
    assert history[-1]["test_accuracy"] == document["test_accuracy"]
    assert history[-1]["train_loss"] == document["train_loss"]
    assert document["config"] == {
        **TrainConfig(epochs=2, n_train=200, n_test=100).as_dict(),
        "model": SEED_MODEL,
    }


def test_config_file_settings_of_every_factory_and_flags_win(tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "run.toml"
    config.write_text(
        'optimizer = "adam(eps=1e-6)"\nloss = "mse"\nschedule = "step(step_size=2, gamma=0.5)"\n'
        'dataset = "disc"\ninit = "xavier(gain=0.5)"\nactivation = "tanh"\nhidden = [6, 4]\n'
        "batch-size = 20\nepochs = 5\nn_train = 100\nn-test = 50\n"
        "[train]\nlr = 0.02\n[sweep]\nrounds = 3\n"
    )
    document = train_json(invoke, "--config", str(config), "--epochs", "3")
    c = document["config"]
    assert (c["optimizer"], c["loss"], c["schedule"], c["dataset"], c["init"]) == (
        "adam(eps=1e-6)", "mse", "step(step_size=2, gamma=0.5)", "disc", "xavier(gain=0.5)",
    )  # fmt: skip
    assert (c["activation"], c["hidden"], c["batch_size"], c["lr"]) == ("tanh", [6, 4], 20, 0.02)
    assert (c["n_train"], c["n_test"], c["epochs"]) == (100, 50, 3)  # the flag won
    assert [h["lr"] for h in document["history"]] == [0.02, 0.02, 0.01]
    flags = train_json(
        invoke, "--optimizer", "adam(eps=1e-6)", "--loss", "mse", "--schedule",
        "step(step_size=2, gamma=0.5)", "--dataset", "disc", "--init", "xavier(gain=0.5)",
        "--activation", "tanh", "--hidden", "6,4", "--batch-size", "20", "--epochs", "3",
        "--n-train", "100", "--n-test", "50", "--lr", "0.02",
    )  # fmt: skip
    assert flags == document


def test_a_misspelt_config_key_gets_did_you_mean(tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "run.toml"
    config.write_text("batch_sise = 20\n")
    result = invoke("train", "--config", str(config), code=2)
    error_line(
        result,
        "Invalid value for '--config'",
        "unknown option 'batch_sise'; did you mean 'batch-size'?",
    )


# --- --out ----------------------------------------------------------------------------------


def test_out_writes_every_file_whole(
    tmp_path: Path, invoke, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    document = train_json(invoke, *FAST, "--out", str(out))
    names = {p.name for p in out.iterdir()}
    assert names == set(FILES)  # diagnostics on by default with --out; 2-D inputs
    assert sorted(document["files"]) == sorted(FILES)
    for png in (n for n in FILES if n.endswith(".png")):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] == document["test_accuracy"]
    assert metrics["config"] == document["config"]
    assert metrics["minidl_version"] == minidl.__version__
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[-1]["test_loss"]) == pytest.approx(
        document["history"][-1]["test_loss"], rel=1e-15
    )
    with open(out / "misclassified.csv") as f:
        wrong = list(csv.DictReader(f))
    assert len(wrong) == metrics["misclassified"] == round(document["test_error"] * 100)
    # The saved model is the trained one: it scores the reported accuracy on the test set.
    model, metadata = minidl.load_model(out)
    assert metadata["config"] == document["config"]
    _, test = disc_dataset(seed=0, n_train=200, n_test=100)
    assert minidl.accuracy(minidl.predict(model, test.x), test.y) == document["test_accuracy"]
    # A second run into the same directory replaces its files, whole (plots aside: slow).
    monkeypatch.setattr(cli_plots, "available", lambda: False)
    again = train_json(invoke, *FAST, "--out", str(out), "--lr", "0.01")
    assert json.loads((out / "metrics.json").read_text())["config"] == again["config"]
    assert minidl.load_model(out)[1]["config"]["lr"] == 0.01
    # No temporary file left, and no plot of the earlier run's model.
    assert {p.name for p in out.iterdir()} == {n for n in FILES if not n.endswith(".png")}


def test_out_without_matplotlib_writes_the_rest_and_says_so(
    tmp_path: Path,
    invoke,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setattr(cli_plots, "available", lambda: False)
    result = invoke("train", *FAST, "--out", str(tmp_path))
    assert result.stderr.splitlines()[-1:] == [cli_plots.MISSING]
    assert progress_epochs("\n".join(result.stderr.splitlines()[:-1])) == [1, 2]
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {n for n in FILES if not n.endswith(".png")}


@pytest.mark.parametrize("given", ["--model", "--hidden"])
def test_model_and_metrics_record_the_model_actually_built(
    tmp_path: Path, invoke, given: str
) -> None:  # type: ignore[no-untyped-def]
    args = (
        ["--model", "linear(16), tanh, linear(1), sigmoid"]
        if given == "--model"
        else ["--hidden", "16", "--activation", "tanh"]
    )
    invoke("train", *FAST, *args, "--out", str(tmp_path), "--no-diagnostics")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    architecture = json.loads((tmp_path / "model.json").read_text())
    for config in (metrics["config"], architecture["metadata"]["config"]):
        assert config["model"] == "linear(16), tanh, linear(1), sigmoid"
        if given == "--model":  # they did not make the model
            assert config["hidden"] is None and config["activation"] is None
        else:
            assert config["hidden"] == [16] and config["activation"] == "tanh"
    assert [layer["name"] for layer in architecture["layers"]] == [
        "linear",
        "tanh",
        "linear",
        "sigmoid",
    ]
    assert architecture["layers"][0]["args"] == [2, 16]


def test_show_misclassified_lists_the_fig3_points(invoke) -> None:  # type: ignore[no-untyped-def]
    document = train_json(invoke, *FAST, "--show-misclassified")
    wrong = document["misclassified"]
    assert len(wrong) == round(document["test_error"] * 100)
    _, test = disc_dataset(seed=0, n_train=200, n_test=100)
    for record in wrong:
        x, y = record["input"]
        assert [x, y] == test.x[record["index"]].tolist()
        assert record["distance"] == pytest.approx(math.dist((x, y), CENTRE))
        assert record["inside"] == (record["distance"] < RADIUS)
        assert record["actual"] == int(test.y[record["index"], 0]) == int(record["inside"])
        assert record["predicted"] != record["actual"]
    text = invoke("train", *FAST, "--show-misclassified").stdout
    assert f"misclassified test examples: {len(wrong)} of 100" in text
    first = wrong[0]
    assert f"{first['distance']:.4f}" in text


# --- CSV files --------------------------------------------------------------------------------


def write_csv(path: Path, data: minidl.Dataset, header: str | None = "x,y,label") -> None:
    lines = [header] if header else []
    lines += [
        ",".join(f"{v}" for v in [*x, int(t)])
        for x, t in zip(data.x.tolist(), data.y.flatten().tolist(), strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")


def test_train_on_csv_files(tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    train, test = disc_dataset(seed=3, n_train=150, n_test=60)
    write_csv(tmp_path / "train.csv", train)
    write_csv(tmp_path / "test.csv", test, header=None)
    document = train_json(
        invoke,
        "--data",
        str(tmp_path / "train.csv"),
        "--test-data",
        str(tmp_path / "test.csv"),
        "--epochs",
        "2",
    )
    assert (document["train_points"], document["test_points"]) == (150, 60)
    same_numbers(document, run(TrainConfig(**document["config"])))
    # Without --test-data a fifth is held out, the same rows for the same seed.
    held = train_json(invoke, "--data", str(tmp_path / "train.csv"), "--epochs", "1")
    assert (held["train_points"], held["test_points"]) == (120, 30)


def three_classes(n: int, seed: int) -> minidl.Dataset:
    """Three well-separated blobs in 4-D, labels 0, 1, 2."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    centres = torch.tensor([[0.0, 0, 0, 0], [3, 3, 0, 0], [0, 3, 3, 3]])
    x = centres[labels] + 0.7 * torch.randn(n, 4, generator=g)
    return minidl.Dataset(x, labels.unsqueeze(1).float())


@pytest.fixture
def digits(tmp_path: Path) -> Path:
    path = tmp_path / "digits.csv"
    write_csv(path, three_classes(250, seed=1), header="a,b,c,d,label")
    return path


CLASSIFIER = ["--loss", "cross_entropy", "--model", "linear(32), relu, linear(10)"]


def test_a_class_label_csv_trains_a_classifier_with_no_further_option(digits: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    document = train_json(
        invoke, "--data", str(digits), *CLASSIFIER, "--lr", "0.01", "--epochs", "20"
    )
    assert (document["train_points"], document["test_points"]) == (200, 50)
    assert document["test_accuracy"] > 0.9  # chance is a third
    expected = run(
        TrainConfig(
            data=str(digits),
            loss="cross_entropy",
            model="linear(32), relu, linear(10)",
            lr=0.01,
            epochs=20,
        )
    )
    same_numbers(document, expected)
    assert expected.train.y.dtype == torch.int64 and expected.train.y.dim() == 1  # class indices
    # Without --model the network has one output per class.
    default = train_json(invoke, "--data", str(digits), "--loss", "cross_entropy", "--epochs", "1")
    assert (
        default["config"]["model"]
        == "linear(25), relu, linear(25), relu, linear(25), relu, linear(3)"
    )


def test_the_default_classifier_has_an_output_for_every_class_of_either_set(
    tmp_path: Path, invoke
) -> None:  # type: ignore[no-untyped-def]
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("0.1,0.0,0\n0.2,0.0,1\n0.3,0.1,1\n0.0,0.5,0\n")
    test.write_text("0.1,0.0,0\n0.2,0.0,3\n")  # a class the training set lacks
    document = train_json(
        invoke,
        "--data",
        str(train),
        "--test-data",
        str(test),
        "--loss",
        "cross_entropy",
        "--hidden",
        "4",
        "--epochs",
        "1",
    )
    assert document["config"]["model"] == "linear(4), relu, linear(4)"
    assert document["test_accuracy"] <= 0.5  # class 3 is never predicted right


def test_a_classifier_with_out_and_show_misclassified(digits: Path, tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    args = [
        "--data",
        str(digits),
        *CLASSIFIER,
        "--epochs",
        "2",
        "--seed",
        "4",
    ]  # still learning: some wrong
    document = train_json(invoke, *args, "--out", str(out), "--show-misclassified")
    wrong = document["misclassified"]
    assert 0 < len(wrong) == round(document["test_error"] * document["test_points"])
    assert {p.name for p in out.iterdir()} == set(FILES) - {"decision_boundary.png"}  # 4-D inputs
    with open(out / "misclassified.csv") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == [
        "index",
        "x0",
        "x1",
        "x2",
        "x3",
        *(f"output{i}" for i in range(10)),
        "predicted",
        "actual",
    ]
    _, _, test = load_data(TrainConfig(data=str(digits), loss="cross_entropy", seed=4))
    model, _ = minidl.load_model(out)
    outputs = minidl.predict(model, test.x)
    assert [int(r["index"]) for r in rows] == [w["index"] for w in wrong]
    for row in rows:
        i = int(row["index"])
        assert (
            int(row["actual"])
            == int(test.y[i])
            != int(row["predicted"])
            == int(outputs[i].argmax())
        )
        assert [float(row[f"x{j}"]) for j in range(4)] == test.x[i].tolist()
    text = invoke("train", *args, "--show-misclassified").stdout
    assert f"misclassified test examples: {len(wrong)} of {document['test_points']}" in text


# --- the installed console script -----------------------------------------------------------


def test_the_installed_console_script_trains_and_fails_cleanly(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("minidl-run")
    assert script.is_file(), f"{script} missing: install the project with pip install -e ."
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run_script(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )

    trained = run_script("train", *FAST, "--json")  # (--out would draw plots: seconds more)
    assert trained.returncode == 0, trained.stderr
    assert progress_epochs(trained.stderr) == [1, 2]  # lines, not a bar, off a terminal
    document = json.loads(trained.stdout)
    assert document["config"]["model"] == SEED_MODEL
    expected = run(TrainConfig(epochs=2, n_train=200, n_test=100)).history
    losses = [h["train_loss"] for h in document["history"]]
    assert losses == pytest.approx([h["train_loss"] for h in expected], rel=1e-6)

    bad = run_script("train", "--activation", "nope")
    assert bad.returncode == 2 and bad.stdout == ""
    assert "Traceback" not in bad.stderr
    line = bad.stderr.strip().splitlines()[-1]
    assert line.startswith(
        "Error: Invalid value for '--activation': unknown activation 'nope'. Available names: "
    )
    assert {"relu", "sigmoid", "tanh"} <= set(line.split("Available names: ")[1].split(", "))
