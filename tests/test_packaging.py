"""One namespace: core/ installs as minidl, plugins/ as minidl.plugins, cli/ as minidl.cli
(with minidl.cli.commands).

The wheel is built from a copy of the sources in a temporary folder (no build/ or
egg-info litter in the worktree) and installed into a target folder, where it must work on
its own; the editable install of the test environment is checked alongside.
"""

from __future__ import annotations

import configparser
import importlib
import os
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import distribution, entry_points
from pathlib import Path

import pytest

import minidl
import minidl.cli.commands
import minidl.plugins

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "core", "plugins", "cli"]
#: source folder -> where it installs
FOLDERS = {
    "core": "minidl",
    "plugins": "minidl/plugins",
    "cli": "minidl/cli",
    "cli/commands": "minidl/cli/commands",
}
BUILTINS = {
    f"minidl.{kind}": f"minidl.plugins.{kind}"
    for kind in (
        "activations",
        "callbacks",
        "containers",
        "datasets",
        "dropout",
        "embedding",
        "initializers",
        "layers",
        "losses",
        "norm",
        "optimizers",
        "schedules",
    )  # fmt: skip
}


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
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist)],
        cwd=src, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    (path,) = dist.glob("minidl-*.whl")
    return path


def test_the_wheel_holds_the_minidl_namespace_and_every_module(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"minidl"}, tops
    packages = {n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")}
    assert packages == set(FOLDERS.values())
    expected = {
        f"{package}/{path.name}"
        for folder, package in FOLDERS.items()
        for path in (ROOT / folder).glob("*.py")
    }
    assert expected <= names, sorted(expected - names)
    assert "minidl/py.typed" in names
    assert {n for n in names if n.endswith(".py")} == expected  # no stray module, no test


def test_the_wheel_declares_the_console_script_and_the_builtins(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        (ep_file,) = [n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt")]
        parser = configparser.ConfigParser(delimiters=("=",))
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(z.read(ep_file).decode())
    assert dict(parser["console_scripts"]) == {"minidl-run": "minidl.cli:main"}
    assert dict(parser["minidl"]) == BUILTINS
    # The editable install of this environment declares the same.
    installed = {
        ep.name: ep.value for ep in distribution("minidl").entry_points if ep.group == "minidl"
    }
    assert installed == BUILTINS
    minidl.registry.tables()  # loads the installed plugins: each built-in is one
    for name, module in BUILTINS.items():
        assert minidl.registry.get_plugin(name) is importlib.import_module(module), name


def test_the_installed_wheel_works_from_its_own_folder(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    out = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert {p.name for p in target.iterdir() if not p.name.endswith(".dist-info")} <= {
        "minidl",
        "bin",
    }
    code = (
        "import minidl, minidl.plugins, minidl.cli, minidl.cli.commands\n"
        "from click.testing import CliRunner\n"
        "from minidl.plugins import Linear\n"
        "assert minidl.registry.get('layer', 'linear') is Linear\n"
        "print(minidl.__file__, minidl.plugins.__file__, minidl.cli.commands.__file__)\n"
        "print(CliRunner().invoke(minidl.cli.cli, ['--help']).output)\n"
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
    files, help_text = run.stdout.split("\n", 1)
    assert [Path(f) for f in files.split()] == [
        target / "minidl" / "__init__.py",
        target / "minidl" / "plugins" / "__init__.py",
        target / "minidl" / "cli" / "commands" / "__init__.py",
    ]
    for command in ("train", "predict", "plugins"):  # the built-in commands came along
        assert f"  {command} " in help_text, help_text


def test_the_editable_install_maps_the_folders_to_the_namespace(tmp_path: Path) -> None:
    assert Path(minidl.__file__) == ROOT / "core" / "__init__.py"
    assert Path(minidl.plugins.__file__) == ROOT / "plugins" / "__init__.py"
    assert Path(minidl.cli.__file__) == ROOT / "cli" / "__init__.py"
    assert Path(minidl.cli.commands.__file__) == ROOT / "cli" / "commands" / "__init__.py"
    # In a neutral folder (this one's root on sys.path would make `core` importable anyway),
    # the folders' own names are no top-level packages: only minidl is.
    code = (
        "import importlib.util as u\n"
        "print(u.find_spec('minidl').origin)\n"
        "print(*(u.find_spec(n) is None for n in ('core', 'plugins', 'cli')))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert run.returncode == 0, run.stderr
    origin, absent = run.stdout.splitlines()
    assert Path(origin) == ROOT / "core" / "__init__.py"
    assert absent.split() == ["True", "True", "True"]


def test_the_console_script_is_installed() -> None:
    (ep,) = entry_points(group="console_scripts", name="minidl-run")
    assert ep.value == "minidl.cli:main"
    assert (Path(sys.executable).parent / "minidl-run").is_file()
