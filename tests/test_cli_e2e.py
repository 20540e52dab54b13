"""The installed `minidl-run` console script, run as a user would, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import minidl

SCRIPT = Path(sys.executable).with_name("minidl-run")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PATH": f"{SCRIPT.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return subprocess.run(
        ["minidl-run", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_installed_console_script_trains_saves_and_fails_cleanly(tmp_path: Path) -> None:
    assert SCRIPT.is_file(), f"{SCRIPT} missing: install the project with pip install -e ."
    trained = run(
        "train", "--epochs", "3", "--n-train", "200", "--n-test", "100", "--out", "run", "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert trained.stderr == ""  # no progress bar when stderr is not a terminal
    document = json.loads(trained.stdout)
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert (
        json.loads((tmp_path / "run" / "metrics.json").read_text())["test_accuracy"]
        == (document["test_accuracy"])
    )
    model, _ = minidl.load_model(tmp_path / "run")
    assert model.spec is not None and [s.name for s in model.spec][-1] == "sigmoid"

    bad = run("train", "--activation", "nope", cwd=tmp_path)
    assert bad.returncode == 2
    [line] = bad.stderr.strip().splitlines()
    assert line.startswith(
        "Error: Invalid value for '--activation': unknown activation 'nope'; available: "
    )
    assert {"relu", "sigmoid", "tanh"} <= set(line.split("available: ")[1].split(", "))
    assert bad.stdout == ""
