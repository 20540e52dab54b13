"""One rank of a data-parallel test job: train, and have rank 0 save history and weights."""

import json
import sys

import torch

import minidl
from minidl import distributed

out, batch_size, fail_rank = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
distributed.init_from_env()
config = minidl.TrainConfig(
    n_train=201, n_test=50, epochs=3, batch_size=batch_size, dtype="float64", lr=0.05
)
model, loss, optimizer, train, test = minidl.experiment.setup(config)
rank = torch.distributed.get_rank()
if rank == fail_rank:
    raise RuntimeError(f"rank {rank} fails on purpose")
history = minidl.fit(
    model,
    loss,
    distributed.DataParallel(optimizer),
    train,
    test,
    epochs=config.epochs,
    batch_size=batch_size,
    seed=config.seed,
)
if rank == 0:
    torch.save([p.data for p in model.parameters()], out + ".pt")
    with open(out + ".json", "w") as f:
        json.dump(history, f)
distributed.shutdown()
