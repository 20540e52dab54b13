"""examples/minidl-extras, really installed: a fresh virtual environment, minidl and the
plugin installed into it by pip, then the installed ``minidl-run`` console script.

The new environment reuses this interpreter's packages (torch, pluggy, click, pytest) through
a ``.pth`` file rather than downloading them; minidl and minidl-extras themselves are built
and installed by pip from copies of their sources, so the worktree is left untouched.
Deselect with ``-m "not slow"``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import minidl
from minidl import registry

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "minidl-extras"
MODEL = "linear(16), leaky_relu(0.05), linear(16), leaky_relu(0.05), linear(1)"
TRAIN_ARGS = [
    "--dataset", "spirals", "--n-train", "300", "--n-test", "200", "--model", MODEL,
    "--loss", "bce", "--optimizer", "momentum_sgd", "--lr", "0.1", "--epochs", "8",
    "--batch-size", "20", "--seed", "2",
]  # fmt: skip


def _copy_sources(dest: Path) -> tuple[Path, Path]:
    """minidl's and the example's sources, without caches or build leftovers."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", ".pytest_cache")
    minidl_src = dest / "minidl-src"
    minidl_src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, minidl_src / name)
    for name in ("core", "plugins", "cli"):
        shutil.copytree(ROOT / name, minidl_src / name, ignore=ignore)
    example_src = dest / "minidl-extras"
    shutil.copytree(EXAMPLE, example_src, ignore=ignore)
    return minidl_src, example_src


def _have_setuptools() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 61  # reads [project] tables


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("example-plugin")
    env_dir = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # Appended after the new environment's own site-packages, so what pip installs there wins.
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (Path(site) / "reuse_test_interpreter.pth").write_text("".join(f"{p}\n" for p in ours))
    minidl_src, example_src = _copy_sources(root)
    # Without setuptools here, pip builds in isolation from the configured package index.
    isolation = ["--no-build-isolation"] if _have_setuptools() else []
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", *isolation, str(minidl_src)],
        check=True,
        cwd=root,
    )
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", *isolation, str(example_src)],
        check=True,
        cwd=root,
    )
    return {"root": root, "bin": env_dir / "bin", "python": python, "example": example_src}


def run(venv: dict[str, Path], *args: str, env: dict[str, str] | None = None, ok: bool = True):
    environment = {k: v for k, v in os.environ.items() if k != registry.PLUGINS_ENV}
    environment.update(env or {})
    environment["PATH"] = f"{venv['bin']}{os.pathsep}{environment.get('PATH', '')}"
    environment.pop("PYTHONPATH", None)
    result = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        cwd=venv["root"],
        env=environment,
        timeout=120,
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def test_installed_minidl_is_the_copy_in_the_new_environment(venv: dict[str, Path]) -> None:
    out = run(venv, venv["python"], "-c", "import minidl, minidl_extras; print(minidl.__file__)")
    assert out.stdout.strip().startswith(str(venv["root"] / "venv"))


def test_minidl_run_plugins_lists_the_installed_plugin(venv: dict[str, Path]) -> None:
    out = run(venv, venv["bin"] / "minidl-run", "plugins", "--json")
    records = {r["name"]: r for r in json.loads(out.stdout)["plugins"]}
    extras = records["extras"]
    assert (extras["distribution"], extras["version"], extras["status"]) == (
        "minidl-extras",
        "0.1.0",
        "ok",
    )
    assert extras["registers"] == {
        "layer": ["leaky_relu"],
        "loss": ["bce"],
        "optimizer": ["momentum_sgd"],
        "dataset": ["spirals"],
    }
    text = run(venv, venv["bin"] / "minidl-run", "plugins").stdout
    assert "extras" in text and "minidl-extras 0.1.0" in text and "momentum_sgd" in text
    assert out.stderr == ""  # no plugin warned


def test_the_plugin_command_runs(venv: dict[str, Path]) -> None:
    out = run(venv, venv["bin"] / "minidl-run", "extras-info", "--json")
    info = json.loads(out.stdout)
    assert info["plugin"] == "extras" and info["registers"]["loss"] == ["bce"]


def test_training_with_the_plugin_through_the_console_script(
    venv: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = run(venv, venv["bin"] / "minidl-run", "train", *TRAIN_ARGS, "--json")
    history = json.loads(out.stdout)["history"]
    assert len(history) == 8
    # The reference: the same run in this process, the plugin loaded from its sources.
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    registry.reset()
    try:
        registry.load_plugin("minidl_extras")
        expected = minidl.run(
            dataset="spirals",
            n_train=300,
            n_test=200,
            model=MODEL,
            loss="bce",
            optimizer="momentum_sgd",
            lr=0.1,
            epochs=8,
            batch_size=20,
            seed=2,
        ).history
    finally:
        registry.reset()
        for name in [m for m in sys.modules if m.startswith("minidl_extras")]:
            del sys.modules[name]
    for got, want in zip(history, expected, strict=True):
        for key in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
            assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-9), (got["epoch"], key)
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]


def test_disabling_the_plugin(venv: dict[str, Path]) -> None:
    none = run(venv, venv["bin"] / "minidl-run", "plugins", "--json", env={"MINIDL_PLUGINS": ""})
    assert "extras" not in {r["name"] for r in json.loads(none.stdout)["plugins"]}
    blocked = run(
        venv,
        venv["bin"] / "minidl-run",
        "--layer-plugin",
        "no:extras",
        "train",
        *TRAIN_ARGS,
        ok=False,
    )
    assert blocked.returncode == 2
    assert blocked.stderr.count("\n") == 1 and "unknown dataset 'spirals'" in blocked.stderr


def test_a_broken_installed_plugin_leaves_the_cli_working(venv: dict[str, Path]) -> None:
    """A second installed plugin whose import fails: one warning line, the rest works.
    (Installed by hand, as a module and a dist-info folder: pip would only be slower.)"""
    site = Path(
        run(
            venv, venv["python"], "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        ).stdout.strip()
    )
    module = site / "broken_plugin.py"
    info = site / "broken_plugin-0.0.1.dist-info"
    module.write_text("import not_installed_dep\n")
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text("[minidl]\nbroken = broken_plugin\n")
    try:
        out = run(venv, venv["bin"] / "minidl-run", "plugins", "--json")
        assert out.stderr == (
            "Warning: Error importing plugin 'broken' (broken-plugin 0.0.1): "
            "ModuleNotFoundError: No module named 'not_installed_dep' "
            f"({site.name}/broken_plugin.py, line 1)\n"
        )
        records = {r["name"]: r for r in json.loads(out.stdout)["plugins"]}
        assert records["broken"]["status"] == "broken"
        assert records["extras"]["status"] == "ok"
        trained = run(venv, venv["bin"] / "minidl-run", "train", *TRAIN_ARGS, "--epochs", "1")
        assert trained.stderr.count("Warning:") == 1 and "accuracy" in trained.stdout
    finally:
        module.unlink()
        shutil.rmtree(info)


def test_the_example_passes_its_own_tests_when_installed(venv: dict[str, Path]) -> None:
    # In the copy, whose src/ is not importable: the tests use the installed package.
    out = run(venv, venv["python"], "-m", "pytest", "-q", "-p", "no:cacheprovider", venv["example"])
    assert " passed" in out.stdout and "failed" not in out.stdout
