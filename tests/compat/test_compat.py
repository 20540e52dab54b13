"""Plugins written for each released protocol keep working: every part of
plugin_0_1.py and plugin_0_2.py goes through the command line as a user runs it: train,
``--out`` (saved, then loaded by ``minidl.load_model`` and ``predict``), an interrupted run
resumed with ``--resume``, ``sweep``, ``train --nproc 2``, the plugin's own command and
``plugins``. Checkpoints written by minidl 0.2 (data/, made by data/make_0_2_checkpoints.py)
resume with this minidl to the result its own uninterrupted run has.

These tests must keep passing in every later release: a change that breaks one breaks
the plugins of that release, and CHANGELOG.md must say so under "Removed" or "Changed".
Each reference is this minidl's own run of the same settings (one process, uninterrupted),
so the tests hold whatever arithmetic a later release does.
"""

from __future__ import annotations

import filecmp
import json
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from foreground import not_ignoring_sigint
from safetensors.torch import load_file
from test_cli_distributed import assert_same_history, environment, finish
from test_cli_errors import error_line, fresh_cli  # noqa: F401 (a fixture, used below)

import minidl
from minidl.cli import TrainConfig, main, run
from minidl.cli import plots as cli_plots
from minidl.cli.checkpoint import CHECKPOINT, load_checkpoint

HERE = Path(__file__).resolve().parent
INTERRUPT = HERE / "interrupt.py"
STOP = "MINIDL_COMPAT_SIGINT_BEFORE_EPOCH"
BIN = Path(sys.executable).parent
RESULTS = ("history.csv", "model.safetensors", "model.json", "metrics.json", "misclassified.csv")

#: Per release: its plugin file, and a run of its layers, loss, dataset and an optimizer
#: that can resume and train data-parallel (a FlatOptimizer).
PLUGINS = {
    "0.1": (
        HERE / "plugin_0_1.py",
        {
            "model": "linear(8), scale, tanh, linear(1), sigmoid",
            "loss": "l1",
            "dataset": "diagonal",
            "optimizer": "heavy_ball(momentum=0.5)",
            "lr": "0.1",
        },
    ),
    "0.2": (
        HERE / "plugin_0_2.py",
        {
            "model": "linear(8), ramp(warmup=6), leaky(0.05), linear(1), sigmoid",
            "loss": "log_loss",
            "dataset": "blobs(spread=0.2)",
            "optimizer": "momentum(momentum=0.8)",
            "lr": "0.2",
        },
    ),
}
#: 80 points in batches of 20: every rank of --nproc 2 gets 10 rows of every batch.
SIZES = {"n_train": "80", "n_test": "40", "batch_size": "20", "dtype": "float64"}
VERSIONS = sorted(PLUGINS)


def options(settings: dict[str, str], **more: str) -> list[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in {**settings, **SIZES, **more}.items()]


