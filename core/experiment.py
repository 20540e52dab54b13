"""One training run from a plain configuration: what ``minidl-run train`` does, as code."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import registry
from .checkpoint import Checkpointer
from .data import Dataset, load_csv
from .diagnostics import Diagnostics
from .distributed import DataParallel
from .io import Checkpoint, restore
from .protocols import Loss, Optimizer
from .sequential import Sequential
from .spec import LayerSpec, build, mlp, parse
from .train import Callback, fit

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class TrainConfig:
    """Every choice of a run. Defaults are the seed's experiment (Adam, ReLU, 2-25-25-25-1)."""

    dataset: str = "disc"
    data: str | None = None  # a CSV file instead of a registered dataset
    test_data: str | None = None
    n_train: int = 1000
    n_test: int = 1000
    hidden: list[int] = field(default_factory=lambda: [25, 25, 25])
    activation: str = "relu"
    model: str | None = None  # a model spec; overrides hidden and activation
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
    # Hold out this fraction of the training points and evaluate on it instead of the test
    # set, which is then never used: what hyperparameter search must do.
    validation: float = 0.0
    diagnostics: bool = False  # record gradient norms and saturation per epoch (minidl.diagnostics)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


@dataclass
class RunResult:
    config: TrainConfig
    model: Sequential
    loss: Loss
    optimizer: Optimizer
    train: Dataset
    test: Dataset
    history: list[dict[str, Any]]

    @property
    def train_accuracy(self) -> float:
        return float(self.history[-1]["train_accuracy"])

    @property
    def test_accuracy(self) -> float:
        return float(self.history[-1]["test_accuracy"])


def load_data(config: TrainConfig) -> tuple[Dataset, Dataset]:
    """The training and test sets; with ``config.validation``, the training set's two parts
    (a test file is then not even read)."""
    if not config.validation:
        return _load_train_test(config)
    if not 0 < config.validation < 1:
        raise ValueError(f"validation must be a fraction in (0, 1), got {config.validation}")
    # Seeded apart from the CSV hold-out below, so the two splits are not the same draw.
    generator = torch.Generator().manual_seed(config.seed + 7919)
    return _load_train_test(config, read_test=False)[0].split(1 - config.validation, generator)


def _load_train_test(config: TrainConfig, read_test: bool = True) -> tuple[Dataset, Dataset]:
    if config.data is not None:
        train = load_csv(config.data)
        if config.test_data is not None:
            return train, load_csv(config.test_data) if read_test else train
        # No test file: hold out a fifth of the rows, the same ones for a given seed.
        return train.split(0.8, torch.Generator().manual_seed(config.seed))
    factory = registry.get("dataset", config.dataset)
    return factory(seed=config.seed, n_train=config.n_train, n_test=config.n_test)  # type: ignore[no-any-return]


def model_spec(config: TrainConfig, train: Dataset) -> list[LayerSpec]:
    specs = parse(
        config.model if config.model else mlp(config.hidden, config.activation, train.y.shape[1])
    )
    if config.init != "default" or config.gain is not None:
        for s in specs:
            if s.name == "linear":
                s.kwargs.setdefault("init", config.init)
                if config.gain is not None:
                    s.kwargs.setdefault("gain", config.gain)
    if config.standardize:
        std = train.x.std(0, unbiased=False)
        std = torch.where(std > 0, std, torch.ones_like(std))
        specs.insert(0, LayerSpec("standardize", [train.x.mean(0).tolist(), std.tolist()]))
    return specs


def make_optimizer(config: TrainConfig, model: Sequential) -> Optimizer:
    factory = registry.get("optimizer", config.optimizer)
    kwargs: dict[str, Any] = {}
    if config.beta1 is not None or config.beta2 is not None:
        kwargs["betas"] = (
            0.9 if config.beta1 is None else config.beta1,
            0.999 if config.beta2 is None else config.beta2,
        )
    if config.eps is not None:
        kwargs["eps"] = config.eps
    accepted = _keywords(factory)
    unused = [k for k in kwargs if accepted is not None and k not in accepted]
    if unused:
        options = ", ".join("--beta1/--beta2" if k == "betas" else f"--{k}" for k in unused)
        raise ValueError(f"optimizer {config.optimizer!r} does not take {options}")
    return factory(model.parameters(), lr=config.lr, **kwargs)  # type: ignore[no-any-return]


def _keywords(factory: Any) -> set[str] | None:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def setup(config: TrainConfig) -> tuple[Sequential, Loss, Optimizer, Dataset, Dataset]:
    """Data, model, loss and optimizer for a config, seeded so runs are reproducible."""
    if config.dtype not in DTYPES:
        raise ValueError(f"unknown dtype {config.dtype!r}; available: {', '.join(DTYPES)}")
    train, test = load_data(config)
    torch.manual_seed(config.seed)  # weight initialisation draws from the global generator
    model = build(model_spec(config, train), train.features)
    model.to(device=config.device, dtype=DTYPES[config.dtype])
    loss = registry.get("loss", config.loss)()
    optimizer = make_optimizer(config, model)
    return model, loss, optimizer, train, test


