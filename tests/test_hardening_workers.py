"""A failure in one worker ends the whole job: `sweep --jobs 2` (a round that raises, a
worker process that dies, a plugin a worker cannot load) and `train --nproc 2` (a failing
rank). Exit code 1, one line naming the round or the worker, nothing left running."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_hardening_common import (  # noqa: F401
    assert_no_children_left,
    error_line,
    fresh_registry,
    invoke,
    minidl_run,
    write_plugin,
)

pytestmark = pytest.mark.usefixtures("fresh_registry")

SWEEP = ["sweep", "--activation", "fragile", "--optimizer", "sgd", "--hidden", "4",
         "--epochs", "2", "--n-train", "100", "--n-test", "50", "--rounds", "4"]  # fmt: skip


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_round_that_raises_stops_the_sweep_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: str
) -> None:
    plugin = write_plugin(tmp_path)
    monkeypatch.setenv("FRAGILE_SEED", "2")  # round 2 (seed 0 + 2) breaks
    result = invoke("--layer-plugin", str(plugin), *SWEEP, "--jobs", jobs, "--out", str(tmp_path / "o"), code=1)  # fmt: skip
    error_line(result, "round 2 of row fragile-sgd lr 0.001 (seed 2) failed", "fragile layer broke", "stopped the sweep")  # fmt: skip
    assert result.stdout == ""
    assert not (tmp_path / "o" / "sweep.json").exists()
    assert_no_children_left()


def test_a_worker_process_that_dies_stops_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = write_plugin(tmp_path)
    monkeypatch.setenv("FRAGILE_EXIT_SEED", "1")  # round 1's worker exits with code 9
    result = invoke("--layer-plugin", str(plugin), *SWEEP, "--jobs", "2", code=1)
    error_line(result, "a sweep worker process died (process ", "exit code 9)", "stopped the sweep")  # fmt: skip
    assert_no_children_left()


def test_a_plugin_only_the_workers_cannot_load(tmp_path: Path) -> None:
    plugin = tmp_path / "parent_only.py"
    plugin.write_text(
        "import multiprocessing\n"
        "import minidl\n"
        "if multiprocessing.parent_process() is not None:\n"
        "    raise ImportError('this plugin needs the main process')\n"
        "@minidl.hookimpl\n"
        "def register_layers(register):\n"
        "    pass\n"
    )
    args = ["--layer-plugin", str(plugin), *SWEEP, "--activation", "relu", "--jobs", "2"]
    result = invoke(*args, code=1)
    line = error_line(result, "a worker process could not load plugin", "this plugin needs the main process")  # fmt: skip
    assert line.startswith("Error: round ")


FAILING_RANK = """
import os
import minidl

class Brittle(minidl.ModuleBase):
    def __init__(self):
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if os.environ.get("RANK") == "1" and self.calls == 7:  # rank 1, epoch 2
            raise ValueError("rank one's layer broke")
        return x

    def backward(self, grad):
        return grad

@minidl.hookimpl
def register_layers(register):
    register("brittle", Brittle)
"""


def test_a_failing_rank_ends_the_data_parallel_job_in_one_line(tmp_path: Path) -> None:
    """Rank 1 fails mid-training; rank 0, its peer gone, fails too (after it). The launcher
    names rank 1 and its error, once, and stops the job."""
    (tmp_path / "brittle.py").write_text(FAILING_RANK)
    done = minidl_run(
        "--layer-plugin", "brittle.py", "train", "--nproc", "2", "--epochs", "4", "--n-train", "200",
        "--n-test", "50", "--model", "linear(4), brittle, linear(1), sigmoid", "--out", "dp",
        cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: worker rank 1 failed: ")
    assert "rank one's layer broke" in lines[0] and "stopped the other ranks" in lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "dp" / "model.safetensors").exists()
