"""What the tests share: one ``invoke`` of ``minidl-run``, plugin registration that is
undone, one torch thread, and the numbers some tests measure."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

import minidl
from minidl.cli import cli

# The torch twin lives with the benchmarks, which compare against it too.
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny matrices: one intra-op thread is faster, and kinder to a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def invoke() -> Callable[..., Result]:
    """``invoke("train", "--epochs", "2", code=0)``: run ``minidl-run`` in this process
    and check its exit code (``code=None``: any); ``result.stdout`` and ``result.stderr``
    are apart."""

    def run(*args: str, code: int | None = 0, env: dict[str, str] | None = None) -> Result:
        result = CliRunner().invoke(cli, list(args), prog_name="minidl-run", env=env)
        if code is not None:
            assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result

    return run


@pytest.fixture
def plugin() -> Iterator[Callable[[object, str], str]]:
    """``plugin(obj, name)`` registers a plugin object for one test; it and anything the
    test blocked or broke is forgotten afterwards."""
    registry = minidl.registry

    def register(obj: object, name: str = "test-plugin") -> str:
        registry.add(obj, name, "module", strict=True)
        return name

    try:
        yield register
    finally:
        registry.reset()


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    """Numbers tests measure (fuzz cases tried, signal-to-exit latencies), recorded with
    record_property("measured: ...", value), shown whatever -s says."""
    lines = {  # from any phase's report (a fixture records at teardown), once each
        f"{name.removeprefix('measured: ')}: {value}": None
        for reports in terminalreporter.stats.values()
        for report in reports
        for name, value in getattr(report, "user_properties", ())
        if name.startswith("measured: ")
    }
    if lines:
        terminalreporter.section("measured")
        for line in lines:
            terminalreporter.write_line(line)
