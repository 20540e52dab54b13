"""One command per output directory, and results that appear together or not at all.

A real `minidl-run` process holds its --out; a second command into the same directory,
started once the first is seen to hold it (its lock file, and its training under way),
fails at once naming the directory and the first process; a directory whose holder was
killed with SIGKILL is usable at once. A run's files replace an earlier run's in one
step, metrics.json last, and an interrupted save leaves the earlier run's files as they
were."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_cli_errors import error_line, fresh_cli  # noqa: F401 (a fixture)

import minidl
from minidl.cli import plots as cli_plots
from minidl.cli import results, tables
from minidl.cli.checkpoint import CHECKPOINT
from minidl.cli.lock import LOCK, DirectoryInUse, hold
from minidl.cli.results import FILES, STAGING

SCRIPT = Path(sys.executable).with_name("minidl-run")
HANG_GUARD_S = 120
FAST = ["--epochs", "2", "--n-train", "100", "--n-test", "50", "--hidden", "4"]
RANK_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "TORCHELASTIC_RUN_ID",
            "MASTER_ADDR", "MASTER_PORT", "MINIDL_LAUNCHED", "MINIDL_TRACEBACK")  # fmt: skip

GATE = textwrap.dedent(
    '''
    import os
    import time
    from pathlib import Path

    from minidl import ModuleBase, hookimpl


    class Gate(ModuleBase):
        """The identity. Its first forward in training touches GATE_HELD, then waits until
        GATE_OPEN exists (at most two minutes, so that nothing outlives a failed test)."""

        def forward(self, x):
            if self.training and os.environ.get("GATE_HELD"):
                Path(os.environ["GATE_HELD"]).touch()
                end = time.monotonic() + 120
                while not Path(os.environ["GATE_OPEN"]).exists() and time.monotonic() < end:
                    time.sleep(0.01)
            return x

        def backward(self, grad_output):
            return grad_output


    @hookimpl
    def register_layers(register):
        register("gate", Gate)
    '''
)
MODEL = "gate, linear(4), tanh, linear(1), sigmoid"


class Held:
    """A `minidl-run -p gate.py ARGS` process, stopped inside its first training step."""

    def __init__(self, tmp_path: Path, args: list[str]) -> None:
        (tmp_path / "gate.py").write_text(GATE)
        self.held, self.open = tmp_path / "gate-held", tmp_path / "gate-open"
        env = {k: v for k, v in os.environ.items() if k not in RANK_ENV}
        env.update(GATE_HELD=str(self.held), GATE_OPEN=str(self.open), OMP_NUM_THREADS="1")
        self.args = ["minidl-run", "-p", "gate.py", *args]
        self.process = subprocess.Popen(
            [str(SCRIPT), *self.args[1:]],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def wait_until(self, ready: Callable[[], bool]) -> None:
        """Until ``ready()``: the events, never a fixed time (HANG_GUARD_S bounds a failure)."""
        end = time.monotonic() + HANG_GUARD_S
        while not ready():
            if self.process.poll() is not None:
                pytest.fail(f"the first run ended: {self.process.communicate()}")
            assert time.monotonic() < end, "the first run never got there"
            time.sleep(0.01)

    def release(self) -> subprocess.CompletedProcess[str]:
        self.open.touch()
        try:
            stdout, stderr = self.process.communicate(timeout=HANG_GUARD_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            stdout, stderr = self.process.communicate()
            pytest.fail(f"still running {HANG_GUARD_S} s after its gate opened: {stderr}")
        return subprocess.CompletedProcess(self.args, self.process.returncode, stdout, stderr)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.communicate()


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Callable[[list[str]], Held]]:
    started: list[Held] = []

    def start(args: list[str]) -> Held:
        started.append(Held(tmp_path, args))
        return started[-1]

    yield start
    for h in started:
        h.kill()


def holds(directory: Path, first: Held) -> Callable[[], bool]:
    """The first run holds ``directory`` and trains: its lock file, then its gate."""
    return lambda: (directory / LOCK).exists() and first.held.exists()


@pytest.mark.usefixtures("fresh_cli")
@pytest.mark.parametrize(
    "first_args",
    [
        ["train", "--model", MODEL, *FAST, "--out", "run"],
        ["sweep", "--activation", "gate", "--rounds", "1", *FAST, "--out", "run"],
    ],
    ids=["train", "sweep"],
)
def test_a_second_command_into_a_held_directory_fails_at_once_naming_the_first(
    tmp_path: Path, invoke, held, monkeypatch: pytest.MonkeyPatch, first_args: list[str]
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli_plots, "available", lambda: False)
    first = held(first_args)
    first.wait_until(holds(tmp_path / "run", first))
    for second in (["train", *FAST], ["sweep", "--rounds", "1", *FAST], ["tune", *FAST]):
        result = invoke(*second, "--out", "run", code=2)
        error_line(
            result,
            f"'run' is in use by another run (pid {first.process.pid}: ",
            shlex.join(first.args),
            "wait for it to end, or choose another --out",
        )
        assert result.stdout == ""
    done = first.release()
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "run" / LOCK).exists()  # an ended run leaves its directory free
    invoke("train", *FAST, "--out", "run")


@pytest.mark.usefixtures("fresh_cli")
def test_a_directory_whose_run_was_killed_is_usable_at_once(
    tmp_path: Path, invoke, held, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli_plots, "available", lambda: False)
    first = held(["train", "--model", MODEL, *FAST, "--out", "run"])
    first.wait_until(holds(tmp_path / "run", first))
    first.kill()  # SIGKILL: no handler runs, the lock file stays
    assert first.process.returncode == -signal.SIGKILL
    assert (tmp_path / "run" / LOCK).exists()
    document = json.loads(invoke("train", *FAST, "--out", "run", "--json").stdout)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"] == document["config"]


def test_the_lock_is_the_kernels_and_names_its_holder(tmp_path: Path) -> None:
    """Two holds of one directory in one process conflict as two processes' do (flock
    locks an open file, not a process); the second names the first, and a released
    directory can be held again, its lock file gone."""
    with hold(tmp_path, "minidl-run train --out x"):
        with pytest.raises(DirectoryInUse) as error:
            with hold(tmp_path, "minidl-run sweep"):
                pass
        assert error.value.exit_code == 2
        assert f"(pid {os.getpid()}: minidl-run train --out x)" in error.value.message
    assert not (tmp_path / LOCK).exists()
    with hold(tmp_path, "again"):
        pass


def test_a_failed_run_removes_the_directory_it_made(tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "new" / "run"
    invoke("train", *FAST, "--lr", "1e30", "--optimizer", "sgd", "--out", str(out), code=1)
    assert not out.exists()
    assert (tmp_path / "new").exists()  # made by mkdir -p: only the --out itself goes


# --- results together or not at all --------------------------------------------------------


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_results_replace_an_earlier_runs_in_one_step_metrics_last(
    tmp_path: Path, invoke, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """The earlier run had plots (and diagnostics.png); this one has none: no file of the
    earlier run stays beside this one's metrics.json, and metrics.json comes in last."""
    out = tmp_path / "run"
    invoke("train", *FAST, "--out", str(out))
    assert {p.name for p in out.iterdir()} == set(FILES)
    moved: list[str] = []
    replace = os.replace

    def recording(src: str | Path, dst: str | Path) -> None:
        if Path(src).parent.name == STAGING and Path(dst).parent.name != STAGING:
            moved.append(Path(dst).name)
        replace(src, dst)

    monkeypatch.setattr(results.os, "replace", recording)
    monkeypatch.setattr(cli_plots, "available", lambda: False)
    invoke("train", *FAST, "--no-diagnostics", "--lr", "0.01", "--out", str(out))
    written = {n for n in FILES if not n.endswith(".png")}
    assert sorted(moved) == sorted(written) and moved[-1] == "metrics.json"
    assert {p.name for p in out.iterdir()} == written
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["lr"] == minidl.load_model(out)[1]["config"]["lr"] == 0.01


