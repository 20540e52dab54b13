"""Data-parallel training equals one process, buffers are rank 0's on every rank, and
launch() keeps its promises: one line naming the rank that failed first, nothing left
running, SIGINT and SIGTERM stop every rank promptly.

The ranks run functions of tests/dp_worker.py, which the spawned processes import (the
launcher's sys.path, with this folder on it, is theirs).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import dp_worker
import pytest
import torch
from foreground import not_ignoring_sigint

import minidl
from minidl.cli import launch
from minidl.cli.experiment import load_data, run
from minidl.cli.signals import Interrupted, handle_signals

TESTS = str(Path(__file__).parent)
#: Failure bounds only: ranks importing torch on a busy 2-core machine take a while.
START_GUARD_S = 300
#: The collective timeout the ranks are given (init_from_env): a launcher that waited for
#: it instead of stopping the job would take this long.
COLLECTIVE_TIMEOUT_S = 120


def ranks_started(
    directory: Path, nproc: int, timeout: float = START_GUARD_S
) -> list[tuple[int, bool]]:
    """(pid, ignores SIGINT) of each rank, once all have joined the job."""
    end = time.monotonic() + timeout
    paths = [directory / f"pid{r}" for r in range(nproc)]
    while not all(p.exists() for p in paths):
        assert time.monotonic() < end, "the ranks did not start"
        time.sleep(0.02)
    found = [p.read_text().split() for p in paths]
    return [(int(pid), ignores == "1") for pid, ignores in found]


def running(pid: int) -> bool:
    """Whether the process exists, zombies included (a launcher must reap its ranks)."""
    return os.path.exists(f"/proc/{pid}")


def assert_gone(directory: Path, nproc: int, grace_s: float = 2.0) -> None:
    pids = [pid for pid, _ in ranks_started(directory, nproc, timeout=0)]
    end = time.monotonic() + grace_s
    while any(running(pid) for pid in pids) and time.monotonic() < end:
        time.sleep(0.02)
    assert [pid for pid in pids if running(pid)] == []


@pytest.fixture(scope="module")
def single() -> tuple[list[dict], list[torch.Tensor]]:
    result = run(dp_worker.CONFIG)
    return result.history, [p.data for p in result.model.parameters()]


@pytest.mark.parametrize("nproc", [2, 3])
def test_data_parallel_equals_one_process(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], single: tuple, nproc: int
) -> None:
    launch.launch(dp_worker.train, nproc, (str(tmp_path),))
    assert_gone(tmp_path, nproc)
    expected_history, expected_weights = single
    for rank in range(nproc):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        for a, b in zip(got["history"], expected_history, strict=True):
            for key in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
                assert a[key] == pytest.approx(b[key], rel=1e-9), (rank, a["epoch"], key)
        for w, e in zip(got["weights"], expected_weights, strict=True):
            torch.testing.assert_close(w, e, rtol=1e-9, atol=1e-12)
    out, err = capfd.readouterr()  # rank 0's output passes through, the others' does not
    assert "stdout of rank 0" in out and "stderr of rank 0" in err
    assert "of rank 1" not in out + err


def test_buffers_are_rank_0s_on_every_rank(tmp_path: Path) -> None:
    nproc, config = 3, dp_worker.CONFIG
    launch.launch(dp_worker.train, nproc, (str(tmp_path), dp_worker.NORM_MODEL))
    got = [torch.load(tmp_path / f"rank{r}.pt") for r in range(nproc)]
    batches = config.epochs * -(-config.n_train // config.batch_size)  # rank 0 gets rows in each
    assert int(got[0]["buffers"]["0.num_batches_tracked"]) == batches
    for other in got[1:]:  # rank 2 trained on 3 fewer batches, and on other rows
        assert other["buffers"].keys() == got[0]["buffers"].keys()
        for name, tensor in other["buffers"].items():
            assert torch.equal(tensor, got[0]["buffers"][name]), name
        assert other["history"] == got[0]["history"]  # evaluated with the same statistics
    # Each training forward, on every rank, found rank 0's buffers of that moment.
    assert [count for count, _ in got[0]["seen"]] == list(range(batches))
    for other in got[1:]:
        assert other["seen"]
        for count, mean in other["seen"]:
            assert torch.equal(mean, got[0]["seen"][count][1]), count
    # Rank 0's own: its statistics moved with its slices alone (as under torch's DDP),
    # starting each batch from rank 0's.
    train, _, _ = load_data(config)
    train = train.to("cpu", torch.float64)
    generator = torch.Generator().manual_seed(config.seed)
    mean, var = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    for _ in range(config.epochs):
        for x, _y in train.batches(config.batch_size, generator):
            xs = x.tensor_split(nproc)[0]
            mean.mul_(0.9).add_(xs.mean(0), alpha=0.1)
            var.mul_(0.9).add_(xs.var(0, unbiased=False), alpha=0.1)
    torch.testing.assert_close(got[0]["buffers"]["0.running_mean"], mean, rtol=1e-12, atol=0)
    torch.testing.assert_close(got[0]["buffers"]["0.running_var"], var, rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("raise", "rank 1 failed: DataError: row 7 of the data is not a number"),
        ("exit", "rank 1 exited with code 3"),
        ("kill", "rank 1 was killed by SIGKILL (exit code -9)"),
    ],
)
def test_the_rank_that_failed_first_is_named_in_one_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], how: str, message: str
) -> None:
    """Rank 0 fails too, after rank 1 (its all_reduce loses its peer), and is not named."""
    with pytest.raises(launch.WorkerFailed) as caught:
        launch.launch(dp_worker.fail, 2, (str(tmp_path), how))
    assert str(caught.value) == f"{message}; stopped the other ranks"
    assert isinstance(caught.value, minidl.MinidlError) and caught.value.exit_code == 1
    assert caught.value.rank == 1
    # Stopped at once, not left to the collective's timeout (from the ranks' start).
    assert time.time() - (tmp_path / "pid1").stat().st_mtime < COLLECTIVE_TIMEOUT_S / 2
    assert_gone(tmp_path, 2)
    _, err = capfd.readouterr()
    assert "stderr of rank 1" in err  # a failed rank's output is shown
    assert "Traceback" not in err and "gloo" not in err  # no peer's error, no teardown noise


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_launcher_stops_every_rank(
    tmp_path: Path, record_property: Callable[[str, object], None], signum: int
) -> None:
    sent: list[float] = []

    def send() -> None:
        ranks_started(tmp_path, 2)
        sent.append(time.monotonic())
        os.kill(os.getpid(), signum)

    threading.Thread(target=send, daemon=True).start()
    with not_ignoring_sigint(), handle_signals(), pytest.raises(Interrupted) as caught:
        launch.launch(dp_worker.wait, 2, (str(tmp_path),))  # as the command line runs it
    elapsed = time.monotonic() - sent[0]
    name = signal.Signals(signum).name
    record_property(
        f"measured: launch, {name} to the launcher to all ranks stopped", f"{elapsed:.2f} s"
    )
    assert caught.value.signum == signum
    assert_gone(tmp_path, 2, grace_s=0.5)  # reaped by the launcher before it returned
    # The ranks were stopped by the launcher's SIGTERM, as Interrupted (not by its SIGKILL
    # after the grace, nor at the end of their own wait).
    assert sorted(p.name for p in tmp_path.glob("stopped*")) == ["stopped0", "stopped1"]


DRIVER = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # see not_ignoring_sigint
sys.path.insert(0, {tests!r})
import dp_worker
from minidl.cli import launch
from minidl.cli.signals import Interrupted
try:
    launch.launch(dp_worker.wait, 2, ({directory!r},))
except Interrupted as e:
    print(f"Error: {{e.message}}", file=sys.stderr)
    sys.exit(e.code)
"""


def test_ctrl_c_at_a_terminal_stops_every_rank(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """SIGINT to the launcher's whole process group, as a terminal sends it: the ranks
    ignore it, the launcher stops them and exits with 130."""
    code = DRIVER.format(tests=TESTS, directory=str(tmp_path))
    driver = subprocess.Popen(
        [sys.executable, "-c", code],
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ranks = ranks_started(tmp_path, 2)
        assert [ignores for _, ignores in ranks] == [True, True]
        start = time.monotonic()
        os.killpg(driver.pid, signal.SIGINT)
        _, err = driver.communicate(timeout=START_GUARD_S)
        elapsed = time.monotonic() - start
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    assert driver.returncode == 130, err
    assert err.splitlines()[-1] == "Error: interrupted by Ctrl-C (SIGINT)"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    record_property(
        "measured: launch, SIGINT to the process group to the launcher's exit", f"{elapsed:.2f} s"
    )
    assert_gone(tmp_path, 2, grace_s=0.5)  # reaped by the launcher before it exited
    assert sorted(p.name for p in tmp_path.glob("stopped*")) == ["stopped0", "stopped1"]
