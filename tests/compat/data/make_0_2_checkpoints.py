"""Writes the checkpoints in this folder with minidl 0.2 itself, once; test_compat.py
resumes them with the minidl under test. Not a test: run it by hand, with 0.2 installed
apart from the checkout:

    git worktree add /tmp/v02 70f6a9c            # the 0.2 release commit
    python3 -m venv /tmp/v02venv && . /tmp/v02venv/bin/activate
    pip install torch==2.13.0 numpy /tmp/v02     # a plain install of 0.2, no other minidl
    cd tests/compat/data && python make_0_2_checkpoints.py

Each run of runs_0_2.json is interrupted in epoch 2 of 4 as test_resume.py interrupts
one (a callback raises KeyboardInterrupt before the checkpoint callback saves epoch 2),
leaving the checkpoint of epoch 1: a run of the built-in Adam, whose 0.2 state held its
scratch buffers (``_denom``, ``_bias2_sqrt``), and a run of tests/compat/plugin_0_2.py's
layers, loss, dataset and Momentum optimizer. (0.2's safetensors writing needed numpy.)
"""

import json
from pathlib import Path

import torch

import minidl
from minidl.cli import TrainConfig, run
from minidl.cli.checkpoint import Checkpointer

HERE = Path(__file__).resolve().parent
assert minidl.__version__ == "0.2.0", minidl.__version__
assert Path(minidl.__file__).resolve().parents[1] != HERE.parents[2], (
    "run it with 0.2, not the checkout"
)
torch.set_num_threads(1)
Checkpointer.every_s = 0.0  # a checkpoint every epoch
minidl.registry.load(str(HERE.parent / "plugin_0_2.py"))

RUNS = json.loads((HERE / "runs_0_2.json").read_text())


def stop_after_two(record, model):
    if record["epoch"] == 2:
        raise KeyboardInterrupt


for name, settings in RUNS.items():
    path = HERE / f"{name}.safetensors"
    path.unlink(missing_ok=True)
    try:
        run(TrainConfig(**settings), callbacks=[stop_after_two], checkpoint=path)
    except KeyboardInterrupt:
        pass
    print(path.name, path.stat().st_size, "bytes")
