"""One rank of the data-parallel throughput benchmark (see benchmarks/scaling.py)."""

from __future__ import annotations

import json
import sys
import time

import torch

import minidl
from minidl import distributed


def main(out: str, n_train: int, batch_size: int, epochs: int, threads: int) -> None:
    torch.set_num_threads(threads)
    distributed.init_from_env()
    rank, _, world_size = distributed.world_from_env()
    config = minidl.TrainConfig(n_train=n_train, n_test=1000, batch_size=batch_size, lr=1e-3)
    model, loss, optimizer, train, test = minidl.experiment.setup(config)
    stepper = distributed.DataParallel(optimizer) if world_size > 1 else optimizer

    def train_epochs(n: int) -> None:
        minidl.fit(
            model, loss, stepper, train, epochs=n, batch_size=batch_size, evaluate_every_epoch=False
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
    distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:6]))
