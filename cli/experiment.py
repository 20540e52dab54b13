"""One training run from a plain configuration: what ``minidl-run train`` does, as code.

A :class:`TrainConfig` names everything by spec (``optimizer="adam(eps=1e-6)"``), so a
plugin's settings work here exactly as the built-ins' do, from the command line, a TOML
file, a sweep or a tuning search.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

import minidl
from minidl import Dataset, Loss, Optimizer, Sequential, Spec
from minidl.plugins import Standardize
from minidl.spec import parse, parse_one, settings
from minidl.train import History

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class TrainConfig:
    """Every choice of a run. Defaults are the seed's experiment (Adam, ReLU, 2-25-25-25-1).

    ``dataset``, ``loss``, ``optimizer``, ``schedule`` and ``init`` are specs: a registered
    name, optionally with settings. ``beta1``, ``beta2`` and ``eps`` are shorthands for
    Adam's settings.
    """

    dataset: str = "disc"
    data: str | None = None  # a CSV file instead of a registered dataset
    test_data: str | None = None
    n_train: int | None = None  # passed to the dataset only when given
    n_test: int | None = None
    model: str | None = None  # a model spec; without one, an MLP of hidden and activation
    hidden: list[int] = field(default_factory=lambda: [25, 25, 25])
    activation: str = "relu"
    init: str = "default"
    gain: float | None = None
    standardize: bool = False
    loss: str = "mse"
    optimizer: str = "adam"
    lr: float = 1e-3
    beta1: float | None = None
    beta2: float | None = None
    eps: float | None = None
    schedule: str = "constant"
    epochs: int = 100
    batch_size: int = 100
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    # Hold out this seeded fraction of the training examples as a validation set (val_*
    # in the history): what early stopping and hyperparameter search look at, never the
    # test set.
    validation: float = 0.0
    diagnostics: bool = False  # record gradient norms and saturation per epoch
    callbacks: list[str] = field(default_factory=list)  # callback specs, made for each run

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class RunResult:
    config: TrainConfig
    model: Sequential
    loss: Loss
    optimizer: Optimizer
    train: Dataset
    test: Dataset
    history: History
    validation: Dataset | None = None

    @property
    def final(self) -> dict[str, Any]:
        """The record that describes the model as returned: the last epoch's, or the one a
        callback restored (early stopping's best)."""
        epoch = self.history.info.get("restored_epoch")
        return next((r for r in self.history if r["epoch"] == epoch), self.history[-1])

    @property
    def train_accuracy(self) -> float:
        return float(self.final["train_accuracy"])

    @property
    def test_accuracy(self) -> float:
        return float(self.final["test_accuracy"])


def mlp(hidden: list[int], activation: str, outputs: int, output: str = "sigmoid") -> str:
    """The seed's family of networks as a spec: ``mlp([25, 25, 25], "relu", 1)`` is its
    2-25-25-25-1 network with a sigmoid output."""
    items = [f"linear({h}), {activation}" for h in hidden] + [f"linear({outputs})"]
    return ", ".join(items + ([output] if output else []))


def make_loss(config: TrainConfig) -> Loss:
    return minidl.create("loss", config.loss)  # type: ignore[no-any-return]


def load_data(
    config: TrainConfig, loss: Loss | None = None, test: bool = True
) -> tuple[Dataset, Dataset | None, Dataset]:
    """The training, validation and test sets; the validation set is ``config.validation``
    of the training examples, held out (seeded), or None. A CSV's last column of integer
    labels becomes class indices when the loss takes them. With ``test=False`` a test file
    is not even read, and the test set is empty (hyperparameter search)."""
    classes = getattr(loss or make_loss(config), "class_targets", False) is True
    if config.data is not None:
        train = minidl.load_csv(config.data, classes=classes)
        if config.test_data is None:  # hold out a fifth, the same rows for a given seed
            train, tested = train.split(0.8, torch.Generator().manual_seed(config.seed))
        elif test:
            tested = minidl.load_csv(config.test_data, classes=classes)
        else:
            tested = Dataset(train.x[:0], train.y[:0])
    else:
        sizes = {k: v for k, v in (("n_train", config.n_train), ("n_test", config.n_test)) if v}
        train, tested = minidl.create("dataset", config.dataset, seed=config.seed, **sizes)
    if not config.validation:
        return train, None, tested
    if not 0 < config.validation < 1:
        raise ValueError(f"validation must be a fraction in (0, 1), got {config.validation}")
    # Seeded apart from the CSV hold-out above, so the two splits are not the same draw.
    generator = torch.Generator().manual_seed(config.seed + 7919)
    train, validation = train.split(1 - config.validation, generator)
    return train, validation, tested


def model_spec(config: TrainConfig, train: Dataset, *others: Dataset | None) -> str:
    """The model spec this config builds for this data, before any standardisation."""
    if config.model:
        return config.model
    if train.y.dim() == 1:  # class indices: one logit per class, no output activation
        # Classes seen in either set: a held-out part may hold one the other lacks.
        labels = [
            d.y.max() for d in (train, *others) if d is not None and len(d) and d.y.dim() == 1
        ]
        return mlp(config.hidden, config.activation, int(max(labels)) + 1, output="")
    return mlp(config.hidden, config.activation, train.y.shape[1])


def build_model(config: TrainConfig, train: Dataset, *others: Dataset | None) -> Sequential:
    specs = parse(model_spec(config, train, *others))
    for s in specs:
        accepted = settings(minidl.registry.get("layer", s.name), "layer")
        if config.init != "default" and "init" in accepted:
            s.kwargs.setdefault("init", config.init)
        if config.gain is not None and "gain" in accepted:
            s.kwargs.setdefault("gain", config.gain)
    if config.standardize:  # fitted to the training inputs, and saved with the model
        fitted = Standardize.fit(train.x)
        specs.insert(0, Spec("standardize", list(fitted.init_args[0])))
    return minidl.build(specs, tuple(train.x.shape[1:]), train.x.dtype)


def make_optimizer(config: TrainConfig, model: Sequential) -> Optimizer:
    shorthands: dict[str, Any] = {}
    if config.beta1 is not None or config.beta2 is not None:
        shorthands["betas"] = (
            0.9 if config.beta1 is None else config.beta1,
            0.999 if config.beta2 is None else config.beta2,
        )
    if config.eps is not None:
        shorthands["eps"] = config.eps
    name = parse_one(config.optimizer, "optimizer").name
    accepted = settings(minidl.registry.get("optimizer", name), "optimizer")
    unused = [k for k in shorthands if k not in accepted]
    if unused:
        flags = ", ".join("beta1/beta2" if k == "betas" else k for k in unused)
        raise minidl.SpecError(
            f"optimizer {config.optimizer!r} takes no {flags}; its settings: "
            f"{', '.join(accepted) or '(none)'}"
        )
    return minidl.create(  # type: ignore[no-any-return]
        "optimizer", config.optimizer, model.parameters(), lr=config.lr, **shorthands
    )


def make_schedule(config: TrainConfig) -> Callable[[int], float]:
    return minidl.create("schedule", config.schedule, config.lr, config.epochs)  # type: ignore[no-any-return]


def make_callbacks(config: TrainConfig) -> list[Any]:
    """The callbacks that ``config.callbacks`` names, made fresh; each knows its spec as
    ``name`` (what an error about it says) where it lets one be set."""
    made = []
    for spec in config.callbacks:
        callback = minidl.create("callback", spec)
        if not isinstance(getattr(callback, "name", None), str):
            try:
                callback.name = spec
            except AttributeError:
                pass
        made.append(callback)
    return made


class Setup(NamedTuple):
    model: Sequential
    loss: Loss
    optimizer: Optimizer
    train: Dataset
    validation: Dataset | None
    test: Dataset


def setup(config: TrainConfig, test: bool = True) -> Setup:
    """Data, model, loss and optimizer for a config, seeded so runs are reproducible
    (``test=False``: a test file is not read, see :func:`load_data`)."""
    if config.dtype not in DTYPES:
        raise ValueError(f"unknown dtype {config.dtype!r}; available: {', '.join(DTYPES)}")
    with blame("loss"):
        loss = make_loss(config)
    with blame("dataset"):
        train, validation, tested = load_data(config, loss, test)
    torch.manual_seed(config.seed)  # weight initialisation draws from the global generator
    made_by = ["model"] if config.model else ["hidden", "activation"]
    made_by += ["init"] * (config.init != "default") + ["gain"] * (config.gain is not None)
    with blame(*made_by):
        model = build_model(config, train, validation, tested)
    model.to(config.device, DTYPES[config.dtype])
    with blame("optimizer", "lr"):
        optimizer = make_optimizer(config, model)
    return Setup(model, loss, optimizer, train, validation, tested)


@contextmanager
def blame(*settings: str) -> Iterator[None]:
    """A spec error made here is about these TrainConfig fields (the CLI names their options)."""
    try:
        yield
    except minidl.SpecError as e:
        e.settings = getattr(e, "settings", None) or settings
        raise


def run(
    config: TrainConfig | None = None,
    callbacks: Iterable[Any] = (),
    *,
    checkpoint: str | Path | None = None,
    resume: Any = None,
    data_parallel: bool = False,
    log_dir: str | Path | None = None,
    evaluate_test: bool = True,
    evaluate_every_epoch: bool = True,
    **changes: Any,
) -> RunResult:
    """Train as ``config`` (the seed's experiment by default, with ``changes`` applied) says.

    The callbacks run in this order, at every event: data-parallel synchronisation (first:
    clipping sees the summed gradient), diagnostics (they add to the record), those that
    ``config.callbacks`` names, then ``callbacks`` (a progress display, a logger: they see
    every key and every stop), then checkpointing (last: it saves complete records and the
    other callbacks' state).

    ``checkpoint`` names a file to save the run to as it goes, and ``resume`` continues
    such a run (a :class:`minidl.cli.checkpoint.Checkpoint`) to the result it would have
    had (see :mod:`minidl.cli.checkpoint`). ``data_parallel=True`` trains as one rank of
    the initialised torch.distributed process group (:mod:`minidl.cli.distributed`).
    ``log_dir`` is where loggers write (``trainer.log_dir``). ``evaluate_test=False``
    never scores the test set (hyperparameter search).
    """
    from . import checkpoint as saving
    from .diagnostics import Diagnostics

    config = (config or TrainConfig()).replace(**changes)
    model, loss, optimizer, train, validation, test = setup(config, evaluate_test)
    with blame("schedule"):
        schedule = make_schedule(config)
    with blame("callbacks"):
        chosen = make_callbacks(config)
    done = (
        [] if resume is None else saving.restore(resume, config, model, optimizer, schedule, chosen)
    )
    order: list[Any] = [Diagnostics(train, loss)] if config.diagnostics else []
    order += [*chosen, *callbacks]
    reason = saving.not_resumable(optimizer, schedule, chosen)
    if checkpoint is not None and reason:
        warnings.warn(f"{reason}: the run is not checkpointed", UserWarning, stacklevel=2)
    elif checkpoint is not None:
        order.append(
            saving.Checkpointer(checkpoint, model, optimizer, schedule, config, done, chosen)
        )
    batches = None
    if data_parallel:
        from .distributed import DataParallel

        synchronise = DataParallel(optimizer, model)
        order = [synchronise, *order, synchronise.stop_sync]
        batches = synchronise.batches
    history = minidl.fit(
        model,
        loss,
        optimizer,
        train,
        test if evaluate_test else None,
        validation=validation,
        epochs=config.epochs,
        batch_size=config.batch_size,
        seed=config.seed,
        schedule=schedule,
        evaluate_every_epoch=evaluate_every_epoch,
        callbacks=order,
        start_epoch=len(done) + 1,
        history=done,
        batches=batches,
        log_dir=None if log_dir is None else str(log_dir),
    )
    return RunResult(config, model, loss, optimizer, train, test, history, validation)


def used_config(result: RunResult) -> dict[str, Any]:
    """The config as it was used: ``model`` is the spec that was built, and ``hidden`` and
    ``activation`` are kept only when they made it."""
    config = result.config.as_dict()
    config["model"] = model_spec(result.config, result.train, result.validation, result.test)
    if result.config.model:
        config["hidden"] = config["activation"] = None
    return config


def summary(result: RunResult) -> dict[str, Any]:
    """The final epoch's numbers (accuracies as fractions, errors = 1 - accuracy) and the
    config that was used."""
    final = result.final
    numbers = {
        "train_accuracy": result.train_accuracy,
        "test_accuracy": result.test_accuracy,
        "train_error": 1 - result.train_accuracy,
        "test_error": 1 - result.test_accuracy,
        "train_loss": final["train_loss"],
        "test_loss": final["test_loss"],
    }
    if result.validation is not None:
        numbers.update(
            val_accuracy=final["val_accuracy"],
            val_error=1 - final["val_accuracy"],
            val_loss=final["val_loss"],
            val_points=len(result.validation),
        )
    return {
        **numbers,
        "epochs": len(result.history),
        "train_points": len(result.train),
        "test_points": len(result.test),
        **result.history.info,  # stopped_epoch, stop_reason, best_epoch, ...
        "config": used_config(result),
    }


def misclassified(model: Sequential, data: Dataset) -> list[dict[str, Any]]:
    """The examples of ``data`` the model gets wrong (in eval mode): index, input, output,
    predicted and actual label."""
    output = minidl.predict(model, data.x)
    predicted, actual = minidl.labels(output).cpu(), minidl.labels(data.y).cpu()
    wrong = predicted != actual
    if wrong.dim() > 1:  # a sequence: wrong where a position that counts is (minidl.accuracy)
        wrong = (wrong & (actual != -100)).flatten(1).any(1)
    return [
        {
            "index": i,
            "input": [float(v) for v in data.x[i].flatten().tolist()],
            "output": [float(v) for v in output[i].flatten().tolist()],
            "predicted": predicted[i].tolist(),
            "actual": actual[i].tolist(),
        }
        for i in wrong.nonzero().flatten().tolist()
    ]
