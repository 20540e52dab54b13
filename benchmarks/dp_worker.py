"""One rank of the data-parallel throughput benchmark (see benchmarks/scaling.py): started
by :func:`minidl.cli.launch.launch`, or called in the benchmark's own process for one."""

from __future__ import annotations

import json
import time

import torch

import minidl
from minidl.cli.distributed import DataParallel, init_from_env, shutdown, world_from_env
from minidl.cli.experiment import TrainConfig, setup


def main(out: str, n_train: int, batch_size: int, epochs: int, threads: int) -> None:
    """Train the seed network on ``n_train`` points for ``epochs`` epochs (no evaluation)
    after one warm-up epoch; rank 0 writes the seconds and samples to ``out``."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        init_from_env()
        rank, _, world_size = world_from_env()
        config = TrainConfig(n_train=n_train, n_test=1000, batch_size=batch_size, lr=1e-3)
        model, loss, optimizer, train, _, _ = setup(config)
        parallel = DataParallel(optimizer, model) if world_size > 1 else None

        def train_epochs(n: int) -> None:
            minidl.fit(
                model,
                loss,
                optimizer,
                train,
                epochs=n,
                batch_size=batch_size,
                evaluate_every_epoch=False,
                callbacks=[parallel, parallel.stop_sync] if parallel else [],
                batches=parallel.batches if parallel else None,
            )

        train_epochs(1)  # warm-up: allocator, first collective
        if world_size > 1:
            torch.distributed.barrier()
        start = time.perf_counter()
        train_epochs(epochs)
        seconds = time.perf_counter() - start
        if rank == 0:
            with open(out, "w") as f:
                json.dump({"seconds": seconds, "samples": n_train * epochs}, f)
    finally:
        shutdown()
        torch.set_num_threads(before)