@pytest.fixture(autouse=True)
def setting(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh registry and command group, as a new minidl-run process has; no plots (they
    take time and are not what is compared); no interruption unless a test asks."""
    request.getfixturevalue("fresh_cli")
    monkeypatch.setattr(cli_plots, "available", lambda: False)
    monkeypatch.delenv(STOP, raising=False)


@pytest.mark.parametrize("version", VERSIONS)
def test_train_save_load_predict(version: str, tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    plugin, settings = PLUGINS[version]
    out = tmp_path / "run"
    invoke("-p", str(plugin), "train", *options(settings, epochs="3"), "--out", str(out), "--no-diagnostics")  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())

    # Loaded in Python (which moves it to the file's dtype through the layers' own to()),
    # the model has the run's test loss and accuracy on the run's test set.
    minidl.registry.load(str(plugin))
    model, _ = minidl.load_model(out)
    _, test = minidl.create("dataset", settings["dataset"], seed=0, n_train=80, n_test=40)
    loss, accuracy = minidl.evaluate(
        model, minidl.create("loss", settings["loss"]), test.to(dtype=torch.float64)
    )
    assert loss == pytest.approx(metrics["test_loss"], rel=1e-12)
    assert accuracy == pytest.approx(metrics["test_accuracy"], rel=1e-12)

    # predict reads the same files.
    x = test.x[:3].to(torch.float64)
    numbers = [f"{v!r}" for v in x.flatten().tolist()]
    result = invoke("-p", str(plugin), "predict", str(out), *numbers, "--json")
    predicted = [p["output"] for p in json.loads(result.stdout)["predictions"]]
    assert torch.tensor(predicted, dtype=torch.float64).equal(minidl.predict(model, x))


@pytest.mark.parametrize(
    ("version", "optimizer"),
    [("0.1", None), ("0.2", None), ("0.2", "rmsprop")],
    ids=["0.1-flat-optimizer-own-state", "0.2-flat-optimizer", "0.2-optimizer-own-state"],
)
def test_interrupted_then_resumed_equals_uninterrupted(
    version: str,
    optimizer: str | None,
    tmp_path: Path,
    invoke,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A real SIGINT to this process before epoch 3 of 4, answered by the handler the
    ``minidl-run`` script installs (``minidl.cli.main`` is that script); then the command
    the message names, which ends where an uninterrupted run does, file for file."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    plugin, settings = PLUGINS[version]
    if optimizer:
        settings = {**settings, "optimizer": optimizer, "lr": "0.02"}
    args = ["-p", str(plugin), "-p", str(INTERRUPT), "train", "--no-diagnostics"]
    args += options(settings, epochs="4", schedule="sigint_before")
    invoke(*args, "--out", str(tmp_path / "reference"))

    monkeypatch.setenv(STOP, "3")
    monkeypatch.setattr(sys, "argv", ["minidl-run", *args, "--out", str(tmp_path / "run")])
    # minidl-run's handler, which a process started ignoring SIGINT would not install.
    with not_ignoring_sigint(), pytest.raises(SystemExit) as stopped:
        main()
    err = capsys.readouterr().err
    assert stopped.value.code == 130, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("Error: interrupted by Ctrl-C (SIGINT); continue from the checkpoint with: ")  # fmt: skip
    assert (tmp_path / "run" / CHECKPOINT).exists()

    monkeypatch.delenv(STOP)
    hinted = shlex.split(line.split("continue from the checkpoint with: ", 1)[1])
    assert hinted[0] == "minidl-run" and hinted[-1] == "--resume"
    resumed = invoke(*hinted[1:])
    assert resumed.stderr.startswith(f"resuming the run in {tmp_path / 'run'} after epoch ")
    for name in RESULTS:
        same = filecmp.cmp(tmp_path / "run" / name, tmp_path / "reference" / name, shallow=False)
        assert same, name


def test_an_optimizer_without_state_trains_but_is_refused_resume(tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    plugin, settings = PLUGINS["0.1"]
    args = ["-p", str(plugin), "train", "--no-diagnostics"]
    args += options({**settings, "optimizer": "adagrad"}, epochs="1")
    with pytest.warns(UserWarning, match="optimizer Adagrad cannot save its state"):
        invoke(*args, "--out", str(tmp_path / "run"))
    assert (tmp_path / "run" / "model.safetensors").exists()
    assert not (tmp_path / "run" / CHECKPOINT).exists()
    refused = invoke(*args, "--out", str(tmp_path / "run"), "--resume", code=2)
    error_line(refused, "'--resume'", "optimizer Adagrad cannot save its state")


@pytest.mark.parametrize("version", VERSIONS)
def test_sweep_rounds_are_the_runs_train_makes(version: str, invoke) -> None:  # type: ignore[no-untyped-def]
    plugin, settings = PLUGINS[version]
    other = {"0.1": "adagrad", "0.2": "rmsprop"}[version]  # the release's other optimizer
    sweep = {**settings, "optimizer": f"{settings['optimizer']},{other}"}
    result = invoke("-p", str(plugin), "sweep", *options(sweep, epochs="2"), "--rounds", "1", "--json")  # fmt: skip
    rows = {row["optimizer"]: row for row in json.loads(result.stdout)["rows"]}
    assert set(rows) == {settings["optimizer"], other}
    for name, row in rows.items():
        trained = invoke(
            "-p", str(plugin), "train", *options({**settings, "optimizer": name}, epochs="2"), "--json"
        )  # fmt: skip
        run_ = json.loads(trained.stdout)
        assert row["accuracies"] == [run_["test_accuracy"]], name
        assert row["train_accuracies"] == [run_["train_accuracy"]], name


def test_train_nproc_2_equals_one_process(tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    """Both ranks load both plugins (given with -p) and train the layers of both releases,
    0.1's optimizer on 0.2's dataset and loss, and end where one process does. (One run for
    both: a data-parallel run costs seconds of starting processes.)"""
    settings = {
        "model": "linear(8), scale, ramp(warmup=6), leaky(0.05), linear(1), sigmoid",
        "loss": "log_loss",
        "dataset": "blobs(spread=0.2)",
        "optimizer": "heavy_ball(momentum=0.5)",
        "lr": "0.1",
    }
    args = ["-p", str(PLUGINS["0.1"][0]), "-p", str(PLUGINS["0.2"][0]), "train"]
    args += [*options(settings, epochs="2"), "--no-diagnostics", "--json"]
    single = json.loads(invoke(*args, "--out", str(tmp_path / "one")).stdout)
    process = subprocess.Popen(
        [str(BIN / "minidl-run"), *args, "--nproc", "2", "--out", str(tmp_path / "two")],
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    done = finish(process)
    assert done.returncode == 0, done.stderr
    assert_same_history(json.loads(done.stdout)["history"], single["history"])
    one, two = (load_file(tmp_path / d / "model.safetensors") for d in ("one", "two"))
    assert one.keys() == two.keys() and int(two["2.count"]) == 2 * 4  # rank 0's batches
    for key in one:
        assert torch.allclose(one[key], two[key], rtol=1e-9, atol=1e-12), key


@pytest.mark.parametrize("version", VERSIONS)
def test_the_plugin_loads_whole_with_its_command(version: str, invoke) -> None:  # type: ignore[no-untyped-def]
    plugin, settings = PLUGINS[version]
    records = json.loads(invoke("-p", str(plugin), "plugins", "--json").stdout)["plugins"]
    [record] = [r for r in records if r["name"] == str(plugin)]
    assert record["status"] == "ok" and record["error"] == ""
    assert "register_commands" in record["hooks"]
    name = {"0.1": "diagonal", "0.2": "blobs"}[version]
    train, _ = minidl.create("dataset", name, seed=0, n_train=10, n_test=1)
    shown = invoke("-p", str(plugin), f"{name}-info").stdout
    assert shown.startswith(f"{name}: {int(train.y.sum())} of 10 ")


@pytest.mark.parametrize("name", ["adam_0_2", "plugin_0_2"])
def test_a_0_2_checkpoint_resumes_to_the_uninterrupted_result(
    name: str,
    tmp_path: Path,
    invoke,  # type: ignore[no-untyped-def]
) -> None:
    """A checkpoint minidl 0.2 wrote (after epoch 1 of 4; Adam's held its scratch buffers
    too), resumed by ``train --out DIR --resume``, ends as this minidl's uninterrupted run."""
    source = HERE / "data" / f"{name}.safetensors"
    checkpoint = load_checkpoint(source)
    if name == "adam_0_2":  # the fixture is what 0.2 wrote, scratch included
        assert {"_denom", "_bias2_sqrt"} <= set(checkpoint.states["optimizer"])
    minidl.registry.load(str(PLUGINS["0.2"][0]))
    reference = run(TrainConfig(**checkpoint.config))

    (tmp_path / "run").mkdir()
    shutil.copy(source, tmp_path / "run" / CHECKPOINT)
    args = ["-p", str(PLUGINS["0.2"][0]), "train", "--out", str(tmp_path / "run"), "--resume"]
    resumed = invoke(*args, "--json")
    assert resumed.stderr.startswith(f"resuming the run in {tmp_path / 'run'} after epoch 1 of 4")
    assert json.loads(resumed.stdout)["history"] == reference.history
    weights = load_file(tmp_path / "run" / "model.safetensors")
    expected = minidl.module.state_dict(reference.model)
    assert weights.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(weights[key], value.cpu()), key


def test_the_plugins_pass_the_test_kit() -> None:
    """What their authors ran, as each release's docs said to (minidl.testing)."""
    from minidl.testing import check_dataset, check_layer, check_loss, check_optimizer

    for version in VERSIONS:
        minidl.registry.load(str(PLUGINS[version][0]))
    table = minidl.registry.table("layer")
    check_layer(lambda: table["scale"].factory(3), (5, 3))
    check_layer(lambda: table["ramp"].factory(3, warmup=1), (5, 3))  # its gain is 1 at once
    check_layer(table["leaky"].factory, (5, 3))
    for loss in ("l1", "log_loss"):
        target = torch.tensor([[0.0], [1.0], [1.0], [0.0]], dtype=torch.float64)
        prediction = torch.tensor([[0.2], [0.9], [0.4], [0.7]], dtype=torch.float64)
        check_loss(minidl.registry.get("loss", loss), (4, 1), prediction=prediction, target=target)
    check_optimizer(minidl.registry.get("optimizer", "heavy_ball"), lr=0.05, resumable=True)
    check_optimizer(minidl.registry.get("optimizer", "momentum"), lr=0.05, resumable=True)
    check_optimizer(minidl.registry.get("optimizer", "rmsprop"), lr=0.05, resumable=True)
    check_optimizer(minidl.registry.get("optimizer", "adagrad"), lr=0.5, resumable=False)
    for dataset in ("diagonal", "blobs"):
        check_dataset(minidl.registry.get("dataset", dataset))
