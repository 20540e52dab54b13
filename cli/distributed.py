"""Data parallelism on torch.distributed, without autograd hooks.

Every rank draws the same global mini-batches (same shuffling seed), trains on its own
slice of each, and before each optimizer step (a callback's ``on_after_backward``) one
``all_reduce`` over the flat gradient buffer sums the slices' gradients weighted by slice
size. The result is the gradient of
the global batch's mean loss, so every rank takes the same step as a single process would.
The model's buffers (running statistics) are rank 0's, broadcast before each batch's
forward pass as torch's ``DistributedDataParallel`` does by default.

:func:`minidl.cli.launch.launch` starts the ranks of a job on this machine; ``torchrun``
starts them on several.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from minidl import Callback, Dataset, FlatOptimizer, Module, Trainer
from minidl.flat import FlatParameters
from minidl.module import named_buffers
from minidl.protocols import Optimizer


class DataParallel(Callback):
    """The callback that makes one rank of a process group train as part of the whole;
    :func:`minidl.cli.run` puts it first among the callbacks (so that gradient clipping,
    say, sees the summed gradient), :attr:`stop_sync` last, and passes
    ``batches=dp.batches`` to :func:`minidl.fit`.

    The optimizer's parameters must live in one flat buffer (every built-in optimizer's
    do). At the start rank 0's parameters and the model's buffers are broadcast, so all
    ranks start equal; the buffers again after every batch, so every rank's next forward
    pass, and each epoch's evaluation, uses rank 0's running statistics.
    """

    def __init__(
        self, optimizer: Optimizer, model: Any = None, group: dist.ProcessGroup | None = None
    ) -> None:
        if not dist.is_initialized():
            raise RuntimeError(
                "DataParallel needs a process group: call "
                "minidl.cli.distributed.init_from_env() under torchrun or launch()"
            )
        if not isinstance(optimizer, FlatOptimizer):
            raise TypeError(
                f"DataParallel needs an optimizer that keeps its parameters in one flat buffer "
                f"(a minidl.FlatOptimizer), got {type(optimizer).__name__}"
            )
        self.flat: FlatParameters = optimizer.flat
        self.model = model
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self._src = dist.get_global_rank(group, 0) if group is not None else 0
        self._weight = 1.0
        self.stop_sync = _StopSync(self)

    def on_train_start(self, trainer: Trainer, model: Module) -> None:
        dist.broadcast(self.flat.data, src=self._src, group=self.group)
        self.broadcast_buffers()

    def on_after_backward(self, trainer: Trainer, model: Module) -> None:
        # This rank's gradient is of its slice's mean loss: weighted by the slice's share
        # of the batch and summed, it is the gradient of the whole batch's mean loss.
        self.flat.grad.mul_(self._weight)
        dist.all_reduce(self.flat.grad, group=self.group)

    def on_batch_end(self, trainer: Trainer, model: Module) -> None:
        # Before the next forward pass, as DDP's broadcast_buffers; after the last, before
        # the epoch's evaluation.
        self.broadcast_buffers()

    def broadcast_buffers(self) -> None:
        """Copy rank 0's buffers into this rank's, in place: into the very tensors the
        model's ``buffers()`` returns now (a layer may have rebound them since)."""
        if self.model is None:
            return
        buckets: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
        for _, b in named_buffers(self.model):
            buckets.setdefault((b.device, b.dtype), []).append(b)
        for tensors in buckets.values():  # one collective per dtype and device
            if len(tensors) == 1 and tensors[0].is_contiguous():
                dist.broadcast(tensors[0], src=self._src, group=self.group)
                continue
            packed = torch.cat([t.reshape(-1) for t in tensors])
            dist.broadcast(packed, src=self._src, group=self.group)
            if self.rank != 0:
                for t, part in zip(
                    tensors, packed.split([t.numel() for t in tensors]), strict=True
                ):
                    t.copy_(part.view_as(t))

    def batches(
        self, data: Dataset, batch_size: int, generator: torch.Generator | None
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """This rank's slice of every global batch. A rank whose slice is empty (a last
        batch smaller than the world) takes the batch's first example with weight 0, so it
        joins the step's collectives through the same path with a zero gradient."""
        for x, y in data.batches(batch_size, generator):
            xs = x.tensor_split(self.world_size)[self.rank]
            ys = y.tensor_split(self.world_size)[self.rank]
            self._weight = len(xs) / len(x)
            yield (xs, ys) if len(xs) else (x[:1], y[:1])


class _StopSync(Callback):
    """Last among the callbacks: every rank stops when rank 0 does, at the same epoch."""

    def __init__(self, parallel: DataParallel) -> None:
        self.parallel = parallel

    def on_epoch_end(self, trainer: Trainer, model: Module) -> None:
        flag = torch.tensor([float(trainer.should_stop)])
        dist.broadcast(flag, src=self.parallel._src, group=self.parallel.group)
        if bool(flag) and not trainer.should_stop:
            trainer.stop("rank 0 stopped")
        trainer.should_stop = bool(flag)


def world_from_env() -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's environment variables."""
    env = os.environ
    return (
        int(env.get("RANK", "0")),
        int(env.get("LOCAL_RANK", "0")),
        int(env.get("WORLD_SIZE", "1")),
    )


def init_from_env(device: str = "cpu", timeout_s: float = 120.0) -> str:
    """Join the process group that torchrun (or :func:`launch`) described in the
    environment: gloo on CPU, NCCL on CUDA. Returns the device this rank should use."""
    _, local_rank, world_size = world_from_env()
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
