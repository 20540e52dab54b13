"""Rank entry points for tests/test_distributed.py, in a module the spawned ranks import.

Each rank leaves ``pid<rank>`` (its process id and whether it ignores SIGINT) in the
directory it is given, so that the tests can check that nothing is left running.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

import minidl
from minidl import ModuleBase, hookimpl, registry
from minidl.cli import distributed
from minidl.cli.experiment import TrainConfig, run

#: 201 rows in batches of 20: the last global batch has 1 row, so some ranks get none.
CONFIG = TrainConfig(
    n_train=201, n_test=50, epochs=3, batch_size=20, dtype="float64", lr=0.05, hidden=[8, 8]
)
#: A model whose first layer keeps running statistics of its input.
NORM_MODEL = "runningnorm, linear(8), relu, linear(1), sigmoid"


class RunningNorm(ModuleBase):
    """Batch-norm-like, in tensor ops: in training, the identity that keeps running means
    and variances of its input (and counts its batches) in buffers; in eval mode, the
    input standardised by them. ``seen`` records the buffers each training forward found:
    (batches counted, running mean)."""

    def __init__(self, in_features: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(in_features))
        self.register_buffer("running_var", torch.ones(in_features))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.int64))
        self._scale: Tensor | None = None
        self.seen: list[tuple[int, Tensor]] = []

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self.seen.append((int(self.num_batches_tracked), self.running_mean.clone()))
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(x.mean(0), alpha=m)
            self.running_var.mul_(1 - m).add_(x.var(0, unbiased=False), alpha=m)
            self.num_batches_tracked.add_(1)
            self._scale = None
            return x
        self._scale = (self.running_var + self.eps).rsqrt()
        return (x - self.running_mean) * self._scale

    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output if self._scale is None else grad_output * self._scale


class NormPlugin:
    @hookimpl
    def register_layers(self, register: Any) -> None:
        register("runningnorm", RunningNorm)


@contextmanager
def norm_plugin() -> Iterator[None]:
    name = "test-runningnorm"
    registry.add(NormPlugin(), name, "module")
    try:
        yield
    finally:
        registry.unregister(name=name)


def _started(directory: str) -> int:
    """Join the job, note this rank's pid, and print a line on stdout and on stderr."""
    torch.set_num_threads(1)  # tiny matrices, and several ranks on a shared machine
    distributed.init_from_env()
    rank = dist.get_rank()
    ignores = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    path = Path(directory, f"pid{rank}")
    path.with_suffix(".tmp").write_text(f"{os.getpid()} {int(ignores)}")
    path.with_suffix(".tmp").replace(path)
    print(f"stdout of rank {rank}", flush=True)
    print(f"stderr of rank {rank}", file=sys.stderr, flush=True)
    return rank


def train(directory: str, model: str | None = None) -> None:
    """Train CONFIG data-parallel; every rank saves its history, weights and buffers."""
    rank = _started(directory)
    with norm_plugin():
        result = run(CONFIG.replace(model=model), data_parallel=True)
    torch.save(
        {
            "history": list(result.history),
            "weights": [p.data.clone() for p in result.model.parameters()],
            "buffers": {k: b.clone() for k, b in minidl.module.named_buffers(result.model)},
            "seen": getattr(result.model[0], "seen", None),
        },
        Path(directory, f"rank{rank}.pt"),
    )
    distributed.shutdown()


def fail(directory: str, how: str) -> None:
    """Rank 1 fails (``raise``, ``exit`` or ``kill``) while rank 0 waits in a collective;
    rank 0 then fails too, its peer gone, and does not stop when the launcher asks."""
    rank = _started(directory)
    t = torch.ones(3)
    dist.all_reduce(t)
    if rank == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if rank == 1:
        if how == "raise":
            raise minidl.DataError("row 7 of the data is not a number")
        if how == "exit":
            os._exit(3)
        os.kill(os.getpid(), signal.SIGKILL)
    dist.all_reduce(t)  # rank 1 never comes: this fails once its connection is gone


def wait(directory: str, seconds: float = 300.0) -> None:
    """Take part in collectives until stopped (or ``seconds`` pass); leave
    ``stopped<rank>`` when stopped (the launcher's SIGTERM, or its peer gone because of
    it), not when the time ran out nor when killed outright."""
    rank = _started(directory)
    ran_out = False
    try:
        t = torch.ones(3)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            dist.all_reduce(t)
            time.sleep(0.01)
        ran_out = True
    finally:
        if not ran_out:
            Path(directory, f"stopped{rank}").touch()
    distributed.shutdown()