def run(
    config: TrainConfig | None = None,
    callbacks: Iterable[Callback] = (),
    data_parallel: bool = False,
    *,
    checkpoint: str | Path | None = None,
    resume: Checkpoint | None = None,
    **changes: Any,
) -> RunResult:
    """Train as ``config`` (the seed's experiment by default, with ``changes`` applied) says.

    ``data_parallel=True`` trains as one rank of the initialised torch.distributed process
    group (see :mod:`minidl.distributed`); every rank gets the same result.
    ``checkpoint`` names a file to save the run to as it goes (see :class:`minidl.checkpoint.Checkpointer`);
    ``resume`` continues such a run (:func:`minidl.io.load_checkpoint`) to the same result
    as had it not stopped.
    """
    config = (config or TrainConfig()).replace(**changes)
    model, loss, optimizer, train, test = setup(config)
    schedule = registry.get("schedule", config.schedule)(config.lr, config.epochs)
    if config.diagnostics:
        callbacks = [Diagnostics(train, loss), *callbacks]
    done = [] if resume is None else resumed_history(resume, config, model, optimizer)
    if checkpoint is not None:  # last, so the records it saves are complete
        saver = Checkpointer(checkpoint, model, optimizer, config_dict(config), done)
        callbacks = [*callbacks, saver]
    history = done + fit(
        model,
        loss,
        DataParallel(optimizer) if data_parallel else optimizer,
        train,
        test,
        epochs=config.epochs,
        batch_size=config.batch_size,
        seed=config.seed,
        schedule=schedule,
        callbacks=callbacks,
        start_epoch=len(done) + 1,
    )
    return RunResult(config, model, loss, optimizer, train, test, history)


def resumed_history(
    checkpoint: Checkpoint, config: TrainConfig, model: Sequential, optimizer: Optimizer
) -> list[dict[str, Any]]:
    """Load a checkpoint of a run of ``config`` into its model and optimizer; its history."""
    saved, current = checkpoint.config, config_dict(config)
    # The device may differ (a data-parallel rank's is cuda:RANK): the same run, moved.
    differ = [
        k for k in current if k != "device" and json.dumps(saved.get(k)) != json.dumps(current[k])
    ]
    if differ:
        raise ValueError(
            "the checkpoint is of a run with other settings: "
            + ", ".join(f"{k} {saved.get(k)!r} there, {current[k]!r} here" for k in differ)
        )
    restore(checkpoint, model, optimizer)
    return list(checkpoint.history)


def accepts(factory: Any, keyword: str) -> bool:
    """Whether ``factory`` can be called with ``keyword`` (true for ``**kwargs`` factories)."""
    accepted = _keywords(factory)
    return accepted is None or keyword in accepted


def config_dict(config: TrainConfig) -> dict[str, Any]:
    """The config as plain JSON-friendly values."""
    return dataclasses.asdict(config)


def summary(result: RunResult) -> dict[str, Any]:
    """The final epoch's numbers (accuracies as fractions, errors = 1 - accuracy) and the config."""
    last = result.history[-1]
    record: dict[str, Any] = {
        "train_accuracy": result.train_accuracy,
        "test_accuracy": result.test_accuracy,
        "train_error": 1 - result.train_accuracy,
        "test_error": 1 - result.test_accuracy,
        "train_loss": last["train_loss"],
        "test_loss": last["test_loss"],
        "epochs": len(result.history),
        "train_points": len(result.train),
        "test_points": len(result.test),
    }
    record["config"] = config_dict(result.config)
    return record


def predict(model: Sequential, x: torch.Tensor) -> torch.Tensor:
    """The model's outputs for inputs ``x``, moved to the model's dtype and device."""
    params = model.parameters()
    if params:
        x = x.to(dtype=params[0].data.dtype, device=params[0].data.device)
    return model.forward(x)


def labels(output: torch.Tensor) -> torch.Tensor:
    """Class labels as :func:`minidl.accuracy` counts them: output > 0.5, or argmax."""
    if output.shape[1] == 1:
        return (output[:, 0] > 0.5).long()
    return output.argmax(1)


#: The seed's disc: centre (0.5, 0.5) and radius 1/sqrt(2*pi), so its area is 1/2.
DISC_CENTRE = (0.5, 0.5)
DISC_RADIUS = 1 / math.sqrt(2 * math.pi)


def misclassified(model: Sequential, data: Dataset) -> list[dict[str, Any]]:
    """The points of ``data`` the model gets wrong: index, input, output, predicted and
    actual label, and (for 2-D inputs) the distance to the disc's centre, as in the
    report's Fig. 3."""
    output = predict(model, data.x)
    predicted = labels(output).cpu()
    actual = labels(data.y).cpu()
    wrong = (predicted != actual).nonzero().flatten().tolist()
    records = []
    for i in wrong:
        point = [float(v) for v in data.x[i].tolist()]
        record: dict[str, Any] = {
            "index": i,
            "input": point,
            "output": [float(v) for v in output[i].tolist()],
            "predicted": int(predicted[i]),
            "actual": int(actual[i]),
        }
        if len(point) == 2:
            record["distance"] = math.dist(point, DISC_CENTRE)
        records.append(record)
    return records
