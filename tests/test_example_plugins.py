"""examples/minidl-extras, really installed: pip builds it from a copy of its sources and
installs it into a folder of its own, and the installed ``minidl-run`` console script finds
it there through its entry point (the folder on PYTHONPATH, as a site-packages would be).
A broken plugin installed beside it is one warning line; the example's own tests pass
against the installed package (they save and reload a model with its layer too)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from test_cli_errors import error_line

from minidl import registry
from minidl.cli import TrainConfig, run
from minidl.registry import PLUGINS_ENV

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "minidl-extras"
SCRIPT = Path(sys.executable).with_name("minidl-run")
MODEL = "linear(16), leaky_relu(0.05), linear(16), leaky_relu(slope=0.05), linear(1)"
SETTINGS = {
    "dataset": "spirals(noise=0.02)", "n_train": 300, "n_test": 200, "model": MODEL, "loss": "bce",
    "optimizer": "momentum_sgd(momentum=0.8, nesterov=True)", "lr": 0.1, "epochs": 8,
    "batch_size": 20, "seed": 2,
}  # fmt: skip
TRAIN_ARGS = [a for k, v in SETTINGS.items() for a in (f"--{k.replace('_', '-')}", str(v))]

# It installs a package with pip and runs the example's own tests (seconds), as -m slow did
# before; but it builds no virtual environment: the project's own install is the minidl.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder that pip installed minidl-extras into (from a copy: the worktree stays clean)."""
    root = tmp_path_factory.mktemp("example")
    source = root / "minidl-extras"
    shutil.copytree(
        EXAMPLE, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    )
    site = root / "site"
    out = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(source)],
        capture_output=True, text=True, timeout=300, cwd=root,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert (site / "minidl_extras" / "__init__.py").is_file()
    return site


def minidl_run(
    site: Path, *args: str, extra_path: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in (PLUGINS_ENV, "MINIDL_TRACEBACK")}
    env.update(
        OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(str(p) for p in (site, extra_path) if p)
    )
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, cwd=site.parent, env=env, timeout=120
    )


@pytest.fixture
def installed(site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This process, as if the folder were a site-packages: the entry point is found."""
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv(PLUGINS_ENV, raising=False)
    registry.reset()
    yield site
    registry.reset()
    for name in [m for m in sys.modules if m.startswith("minidl_extras")]:
        del sys.modules[name]


def test_minidl_run_lists_the_installed_plugin_and_warns_once_for_a_broken_one(
    site: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken-site"
    broken.mkdir()
    (broken / "broken_plugin.py").write_text("import not_installed_dep\n")
    info = broken / "broken_plugin-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text("[minidl]\nbroken = broken_plugin\n")

    out = minidl_run(site, "plugins", "--json", extra_path=broken)
    assert out.returncode == 0, out.stderr
    assert out.stderr == (
        'Warning: Error importing plugin "broken": ModuleNotFoundError: No module named '
        "'not_installed_dep' (broken-site/broken_plugin.py, line 1)\n"
    )
    records = {r["name"]: r for r in json.loads(out.stdout)["plugins"]}
    assert records["broken"]["status"] == "broken"
    extras = records["extras"]
    assert (extras["distribution"], extras["version"], extras["source"], extras["status"]) == (
        "minidl-extras", "0.1.0", "entry point", "ok",
    )  # fmt: skip
    assert extras["registers"] == {
        "layer": ["leaky_relu"], "loss": ["bce"], "optimizer": ["momentum_sgd"], "dataset": ["spirals"],
    }  # fmt: skip
    assert extras["hooks"] == [
        "register_commands", "register_datasets", "register_layers", "register_losses", "register_optimizers",
    ]  # fmt: skip
    assert extras["settings"]["optimizer"]["momentum_sgd"] == {
        "momentum": 0.9, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False,
    }  # fmt: skip
    assert extras["settings"]["dataset"]["spirals"] == {
        "n_train": 1000,
        "n_test": 1000,
        "turns": 1.0,
        "noise": 0.03,
    }


def test_training_with_the_plugin_through_the_console_script(site: Path, installed: Path) -> None:
    out = minidl_run(site, "train", *TRAIN_ARGS, "--json")
    assert out.returncode == 0, out.stderr
    # no plugin warned: the progress lines alone
    assert all(line.startswith("epoch ") for line in out.stderr.splitlines()), out.stderr
    document = json.loads(out.stdout)
    assert len(document["history"]) == 8
    assert document["config"]["optimizer"] == SETTINGS["optimizer"]
    # The reference: the same run in this process, the plugin found by its entry point.
    expected = run(TrainConfig(**SETTINGS))
    assert type(expected.optimizer).__module__ == "minidl_extras.optimizers"
    for got, want in zip(document["history"], expected.history, strict=True):
        for key in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
            assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-9), (got["epoch"], key)
    assert document["history"][-1]["train_loss"] < 0.8 * document["history"][0]["train_loss"]


@pytest.mark.usefixtures("installed")
def test_the_plugin_command_and_disabling_the_plugin(
    invoke, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    info = json.loads(invoke("extras-info", "--json").stdout)
    assert info == {
        "plugin": "extras", "version": "0.1.0",
        "registers": {"layer": ["leaky_relu"], "loss": ["bce"], "optimizer": ["momentum_sgd"], "dataset": ["spirals"]},
    }  # fmt: skip
    registry.reset()
    result = invoke("-p", "no:extras", "train", *TRAIN_ARGS, code=2)
    error_line(result, "unknown dataset 'spirals'")
    registry.reset()
    monkeypatch.setenv(PLUGINS_ENV, "")
    listed = {r["name"] for r in json.loads(invoke("plugins", "--json").stdout)["plugins"]}
    assert "extras" not in listed
    registry.reset()
    assert "extras" in {
        r["name"] for r in json.loads(invoke("-p", "extras", "plugins", "--json").stdout)["plugins"]
    }


@pytest.mark.usefixtures("installed")
def test_a_run_with_the_plugin_optimizer_resumes(
    invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from minidl.cli import plots
    from minidl.cli.checkpoint import CHECKPOINT, Checkpointer, load_checkpoint

    monkeypatch.setattr(Checkpointer, "every_s", 0.0)
    monkeypatch.setattr(plots, "available", lambda: False)

    def stop_after_two(record: dict, model: object) -> None:
        if record["epoch"] == 3:
            raise KeyboardInterrupt

    config = TrainConfig(**SETTINGS)
    with pytest.raises(KeyboardInterrupt):
        run(config, callbacks=[stop_after_two], checkpoint=tmp_path / CHECKPOINT)
    checkpoint = load_checkpoint(tmp_path / CHECKPOINT)
    assert (
        checkpoint.epoch == 2
        and torch.count_nonzero(checkpoint.states["optimizer"]["velocity"]) > 0
    )
    document = json.loads(invoke("train", "--out", str(tmp_path), "--resume", "--json").stdout)
    assert [h["train_loss"] for h in document["history"]] == [
        h["train_loss"] for h in run(config).history
    ]


def test_the_example_passes_its_own_tests_when_installed(site: Path) -> None:
    # In the copy, whose src/ is not importable: the tests use the installed package.
    env = {k: v for k, v in os.environ.items() if k != PLUGINS_ENV}
    env.update(PYTHONPATH=str(site), OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(site.parent / "minidl-extras" / "tests")],
        capture_output=True, text=True, cwd=site.parent, env=env, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert " passed" in out.stdout and "failed" not in out.stdout
