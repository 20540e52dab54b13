"""Data parallelism on torch.distributed, without autograd hooks.

Every rank draws the same global mini-batches (same shuffling seed), trains on its own
slice of each, and before each optimizer step one ``all_reduce`` over the flat gradient
buffer sums the slices' gradients weighted by slice size. The result is the gradient of
the global batch's mean loss, so every rank takes the same step as a single process would.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor

from .data import Dataset
from .flat import FlatParameters
from .optim import FlatOptimizer
from .protocols import Optimizer


class DataParallel:
    """An optimizer wrapper for one rank of a process group; pass it to :func:`minidl.fit`.

    The wrapped optimizer's parameters must live in one flat buffer (every built-in
    optimizer's do); rank 0's initial weights are broadcast so all ranks start equal.
    """

    def __init__(self, optimizer: Optimizer, group: dist.ProcessGroup | None = None) -> None:
        if not dist.is_initialized():
            raise RuntimeError(
                "DataParallel needs a process group: call minidl.distributed.init_from_env() "
                "under torchrun or `minidl-run train --nproc N`"
            )
        if not isinstance(optimizer, FlatOptimizer):
            raise TypeError(
                f"DataParallel needs an optimizer that keeps its parameters in one flat buffer "
                f"(a minidl.FlatOptimizer), got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        self.flat: FlatParameters = optimizer.flat
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        dist.broadcast(
            self.flat.data, src=dist.get_global_rank(group, 0) if group else 0, group=group
        )
        self._weight = 1.0

    @property
    def lr(self) -> float:
        return self.optimizer.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.optimizer.lr = value

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()

    def step(self) -> None:
        self.flat.grad.mul_(self._weight)
        dist.all_reduce(self.flat.grad, group=self.group)
        self.optimizer.step()

    def batches(
        self, data: Dataset, batch_size: int, generator: torch.Generator | None
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """This rank's slice of every global batch. A rank whose slice is empty (a last
        batch smaller than the world) still joins the step's all_reduce, with zero gradient."""
        for x, y in data.batches(batch_size, generator):
            xs, ys = (
                x.tensor_split(self.world_size)[self.rank],
                y.tensor_split(self.world_size)[self.rank],
            )
            self._weight = len(xs) / len(x)
            if len(xs):
                yield xs, ys
            else:
                self.zero_grad()
                self.step()


def world_from_env() -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's environment variables."""
    env = os.environ
    return (
        int(env.get("RANK", "0")),
        int(env.get("LOCAL_RANK", "0")),
        int(env.get("WORLD_SIZE", "1")),
    )


def init_from_env(device: str = "cpu", timeout_s: float = 120.0) -> str:
    """Join the process group that torchrun (or ``--nproc``) described in the environment:
    gloo on CPU, NCCL on CUDA. Returns the device this rank should use."""
    rank, local_rank, world_size = world_from_env()
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    if device == "cuda" and world_size > 1:
        torch.cuda.set_device(local_rank)
        return f"cuda:{local_rank}"
    return device


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerFailed(RuntimeError):
    def __init__(self, rank: int, returncode: int, error: str = "") -> None:
        self.rank, self.returncode, self.error = rank, returncode, error
        what = f": {error}" if error else f" with exit code {returncode}"
        super().__init__(f"worker rank {rank} failed{what}; stopped the other ranks")


#: Set in the environment of the ranks that :func:`launch` starts: a directory where a
#: failing rank leaves its one-line error (see :func:`report_failure`).
LAUNCHED = "MINIDL_LAUNCHED"


def report_failure(rank: int, error: str) -> None:
    """Called by a rank of :func:`launch` that fails: its error, timed, for the launcher."""
    directory = os.environ.get(LAUNCHED)
    if not directory or not os.path.isdir(directory):
        return
    record = json.dumps({"rank": rank, "time": time.monotonic(), "error": error})
    path = os.path.join(directory, f"rank{rank}.error")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(record)
    os.replace(path + ".tmp", path)


def _first_failure(directory: str, failed: int, codes: list[int | None]) -> WorkerFailed:
    """The rank that failed first, by the times the ranks reported: when one rank fails, the
    others fail after it (a collective's peer is gone), and those are not the cause."""
    reports = []
    for name in os.listdir(directory):
        if name.endswith(".error"):
            try:
                with open(os.path.join(directory, name), encoding="utf-8") as f:
                    reports.append(json.load(f))
            except (OSError, ValueError):
                continue
    if not reports:  # killed, or crashed before it could say why
        return WorkerFailed(failed, codes[failed] or 0)
    first = min(reports, key=lambda r: float(r["time"]))
    rank = int(first["rank"])
    return WorkerFailed(rank, codes[rank] or 0, str(first["error"]))


def launch(command: Sequence[str], nproc: int, grace_s: float = 5.0) -> None:
    """Run ``command`` as ``nproc`` ranks of one job on this machine, as torchrun would.

    Only rank 0's stdout is kept; the ranks' stderr is rank 0's, shown once the job is done.
    If any rank fails, the others are stopped at once and :class:`WorkerFailed` names the
    rank that failed first, with its error: a dead rank never leaves the rest hanging in a
    collective, and the ranks that fail after it (their peer gone) add no noise.
    """
    with tempfile.TemporaryDirectory(prefix="minidl-launch-") as directory:
        env = dict(
            os.environ,
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(_free_port()),
            WORLD_SIZE=str(nproc),
            LOCAL_WORLD_SIZE=str(nproc),
            **{LAUNCHED: directory},
        )
        logs = [open(os.path.join(directory, f"rank{r}.stderr"), "w+b") for r in range(nproc)]  # noqa: SIM115
        procs = [
            subprocess.Popen(
                list(command),
                env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                stdout=None if r == 0 else subprocess.DEVNULL,
                stderr=logs[r],
            )
            for r in range(nproc)
        ]
        try:
            while True:
                codes = [p.poll() for p in procs]
                failed = next((r for r, c in enumerate(codes) if c not in (None, 0)), None)
                if failed is not None:
                    failure = _first_failure(directory, failed, codes)
                    if os.environ.get("MINIDL_TRACEBACK"):  # asked for: where it failed
                        logs[failure.rank].seek(0)
                        sys.stderr.write(logs[failure.rank].read().decode("utf-8", "replace"))
                    raise failure
                if all(c == 0 for c in codes):
                    logs[0].seek(0)
                    sys.stderr.write(logs[0].read().decode("utf-8", "replace"))
                    return
                time.sleep(0.05)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            deadline = time.monotonic() + grace_s
            for p in procs:
                try:
                    p.wait(max(deadline - time.monotonic(), 0))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            for log in logs:
                log.close()


def self_command() -> list[str]:
    """How to run this same ``minidl-run`` again in a subprocess."""
    return [sys.executable, "-c", "from minidl.cli import main; main()"]
