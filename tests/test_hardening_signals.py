"""Ctrl-C and SIGTERM during `train`, `sweep --jobs 2` and `train --nproc 2`, with real
processes: exit 130 or 143 with one line and no traceback, no process left behind, an
earlier run's results in --out whole and no half-written file; and an interrupted
`train --out` continued with `--resume` ends exactly where an uninterrupted run does.

The signal-to-exit times are measured and shown in the summary (no assertion on them: the
machine is shared); a run that does not stop within the hang guard fails the test."""

from __future__ import annotations

import filecmp
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_hardening_common import (  # noqa: F401
    BIN,
    assert_gone,
    environment,
    fresh_registry,
    invoke,
    write_plugin,
)

HANG_GUARD_S = 30
MODEL = "slow, linear(8), relu, linear(1), sigmoid"


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def interrupt(
    tmp_path: Path,
    args: list[str],
    sig: signal.Signals,
    *,
    processes: int = 1,
    group: bool = False,
    ready: Callable[[], bool] | None = None,
) -> tuple[subprocess.CompletedProcess[str], float, list[int]]:
    """Start `minidl-run ARGS` with the slow plugin, wait until `processes` of its processes
    are training, send `sig` (to the whole process group, as a terminal's Ctrl-C does, when
    `group`), and return the finished process, the seconds it took to exit, and the pids
    of the processes that trained."""
    plugin = write_plugin(tmp_path)
    marker = tmp_path / "training"
    env = environment(
        SLOW_MARKER=str(marker), SLOW_SECONDS="0.01", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1"
    )
    process = subprocess.Popen(
        [str(BIN / "minidl-run"), "--layer-plugin", str(plugin), *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a group signal reaches it alone
    )
    deadline = time.monotonic() + HANG_GUARD_S * 2

    def training() -> list[int]:
        return [int(p.name.rsplit(".", 1)[1]) for p in tmp_path.glob("training.*")]

    while len(training()) < processes or (ready is not None and not ready()):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never started training"
        time.sleep(0.02)
    time.sleep(0.2)  # well inside the loop, not at its first step
    start = time.monotonic()
    if group:
        os.killpg(process.pid, sig)
    else:
        process.send_signal(sig)
    try:
        stdout, stderr = process.communicate(timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"still running {HANG_GUARD_S} s after {sig.name}")
    seconds = time.monotonic() - start
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return done, seconds, training()


def assert_stopped(done: subprocess.CompletedProcess[str], sig: signal.Signals) -> str:
    assert done.returncode == 128 + sig, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    how = "Ctrl-C (SIGINT)" if sig == signal.SIGINT else "SIGTERM"
    assert lines[0].startswith(f"Error: interrupted by {how}"), lines[0]
    return lines[0]


def no_temporary_files(directory: Path) -> None:
    assert not [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_train_stops_promptly_and_keeps_earlier_results_whole(
    tmp_path: Path, sig: signal.Signals, record_property: Callable[[str, object], None]
) -> None:
    out = tmp_path / "out"
    invoke("train", "--epochs", "1", "--n-train", "50", "--n-test", "20", "--out", str(out))
    before = snapshot(out)
    args = ["train", "--model", MODEL, "--epochs", "200", "--n-train", "400", "--out", "out"]
    done, seconds, pids = interrupt(
        tmp_path, args, sig, ready=(out / "checkpoint.safetensors").exists
    )
    line = assert_stopped(done, sig)
    assert "continue from the checkpoint with: minidl-run --layer-plugin " in line
    assert line.endswith(
        " train --model 'slow, linear(8), relu, linear(1), sigmoid' --epochs 200 --n-train 400 --out out --resume"
    )
    record_property(f"hardening: train {sig.name} to exit", f"{seconds:.2f} s")
    assert_gone(pids)
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k != "checkpoint.safetensors"} == before
    no_temporary_files(out)


@pytest.mark.parametrize(("sig", "group"), [(signal.SIGINT, True), (signal.SIGTERM, False)])
def test_sweep_with_workers_stops_promptly_and_leaves_no_worker(
    tmp_path: Path, sig: signal.Signals, group: bool, record_property: Callable[[str, object], None]
) -> None:
    """SIGINT to the process group is a terminal's Ctrl-C: it reaches the workers too."""
    out = tmp_path / "out"
    args = ["sweep", "--activation", "slow", "--optimizer", "sgd", "--hidden", "4", "--rounds", "4",
            "--epochs", "100", "--n-train", "400", "--jobs", "2", "--out", "out"]  # fmt: skip
    out.mkdir()
    (out / "sweep.json").write_text('{"earlier": "results"}\n')
    done, seconds, pids = interrupt(tmp_path, args, sig, processes=2, group=group)
    assert_stopped(done, sig)
    record_property(
        f"hardening: sweep --jobs 2 {sig.name}{' (process group)' if group else ''} to exit",
        f"{seconds:.2f} s",
    )
    assert len(pids) == 2 and os.getpid() not in pids
    assert_gone(pids)
    assert snapshot(out) == {"sweep.json": b'{"earlier": "results"}\n'}


def test_data_parallel_train_stops_promptly_in_one_line(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    args = ["train", "--model", MODEL, "--epochs", "200", "--n-train", "400", "--nproc", "2"]
    done, seconds, pids = interrupt(tmp_path, args, signal.SIGINT, processes=2)
    assert_stopped(done, signal.SIGINT)  # the launcher's line; its ranks stay silent
    record_property("hardening: train --nproc 2 SIGINT to exit", f"{seconds:.2f} s")
    assert_gone(pids)


@pytest.mark.usefixtures("fresh_registry")
def test_resume_after_a_real_sigint_ends_where_the_uninterrupted_run_does(tmp_path: Path) -> None:
    args = ["train", "--model", MODEL, "--epochs", "12", "--n-train", "200", "--batch-size", "50",
            "--n-test", "50", "--out"]  # fmt: skip
    done, _, _ = interrupt(
        tmp_path, [*args, "run"], signal.SIGINT, ready=(tmp_path / "run" / "checkpoint.safetensors").exists
    )  # fmt: skip
    assert_stopped(done, signal.SIGINT)
    assert not (tmp_path / "run" / "metrics.json").exists()  # it did stop mid-run
    plugin = str(tmp_path / "hardening_plugin.py")
    # The rest, and the reference, in this process: one torch thread, as the child had.
    resumed = invoke("--layer-plugin", plugin, "train", "--out", str(tmp_path / "run"), "--resume")
    assert "resuming the run in" in resumed.stderr
    invoke("--layer-plugin", plugin, *args, str(tmp_path / "reference"))
    for name in (
        "history.csv",
        "model.safetensors",
        "model.json",
        "metrics.json",
        "misclassified.csv",
    ):
        assert filecmp.cmp(tmp_path / "run" / name, tmp_path / "reference" / name, shallow=False), (
            name
        )
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()
