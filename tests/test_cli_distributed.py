"""`minidl-run train --nproc N` and under torchrun, as a user runs them: the numbers of one
process, a `-p` plugin loaded by every rank, a failing rank named in one line, Ctrl-C and
SIGTERM answered promptly (and the interrupted run resumed to the uninterrupted result),
and nothing left running.

The reference is one in-process run; every other run is a real ``minidl-run`` process.
Each scenario is one such command (the resumption and torchrun's two nodes excepted), on
61 points in batches of 20: the last batch has one row, so the other ranks get none.
The Python API (launch, DataParallel, buffers) is tested in tests/test_distributed.py.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from foreground import not_ignoring_sigint
from safetensors.torch import load_file
from test_cli_errors import PROGRESS, progress_epochs

import minidl
from minidl.cli import cli
from minidl.cli import plots as cli_plots
from minidl.cli.checkpoint import CHECKPOINT

BIN = Path(sys.executable).parent
#: A failure bound only (three ranks importing torch on a busy 2-core machine take a while):
#: every wait in these tests is for an event.
HANG_GUARD_S = 300
#: The collective timeout the ranks are given (init_from_env): a job that waited for it
#: instead of stopping at once would take this long.
COLLECTIVE_TIMEOUT_S = 120

PLUGIN = '''
import os
import signal
import time
from pathlib import Path

import torch

import minidl


class Gate:
    """y = x * sigmoid(g), one trainable gate per feature; no base class."""

    def __init__(self, in_features):
        self.g = minidl.Parameter(torch.zeros(in_features), "g")
        self.out_features = in_features

    def forward(self, x):
        self.x, self.s = x, torch.sigmoid(self.g.data)
        return x * self.s

    def backward(self, grad_output):
        self.g.grad.add_((grad_output * self.x).sum(0) * self.s * (1 - self.s))
        return grad_output * self.s

    def parameters(self):
        return [self.g]


def mark(name):
    """Leave PROBE_DIR/NAME<rank>, for the test to wait on."""
    rank, directory = os.environ.get("RANK"), os.environ.get("PROBE_DIR")
    if rank is not None and directory:
        path = Path(directory, f"{name}{rank}")
        path.with_suffix(".tmp").write_text(str(os.getpid()))
        path.with_suffix(".tmp").replace(path)


class Probe(minidl.ModuleBase):
    """The identity. Built in a rank (RANK set), it leaves the rank's pid in PROBE_DIR
    (pid<rank>) and marks sigterm<rank> when the rank handles a SIGTERM; rank
    PROBE_STUBBORN ignores SIGTERM from then on. In training, from forward PROBE_AFTER + 1
    on, rank PROBE_FAIL_RANK marks failing<rank> and raises, and every rank marks
    sleeping<rank> and sleeps PROBE_SLEEP seconds a forward; once the file
    PROBE_HOLD_AFTER exists, a forward marks held<rank> and waits to be stopped (two
    minutes at most)."""

    def __init__(self):
        self.calls = 0
        rank = os.environ.get("RANK")
        if rank is not None and rank == os.environ.get("PROBE_STUBBORN"):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        previous = signal.getsignal(signal.SIGTERM)
        if rank is not None and callable(previous):

            def handle(signum, frame):
                mark("sigterm")
                previous(signum, frame)

            signal.signal(signal.SIGTERM, handle)
        mark("pid")

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls > int(os.environ.get("PROBE_AFTER", "0")):
                rank = os.environ.get("RANK")
                if rank is not None and rank == os.environ.get("PROBE_FAIL_RANK"):
                    mark("failing")
                    raise ValueError(f"the probe of rank {rank} broke")
                mark("sleeping")
                time.sleep(float(os.environ.get("PROBE_SLEEP", "0")))
            hold = os.environ.get("PROBE_HOLD_AFTER")
            if hold and Path(hold).exists():
                mark("held")
                end = time.monotonic() + 120
                while time.monotonic() < end:
                    time.sleep(0.01)
        return x

    def backward(self, grad):
        return grad


class Skip(minidl.Sequential):
    """y = x + f(x), f the chain of its modules: a container, so that every scenario
    trains, saves and resumes a nested model."""

    def forward(self, x):
        return x + super().forward(x)

    def backward(self, grad_output):
        return grad_output + super().backward(grad_output)


@minidl.hookimpl
def register_layers(register):
    register("gate", Gate)
    register("probe", Probe)
    register("skip", Skip)
'''

MODEL = "probe, gate, linear(8), tanh, skip(linear(8), tanh), linear(1), sigmoid"
ARGS = ["train", "--model", MODEL, "--n-train", "61", "--n-test", "20", "--batch-size", "20",
        "--epochs", "2", "--dtype", "float64", "--optimizer", "sgd", "--lr", "0.5",
        "--no-diagnostics", "--json"]  # fmt: skip
#: A rank's variables that must not leak into a fresh command from the one running the tests.
RANK_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
            "MASTER_PORT", "MINIDL_LAUNCHED", "MINIDL_TRACEBACK")  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in RANK_ENV}
    env.update(OMP_NUM_THREADS="1", **extra)  # tiny matrices, several ranks on 2 cores
    return env


def start(tmp_path: Path, args: list[str], **env: str) -> subprocess.Popen[str]:
    """``minidl-run -p probe.py ARGS`` in ``tmp_path``, in a process group of its own."""
    (tmp_path / "probe.py").write_text(PLUGIN)
    with not_ignoring_sigint():
        return subprocess.Popen(
            [str(BIN / "minidl-run"), "-p", "probe.py", *args],
            cwd=tmp_path,
            env=environment(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )


def finish(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    try:
        stdout, stderr = process.communicate(timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"still running after {HANG_GUARD_S} s: {stderr[-2000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def minidl_run(tmp_path: Path, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return finish(start(tmp_path, args, **env))


def rank_pids(directory: Path, nproc: int) -> list[int]:
    """The ranks' pids, which the probe layer of each rank leaves in ``directory``."""
    paths = [directory / f"pid{r}" for r in range(nproc)]
    assert all(p.exists() for p in paths), sorted(p.name for p in directory.iterdir())
    return [int(p.read_text()) for p in paths]


