"""One thread for every test; the package must be installed (its layers load through its
entry point), so without it these tests are skipped, not failed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

pytest.importorskip("minidl_text", reason="minidl-text is not installed")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One thread: results do not depend on it, time does (on a busy machine two threads
    wait on each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