@pytest.mark.parametrize("failure", [KeyboardInterrupt, OSError])
def test_a_save_stopped_midway_commits_nothing(
    tmp_path: Path, invoke, monkeypatch: pytest.MonkeyPatch, failure: type[BaseException]
) -> None:  # type: ignore[no-untyped-def]
    """A sweep's earlier results stay as they were; a train run, which cleared the earlier
    run's results when it started, leaves no metrics.json (nothing to trust) and its
    checkpoint, to resume."""

    def broken(*args: object, **kwargs: object) -> None:
        raise failure("stopped while writing")

    monkeypatch.setattr(cli_plots, "available", lambda: False)
    sweep = tmp_path / "sweep"
    sweep_args = ["sweep", "--activation", "relu", "--optimizer", "sgd", "--rounds", "1", *FAST]
    invoke(*sweep_args, "--out", str(sweep))
    before = snapshot(sweep)
    with monkeypatch.context() as patch:
        patch.setattr(tables, "atomic_write", broken)
        invoke(*sweep_args, "--lr", "0.01", "--out", str(sweep), code=None)
    assert snapshot(sweep) == before

    run = tmp_path / "run"
    invoke("train", *FAST, "--out", str(run))
    monkeypatch.setattr(results.minidl, "save_model", broken)
    invoke("train", *FAST, "--lr", "0.01", "--out", str(run), code=None)
    names = {p.name for p in run.iterdir()}
    assert "metrics.json" not in names and CHECKPOINT in names
    assert STAGING not in names and LOCK not in names