def assert_gone(pids: list[int], grace_s: float = HANG_GUARD_S) -> None:
    """No rank outlived the command (a zombie counts: someone must reap it). A rank the
    command reaped is gone at once; one that died with a killed command is reaped by
    init, which on a busy machine takes a moment: the grace bounds that."""
    end = time.monotonic() + grace_s
    while any(os.path.exists(f"/proc/{pid}") for pid in pids) and time.monotonic() < end:
        time.sleep(0.02)
    assert [pid for pid in pids if os.path.exists(f"/proc/{pid}")] == []


def one_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stderr)
    assert done.stdout == "" and "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if not PROGRESS.match(line)]
    assert len(lines) == 1, done.stderr
    return lines[0]


def assert_same_history(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [r["epoch"] for r in got] == [r["epoch"] for r in expected] == [1, 2]
    for a, b in zip(got, expected, strict=True):
        for key in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12), (a["epoch"], key)


Reference = tuple[list[dict[str, Any]], dict[str, torch.Tensor]]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """One process, in this one (no plots): its history and its final weights."""
    tmp = tmp_path_factory.mktemp("single")
    (tmp / "probe.py").write_text(PLUGIN)
    modules = set(sys.modules)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli_plots, "available", lambda: False)
        patch.chdir(tmp)
        try:
            result = CliRunner().invoke(
                cli, ["-p", "probe.py", *ARGS, "--out", "one"], prog_name="minidl-run"
            )
        finally:
            minidl.registry.reset()
            for name in set(sys.modules) - modules:
                if name.startswith("minidl_plugin_"):
                    del sys.modules[name]
    assert result.exit_code == 0, (result.output, result.exception)
    history = json.loads(result.stdout)["history"]
    weights = load_file(tmp / "one" / "model.safetensors")
    assert weights["1.g"].abs().max() > 1e-3  # the plugin's own parameter did train
    assert "4.0.weight" in weights  # inside the container
    return history, weights


