"""The application on top of minidl: experiment runs, checkpoints, diagnostics,
data-parallel launching, sweeps and tuning, and the ``minidl-run`` command.

Everything the command line does, code can do::

    from minidl.cli import TrainConfig, run
    result = run(TrainConfig(activation="tanh", optimizer="sgd", lr=0.5, epochs=5))
"""

from .app import cli, main
from .diagnostics import Diagnostics
from .experiment import RunResult, TrainConfig, run

__all__ = ["Diagnostics", "RunResult", "TrainConfig", "cli", "main", "run"]
