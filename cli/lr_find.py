"""The learning-rate range test (Smith 2017, fastai's ``lr_find``, Lightning's
``Tuner.lr_find``): train a fresh model for a few mini-batches while the learning rate
grows exponentially, and suggest the rate where the loss falls fastest.

The schedule is a callback on :func:`minidl.fit` (through :func:`minidl.cli.run`), not a
training loop of its own::

    from minidl.cli import TrainConfig
    from minidl.cli.lr_find import lr_find

    result = lr_find(TrainConfig(), steps=100)
    print(result.suggestion)

The model is built as ``train`` would build it, trained, and thrown away: nothing is
saved, and no run on disk changes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

import minidl
from minidl import Callback, Module, Trainer

from .experiment import TrainConfig, run

#: fastai's and Lightning's: the smoothing of the recorded loss, the loss (as a multiple
#: of the best so far) that counts as diverged, and the points the suggestion skips.
BETA, DIVERGE, SKIP_BEGIN, SKIP_END = 0.98, 4.0, 10, 1


def geometric(min_lr: float, max_lr: float, steps: int) -> list[float]:
    """``steps`` learning rates from ``min_lr`` to ``max_lr`` (both included), each a
    constant factor above the one before."""
    if not 0 < min_lr < max_lr:
        raise ValueError(f"need 0 < min_lr < max_lr, got min_lr={min_lr:g}, max_lr={max_lr:g}")
    if steps < 2:
        raise ValueError(f"the range test needs at least 2 steps, got {steps}")
    ratio = math.log(max_lr / min_lr) / (steps - 1)
    return [min_lr * math.exp(ratio * i) for i in range(steps)]


class LRRangeTest(Callback):
    """Sets the learning rate of each step from ``lrs`` and records the step's loss, raw
    and smoothed (an exponential moving average with bias correction, as fastai's);
    stops after the last rate, or once the smoothed loss exceeds ``diverge`` times its best
    (or is not finite)."""

    def __init__(self, lrs: Sequence[float], beta: float = BETA, diverge: float = DIVERGE):
        self.lrs, self.beta, self.diverge = list(lrs), beta, diverge
        self.raw_losses: list[float] = []
        self.losses: list[float] = []
        self.best = math.inf
        self.average = 0.0
        self.diverged = False
        self.stop_reason = ""

    def on_epoch_start(self, trainer: Trainer, model: Module) -> None:
        # After the epoch's schedule has set its rate: the test's own rate wins.
        trainer.optimizer.lr = self.lrs[len(self.losses)]

    def on_batch_end(self, trainer: Trainer, model: Module) -> None:
        loss = float(trainer.batch_loss)  # type: ignore[arg-type]
        step = len(self.losses)
        self.raw_losses.append(loss)
        self.average = self.beta * self.average + (1 - self.beta) * loss
        smoothed = self.average / (1 - self.beta ** (step + 1))
        self.losses.append(smoothed)
        if not math.isfinite(smoothed) or smoothed > self.diverge * self.best:
            self.diverged = True
            self.stop_reason = (
                f"the smoothed loss {smoothed:.4g} exceeded {self.diverge:g}x its best "
                f"{self.best:.4g} at lr {self.lrs[step]:.3g} (step {step + 1})"
            )
            trainer.stop(self.stop_reason)
            return
        self.best = min(self.best, smoothed)
        if step + 1 == len(self.lrs):
            self.stop_reason = f"all {len(self.lrs)} steps done"
            trainer.stop(self.stop_reason)
            return
        trainer.optimizer.lr = self.lrs[step + 1]


def steepest(
    lrs: Sequence[float],
    losses: Sequence[float],
    skip_begin: int = SKIP_BEGIN,
    skip_end: int = SKIP_END,
) -> int | None:
    """Lightning's suggestion: the index of the most negative gradient of the loss (over
    the steps, which are equal steps of log lr), the first ``skip_begin`` and last
    ``skip_end`` points left out; None with fewer than two points left."""
    end = len(losses) - skip_end
    kept = [x for x in losses[skip_begin:end] if math.isfinite(x)]
    if len(kept) < 2 or len(lrs) < len(losses):
        return None
    (slope,) = torch.gradient(torch.tensor(kept, dtype=torch.float64))
    return skip_begin + int(slope.argmin())


@dataclass
class LRFinderResult:
    """The rates tried, the smoothed and raw losses at each, the suggested rate (None when
    too few steps were recorded to say) and why the test stopped."""

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    suggestion: float | None
    suggestion_step: int | None  # from 1, as the stop reason counts
    stop_reason: str
    diverged: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def lr_find(
    config: TrainConfig | None = None,
    steps: int = 100,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    callbacks: Iterable[Any] = (),
    **changes: Any,
) -> LRFinderResult:
    """Run the range test on the model, data, loss and optimizer of ``config`` (the seed's
    experiment by default, with ``changes`` applied): ``steps`` mini-batches, the learning
    rate growing geometrically from ``min_lr`` to ``max_lr``. The config's schedule,
    epochs and callbacks play no part; ``callbacks`` run after the test's own (a logger);
    the test set is never read."""
    config = (config or TrainConfig()).replace(**changes)
    finder = LRRangeTest(geometric(min_lr, max_lr, steps))
    # Enough epochs for the steps, whatever the batches per epoch: the callback stops it.
    tested = config.replace(lr=min_lr, epochs=steps, schedule="constant", callbacks=[])
    try:
        run(tested, [finder, *callbacks], evaluate_test=False, evaluate_every_epoch=False)
    except minidl.NonFiniteError:
        # fit refuses an epoch with a NaN step loss; the test stopped at that step.
        if not finder.diverged:
            raise
    index = steepest(finder.lrs, finder.losses)
    return LRFinderResult(
        lrs=finder.lrs[: len(finder.losses)],
        losses=finder.losses,
        raw_losses=finder.raw_losses,
        suggestion=None if index is None else finder.lrs[index],
        suggestion_step=None if index is None else index + 1,
        stop_reason=finder.stop_reason,
        diverged=finder.diverged,
    )
