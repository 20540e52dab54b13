"""What the CLI tests share: invoking ``minidl-run`` in-process, on one thread."""

from collections.abc import Iterator

import pytest
import torch
from click.testing import CliRunner, Result

from minidl.cli import cli


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny matrices: one intra-op thread is faster, and kinder to a shared machine.
    Imported by a test module, it applies to every test there."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def invoke(*args: str, code: int = 0) -> Result:
    """Run ``minidl-run ARGS`` and check its exit code."""
    result = CliRunner().invoke(cli, list(args), prog_name="minidl-run")
    assert result.exit_code == code, (result.output, result.exception)
    return result