def test_nproc_3_equals_one_process_with_the_plugin_loaded_by_every_rank(
    tmp_path: Path, single: Reference
) -> None:
    """Three ranks, two of them with an empty slice of the last batch, each loading the
    `-p` plugin (a layer with parameters): rank 0 prints one JSON document, the others
    nothing, and the numbers are one process's."""
    done = minidl_run(tmp_path, [*ARGS, "--nproc", "3"], PROBE_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    epochs = len(single[0])
    assert progress_epochs(done.stderr) == list(range(1, epochs + 1))  # once, from rank 0
    assert_same_history(json.loads(done.stdout)["history"], single[0])
    assert_gone(rank_pids(tmp_path, 3))


def test_a_failing_rank_ends_the_job_in_one_line_naming_it(tmp_path: Path) -> None:
    """Rank 1 raises in epoch 2 (its 4th forward). Rank 0, waiting for it in the
    gradient all_reduce, fails too when rank 1's connection closes, maybe before rank 1's
    error has reached the launcher (rank 0 ignores SIGTERM, so the launcher cannot stop it
    first): rank 1 alone is named, and rank 0's error is not shown."""
    done = minidl_run(
        tmp_path,
        [*ARGS, "--nproc", "2", "--out", "dp"],
        PROBE_DIR=str(tmp_path),
        PROBE_FAIL_RANK="1",
        PROBE_AFTER="3",
        PROBE_STUBBORN="0",
    )
    line = one_line(done, 1)
    assert line == "Error: rank 1 failed: ValueError: the probe of rank 1 broke; stopped the other ranks"  # fmt: skip
    # Stopped, not left to a collective's timeout (measured from rank 1's failure).
    assert time.time() - (tmp_path / "failing1").stat().st_mtime < COLLECTIVE_TIMEOUT_S / 2
    assert not (tmp_path / "dp" / "metrics.json").exists()
    assert not (tmp_path / "dp" / "model.safetensors").exists()
    assert_gone(rank_pids(tmp_path, 2))


def wait_for(process: subprocess.Popen[str], ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not ready():
        assert process.poll() is None, finish(process)
        assert time.monotonic() < deadline, "the run never got there"
        time.sleep(0.02)


def stop(
    process: subprocess.Popen[str], send: Callable[[], None]
) -> tuple[subprocess.CompletedProcess[str], float]:
    begin = time.monotonic()
    send()
    done = finish(process)
    return done, time.monotonic() - begin


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_a_signal_to_the_launcher_alone_stops_every_rank(
    tmp_path: Path, sig: signal.Signals, record_property: Callable[[str, object], None]
) -> None:
    """SIGTERM to the command alone (as `kill PID` sends it): it stops its ranks and exits
    143 in one line, with no resume hint (no checkpoint yet). Before that, the launcher
    holds its --out for the job (rank 0 writes under its lock), so a second command into
    the directory fails at once naming the launcher. SIGKILL, which it cannot answer: the
    ranks die with it (the kernel kills them, PR_SET_PDEATHSIG)."""
    out = ["--out", "run"] if sig == signal.SIGTERM else []
    process = start(
        tmp_path,
        [*ARGS, "--nproc", "2", *out],
        PROBE_DIR=str(tmp_path),
        PROBE_AFTER="1",
        PROBE_SLEEP="600",  # a rank left running would outlive the checks below
    )
    wait_for(process, lambda: all((tmp_path / f"sleeping{r}").exists() for r in (0, 1)))
    pids = rank_pids(tmp_path, 2)
    if sig == signal.SIGKILL:
        process.kill()
        process.wait(HANG_GUARD_S)  # not communicate(): rank 0 holds its stdout
        try:
            assert_gone(pids)
        finally:
            for pid in pids:
                if os.path.exists(f"/proc/{pid}"):
                    os.kill(pid, signal.SIGKILL)
            process.communicate()
        return
    second = minidl_run(tmp_path, [*ARGS, "--out", "run"])
    line = one_line(second, 2)
    assert line.startswith(f"Error: 'run' is in use by another run (pid {process.pid}: "), line
    assert "minidl-run -p probe.py train " in line and " --nproc 2 --out run)" in line, line
    done, seconds = stop(process, lambda: process.send_signal(sig))
    record_property("measured: train --nproc 2, SIGTERM to the launcher to exit", f"{seconds:.2f} s")  # fmt: skip
    assert one_line(done, 143) == "Error: interrupted by SIGTERM"
    assert_gone(pids)
    # Each rank stopped on the launcher's SIGTERM, not its SIGKILL after the grace.
    assert sorted(p.name for p in tmp_path.glob("sigterm*")) == ["sigterm0", "sigterm1"]


def test_ctrl_c_stops_the_job_and_resume_ends_where_one_process_does(
    tmp_path: Path, single: Reference, record_property: Callable[[str, object], None]
) -> None:
    """SIGINT to the whole process group, as a terminal sends it, once epoch 1 is
    checkpointed: the ranks ignore it, the launcher stops them and exits 130 in one line
    that says how to resume; that command, run as given, finishes the run with the
    weights and history of one uninterrupted process."""
    process = start(
        tmp_path,
        [*ARGS, "--nproc", "2", "--out", "run"],
        PROBE_DIR=str(tmp_path),
        PROBE_HOLD_AFTER=str(tmp_path / "run" / CHECKPOINT),  # epoch 1's
    )
    wait_for(process, (tmp_path / "held0").exists)  # rank 0 in epoch 2, checkpoint written
    pids = rank_pids(tmp_path, 2)
    done, seconds = stop(process, lambda: os.killpg(process.pid, signal.SIGINT))
    record_property("measured: train --nproc 2, SIGINT to the process group to exit", f"{seconds:.2f} s")  # fmt: skip
    line = one_line(done, 130)
    prefix = "Error: interrupted by Ctrl-C (SIGINT); continue from the checkpoint with: "
    assert line.startswith(prefix), line
    command = shlex.split(line.removeprefix(prefix))
    assert command == ["minidl-run", "-p", "probe.py", *ARGS, "--nproc", "2", "--out", "run", "--resume"]  # fmt: skip
    assert_gone(pids)
    assert not (tmp_path / "run" / "metrics.json").exists()  # it did stop mid-run

    resumed = minidl_run(tmp_path, command[3:])
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.startswith("resuming the run in run after epoch 1 of 2\n")
    assert_same_history(json.loads(resumed.stdout)["history"], single[0])
    weights = load_file(tmp_path / "run" / "model.safetensors")
    assert weights.keys() == single[1].keys()
    for name, tensor in weights.items():
        torch.testing.assert_close(tensor, single[1][name], rtol=1e-9, atol=1e-12)
    assert not (tmp_path / "run" / CHECKPOINT).exists()


def test_two_torchrun_nodes_on_loopback_equal_one_process(
    tmp_path: Path, single: Reference
) -> None:
    """Two machines' launch, both on 127.0.0.1: one torch.distributed.run per node, one
    rank each, running `minidl-run train` without --nproc (the ranks come from the
    environment). Rank 0 alone prints."""
    (tmp_path / "probe.py").write_text(PLUGIN)
    port = str(free_port())
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--node-rank",
                str(node),
                "--nproc-per-node",
                "1",
                "--master-addr",
                "127.0.0.1",
                "--master-port",
                port,
                "--no-python",
                str(BIN / "minidl-run"),
                "-p",
                "probe.py",
                *ARGS,
            ],
            cwd=tmp_path,
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )  # fmt: skip
        for node in (0, 1)
    ]
    outputs = [finish(node) for node in nodes]
    for done in outputs:
        assert done.returncode == 0, done.stderr[-3000:]
    assert outputs[1].stdout == ""
    assert_same_history(json.loads(outputs[0].stdout)["history"], single[0])


def test_nproc_under_a_single_torchrun_worker_is_refused_not_a_hang(tmp_path: Path) -> None:
    """torchrun with one worker (WORLD_SIZE=1) running `train` with nproc = 2 (from a
    --config file shared with local runs: torchrun's own parser would take `--nproc` on
    its command line for its --nproc-per-node): once a hang, now the usage error, which
    torchrun reports as its worker's failure."""
    (tmp_path / "probe.py").write_text(PLUGIN)
    (tmp_path / "dp.toml").write_text("nproc = 2\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1",
         "--master-port", str(free_port()), "--no-python", str(BIN / "minidl-run"),
         "-p", "probe.py", *ARGS, "--config", "dp.toml"],
        cwd=tmp_path, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    done = finish(process)
    assert done.returncode != 0 and done.stdout == ""
    assert (
        "Error: Invalid value for '--nproc': torchrun started this command (TORCHELASTIC_RUN_ID"
        in done.stderr
    ), done.stderr[-3000:]
    assert "give torchrun --nproc-per-node 2 instead" in done.stderr
