"""One namespace: core/ installs as minidl, plugins/ as minidl.plugins, cli/ as minidl.cli.

The wheel is built from a copy of the sources in a temporary folder (no build/ or
egg-info litter in the worktree), installed into a target folder, and imported from
there; the editable install of the test venv is checked alongside.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "core", "plugins", "cli"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    dist = tmp_path_factory.mktemp("dist")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            ".",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
        ],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (path,) = dist.glob("minidl-*.whl")
    return path


def test_wheel_holds_only_the_minidl_namespace(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    dist_info = {t for t in tops if t.endswith(".dist-info")}
    assert tops - dist_info == {"minidl"}, tops
    packages = {n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")}
    assert packages == {"minidl", "minidl/plugins", "minidl/cli"}
    assert "minidl/py.typed" in names
    for module in ("registry", "sequential", "train", "flat"):
        assert f"minidl/{module}.py" in names
    for module in ("layers", "losses", "optimizers", "datasets"):
        assert f"minidl/plugins/{module}.py" in names
    assert not any(n.startswith(("core/", "plugins/", "cli/", "tests/")) for n in names)


def test_wheel_declares_the_console_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        (ep_file,) = [n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt")]
        text = z.read(ep_file).decode()
    assert "[console_scripts]" in text
    assert "minidl-run = minidl.cli:main" in text


def test_installed_wheel_imports_from_its_own_folder(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info")) in (
        ["minidl"],
        ["bin", "minidl"],
    )
    code = (
        "import minidl, minidl.plugins, minidl.cli\n"
        "from minidl.plugins import Linear, ReLU, Sigmoid, Tanh, MSE, SGD, Adam\n"
        "assert minidl.registry.get('layer', 'linear') is Linear\n"
        "print(minidl.__file__)\n"
        "print(minidl.plugins.__file__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    core_file, plugins_file = run.stdout.split()
    assert Path(core_file) == target / "minidl" / "__init__.py"
    assert Path(plugins_file) == target / "minidl" / "plugins" / "__init__.py"


def test_editable_install_maps_folders_to_the_namespace(tmp_path: Path) -> None:
    code = (
        "import importlib.util, minidl, minidl.plugins, minidl.cli\n"
        "print(minidl.__file__, minidl.plugins.__file__, minidl.cli.__file__)\n"
        "print(*(importlib.util.find_spec(n) is None for n in ('core', 'plugins', 'cli')))\n"
    )
    # A neutral cwd: the repository root on sys.path would make `core` importable anyway.
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert run.returncode == 0, run.stderr
    files, absent = run.stdout.splitlines()
    assert [Path(f) for f in files.split()] == [
        ROOT / "core" / "__init__.py",
        ROOT / "plugins" / "__init__.py",
        ROOT / "cli" / "__init__.py",
    ]
    assert absent.split() == ["True", "True", "True"]  # no top-level core, plugins or cli


def test_console_script_is_installed() -> None:
    (ep,) = entry_points(group="console_scripts", name="minidl-run")
    assert ep.value == "minidl.cli:main"
    assert (Path(sys.executable).parent / "minidl-run").is_file()
