"""Helpers shared by the hardening tests (no tests here): running minidl-run in-process and
as a real process, a fresh plugin registry per test, and small plugins that misbehave."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from minidl import registry
from minidl.cli import cli

BIN = Path(sys.executable).parent
#: a seconds-long run made tiny: every hardening test trains for milliseconds
FAST = ["--epochs", "2", "--n-train", "100", "--n-test", "50"]
#: the exit codes docs/errors.md documents
EXIT_CODES = {0, 1, 2, 130, 143}

PLUGINS = textwrap.dedent(
    '''
    import os
    import signal
    import time
    from pathlib import Path

    import torch

    import minidl


    class Slow(minidl.ModuleBase):
        """The identity, SLOW_SECONDS per forward; touches SLOW_MARKER.<pid> when it runs."""

        def forward(self, x):
            marker = os.environ.get("SLOW_MARKER")
            if marker:
                Path(f"{marker}.{os.getpid()}").touch()
            time.sleep(float(os.environ.get("SLOW_SECONDS", "0")))
            return x

        def backward(self, grad):
            return grad


    class Bomb(minidl.ModuleBase):
        """The identity; its forward call number BOMB_AT sends BOMB_SIGNAL to this process."""

        def __init__(self):
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            if self.calls == int(os.environ.get("BOMB_AT", "0")):
                os.kill(os.getpid(), getattr(signal, os.environ.get("BOMB_SIGNAL", "SIGINT")))
            return x

        def backward(self, grad):
            return grad


    class Narrow(minidl.ModuleBase):
        """Correct forward, but backward returns the gradient of a single column."""

        def forward(self, x):
            return x * 2

        def backward(self, grad):
            return grad[:, :1] * 2


    class Twice(minidl.ModuleBase):
        """Doubles the width (x, x) but does not say so (no out_features)."""

        def forward(self, x):
            return torch.cat([x, x], 1)

        def backward(self, grad):
            half = grad.shape[1] // 2
            return grad[:, :half] + grad[:, half:]


    class Fragile(minidl.ModuleBase):
        """The identity, except in the round seeded FRAGILE_SEED (a plugin's bug: it raises)
        or FRAGILE_EXIT_SEED (the process dies outright)."""

        def forward(self, x):
            seed = torch.initial_seed()  # the round's seed: setup() seeds torch with it
            if seed == int(os.environ.get("FRAGILE_SEED", "-1")):
                raise RuntimeError("fragile layer broke")
            if seed == int(os.environ.get("FRAGILE_EXIT_SEED", "-1")):
                os._exit(9)
            return x

        def backward(self, grad):
            return grad


    @minidl.hookimpl
    def register_layers(register):
        register("slow", Slow)
        register("bomb", Bomb)
        register("narrow", Narrow)
        register("twice", Twice)
        register("fragile", Fragile)
    '''
)


def write_plugin(directory: Path) -> Path:
    path = directory / "hardening_plugin.py"
    path.write_text(PLUGINS)
    return path


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts as a new minidl-run process would: no plugin loaded, the CLI's
    commands as built, one torch thread."""
    monkeypatch.delenv(registry.PLUGINS_ENV, raising=False)
    commands = dict(cli.commands)
    modules = set(sys.modules)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    reset_process()
    try:
        yield
    finally:
        reset_process()
        cli.commands.clear()
        cli.commands.update(commands)
        for name in set(sys.modules) - modules:
            if name.startswith("minidl_plugin_"):
                del sys.modules[name]
        torch.set_num_threads(threads)


def reset_process() -> None:
    registry.reset()
    cli._hooked = None  # type: ignore[attr-defined]


def invoke(*args: str, code: int | None = 0) -> Result:
    result = CliRunner().invoke(cli, list(args), prog_name="minidl-run")
    if code is not None:
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def error_line(result: Result, *fragments: str) -> str:
    """The one line that says what went wrong: no traceback, warnings aside."""
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if not line.startswith("Warning: ")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    # The catch-all for bugs: an error minidl anticipated never reads like this.
    assert "MINIDL_TRACEBACK" not in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(extra)
    return env


def minidl_run(
    *args: str, cwd: Path, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "minidl-run"), *args],
        cwd=cwd,
        env=environment(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_gone(pids: list[int], grace_s: float = 10) -> None:
    """Every one of these processes has exited (a zombie waiting for its parent counts)."""
    deadline = time.monotonic() + grace_s
    for pid in pids:
        while True:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                break
            if state == "Z":
                break
            assert time.monotonic() < deadline, f"process {pid} outlived the job"
            time.sleep(0.05)


def assert_no_children_left() -> None:
    """No worker process of this one is still running. (Asked of the system, not of
    multiprocessing's bookkeeping, which may lag behind a worker its pool reaped.)"""
    assert_gone([p.pid for p in multiprocessing.active_children() if p.pid is not None])
