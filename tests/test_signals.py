"""Ctrl-C and SIGTERM sent to a real `minidl-run train` process: exit 130 or 143 promptly,
with one "Error:" line naming the signal and the command that resumes the run, no
traceback, the results of an earlier run in --out whole and no temporary file; and a run
stopped by a real SIGINT and continued with --resume ends exactly where an uninterrupted
run does.

The signal goes once the run is seen to be where it must be (its checkpoint written, and
its next step holding on for the signal), so the test never races the run's end on a
busy machine. The signal-to-exit times are measured and shown in the summary (no
assertion on them: the machine is shared); a run that does not stop within the hang guard
fails the test."""

from __future__ import annotations

import filecmp
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from foreground import not_ignoring_sigint
from test_cli_errors import PROGRESS, fresh_cli  # noqa: F401 (a fixture)

from minidl.cli import plots as cli_plots
from minidl.cli.checkpoint import CHECKPOINT

SCRIPT = Path(sys.executable).with_name("minidl-run")
#: Failure bounds only: the run's start (importing torch on a busy 2-core machine can take
#: most of a minute) and its exit after the signal.
START_GUARD_S, HANG_GUARD_S = 300, 120
MODEL = "slow, linear(8), relu, linear(1), sigmoid"
RESULTS = ("history.csv", "model.safetensors", "model.json", "metrics.json", "misclassified.csv")

SLOW = textwrap.dedent(
    '''
    import os
    import time
    from pathlib import Path

    import minidl


    class Slow(minidl.ModuleBase):
        """The identity, SLOW_SECONDS per forward. Once the file SLOW_HOLD_AFTER exists (the
        run's checkpoint), its next forward touches SLOW_HELD and waits there to be
        stopped by a signal (at most two minutes, so that nothing outlives a failed test)."""

        def forward(self, x):
            after = os.environ.get("SLOW_HOLD_AFTER")
            if after and Path(after).exists():
                Path(os.environ["SLOW_HELD"]).touch()
                end = time.monotonic() + 120
                while time.monotonic() < end:
                    time.sleep(0.01)
            time.sleep(float(os.environ.get("SLOW_SECONDS", "0")))
            return x

        def backward(self, grad):
            return grad


    @minidl.hookimpl
    def register_layers(register):
        register("slow", Slow)
    '''
)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def interrupt(
    tmp_path: Path, args: list[str], sig: signal.Signals, hold_after: Path
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Start `minidl-run -p slow.py ARGS`, wait until ``hold_after`` exists and the run
    holds on in its next step, send ``sig``, and return the finished process and the
    seconds it took to exit."""
    plugin = tmp_path / "slow.py"
    plugin.write_text(SLOW)
    held = tmp_path / "held"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(
        SLOW_HOLD_AFTER=str(hold_after),
        SLOW_HELD=str(held),
        SLOW_SECONDS="0",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    env.pop("MINIDL_TRACEBACK", None)
    with not_ignoring_sigint():  # a command started ignoring SIGINT keeps ignoring it
        process = subprocess.Popen(
            [str(SCRIPT), "-p", str(plugin), *args],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, away from pytest's terminal
        )
    deadline = time.monotonic() + START_GUARD_S
    while not held.exists():  # inside the loop, past its first epoch
        assert process.poll() is None, process.communicate()
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"the run never got past its first epoch: {process.communicate()}")
        time.sleep(0.01)
    start = time.monotonic()
    process.send_signal(sig)
    try:
        stdout, stderr = process.communicate(timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"still running {HANG_GUARD_S} s after {sig.name}")
    seconds = time.monotonic() - start
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), seconds


def stopped_line(done: subprocess.CompletedProcess[str], sig: signal.Signals) -> str:
    """The one line a stopped run prints, checked."""
    assert done.returncode == 128 + sig, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if not PROGRESS.match(line)]
    lines = [line for line in lines if not line.startswith("Warning: ")]
    assert len(lines) == 1, done.stderr
    how = "Ctrl-C (SIGINT)" if sig == signal.SIGINT else "SIGTERM"
    assert lines[0].startswith(f"Error: interrupted by {how}; "), lines[0]
    return lines[0]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_train_stops_promptly_and_keeps_earlier_results_whole(
    tmp_path: Path,
    sig: signal.Signals,
    invoke,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
    record_property: Callable[[str, object], None],
) -> None:
    out = tmp_path / "out"
    monkeypatch.setattr(cli_plots, "available", lambda: False)
    invoke("train", "--epochs", "1", "--n-train", "50", "--n-test", "20", "--out", str(out))
    before = snapshot(out)
    args = ["train", "--model", MODEL, "--epochs", "200", "--n-train", "400", "--out", "out"]
    done, seconds = interrupt(tmp_path, args, sig, hold_after=out / CHECKPOINT)
    line = stopped_line(done, sig)
    assert line.endswith(
        f"continue from the checkpoint with: minidl-run -p {tmp_path / 'slow.py'} train --model "
        "'slow, linear(8), relu, linear(1), sigmoid' --epochs 200 --n-train 400 --out out --resume"
    )
    record_property(f"measured: train {sig.name} to exit", f"{seconds:.2f} s")
    assert "metrics.json" in before
    after = snapshot(out)
    # The new run's checkpoint and history so far; the earlier run's results went when it
    # started (never mixed with the new run's history), metrics.json first.
    assert set(after) == {CHECKPOINT, "history.csv"}
    rows = after["history.csv"].decode().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, len(rows) + 1))
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.usefixtures("fresh_cli")
def test_resume_after_a_real_sigint_ends_where_the_uninterrupted_run_does(
    tmp_path: Path,
    invoke,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    args = ["train", "--model", MODEL, "--epochs", "12", "--n-train", "200", "--batch-size", "50",
            "--n-test", "50", "--no-diagnostics", "--out"]  # fmt: skip
    run = tmp_path / "run"
    done, _ = interrupt(tmp_path, [*args, "run"], signal.SIGINT, hold_after=run / CHECKPOINT)
    stopped_line(done, signal.SIGINT)
    assert not (run / "metrics.json").exists()  # it did stop mid-run
    plugin = str(tmp_path / "slow.py")
    monkeypatch.setattr(cli_plots, "available", lambda: False)
    # The rest, and the reference, in this process: one torch thread, as the child had.
    resumed = invoke("-p", plugin, "train", "--out", str(run), "--resume")
    assert resumed.stderr.startswith(f"resuming the run in {run} after epoch ")
    invoke("-p", plugin, *args, str(tmp_path / "reference"))
    for name in RESULTS:
        assert filecmp.cmp(run / name, tmp_path / "reference" / name, shallow=False), name
    assert not (run / CHECKPOINT).exists()
