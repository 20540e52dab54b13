"""The rows of a sweep: the seed report's Table I, grids of settings, and how a table's
protocol differs from the report's.

A :class:`Row` is a set of :class:`~minidl.cli.experiment.TrainConfig` changes (an
activation, an optimizer spec, a learning rate, betas, or any other field) with a label,
and the seed report's numbers when it is one of its Table I. :mod:`minidl.cli.sweep` runs
rows; :mod:`minidl.cli.tune` chooses settings for them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import minidl
from minidl.spec import parse_one, settings

from .experiment import TrainConfig

#: The TrainConfig fields a row may not change: the rounds own the seed.
FIXED = ("seed",)
#: The optimizer settings that TrainConfig has shorthands for, by the name it takes them under.
SHORTHANDS = {"beta1": "betas", "beta2": "betas", "eps": "eps"}


def text_of(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ",".join(text_of(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class Row:
    """One line of a sweep table: the :class:`TrainConfig` changes it makes, a label
    (by default ``activation-optimizer``), and the seed report's test accuracy (mean and
    standard deviation, fractions) when it is one of :data:`TABLE_I`."""

    changes: Mapping[str, Any]
    label: str = ""
    report_mean: float | None = None
    report_std: float | None = None

    def __post_init__(self) -> None:
        changes = dict(self.changes)
        fields = TrainConfig.__dataclass_fields__
        for name in changes:
            if name not in fields or name in FIXED:
                why = "the rounds set the seed" if name in FIXED else "no TrainConfig field"
                raise ValueError(f"a row cannot change {name!r}: {why}")
        object.__setattr__(self, "changes", changes)
        if not self.label:
            object.__setattr__(self, "label", self.default_label())

    def __hash__(self) -> int:
        return hash((repr(sorted(self.changes.items())), self.label))

    def default_label(self) -> str:
        """``activation-optimizer`` as far as the row sets them, else its changes."""
        named = [str(self.changes[k]) for k in ("activation", "optimizer") if k in self.changes]
        return "-".join(named) if named else self._rest() or "base"

    def _rest(self) -> str:
        return ", ".join(
            f"{k} {text_of(v)}"
            for k, v in self.changes.items()
            if k not in ("activation", "optimizer")
        )

    @property
    def title(self) -> str:
        """The label and, when it is the default one, the other changes:
        ``relu-adam lr 0.001, beta1 0.9, beta2 0.999``."""
        if self.label != self.default_label() or self.label == self._rest():
            return self.label
        return " ".join([self.label, self._rest()]).strip()

    @property
    def activation(self) -> str | None:
        return self.changes.get("activation")

    @property
    def optimizer(self) -> str | None:
        return self.changes.get("optimizer")

    @property
    def lr(self) -> float | None:
        return self.changes.get("lr")

    @property
    def beta1(self) -> float | None:
        return self.changes.get("beta1")

    @property
    def beta2(self) -> float | None:
        return self.changes.get("beta2")

    def keep(self, *names: str) -> Row:
        """This row with only the named changes, its label and the report's numbers."""
        kept = {k: v for k, v in self.changes.items() if k in names}
        return Row(kept, self.label, self.report_mean, self.report_std)

    def on(self, base: TrainConfig) -> Row:
        """This row as run on ``base``: without the report's numbers when ``base`` trains
        on other data, another model or another loss than the report's disc task."""
        report = TrainConfig()
        same = all(
            getattr(base, k) == getattr(report, k) for k in ("dataset", "data", "model", "loss")
        )
        return self if same else Row(self.changes, self.label)


def _table_i(
    activation: str,
    optimizer: str,
    lr: float,
    betas: tuple[float, float] | None,
    mean: float,
    std: float,
) -> Row:
    changes: dict[str, Any] = {"activation": activation, "optimizer": optimizer, "lr": lr}
    if betas is not None:
        changes.update(beta1=betas[0], beta2=betas[1])
    return Row(changes, report_mean=mean, report_std=std)


#: The seed report's Table I: its tuned learning rates and betas, and its test accuracies
#: (mean and standard deviation over 10 rounds of 100 epochs, as fractions). Its protocol
#: is TrainConfig's defaults: 1,000 training and 1,000 test points of the disc, a
#: 2-25-25-25-1 network with a sigmoid output, MSE, batches of 100.
TABLE_I: tuple[Row, ...] = (
    _table_i("relu", "sgd", 0.5, None, 0.9308, 0.0293),
    _table_i("sigmoid", "sgd", 0.1, None, 0.4962, 0.0174),
    _table_i("tanh", "sgd", 0.9, None, 0.9132, 0.0341),
    _table_i("relu", "adam", 1e-3, (0.9, 0.999), 0.9557, 0.0100),
    _table_i("sigmoid", "adam", 1e-3, (0.9, 0.999), 0.4921, 0.0115),
    _table_i("tanh", "adam", 0.1, (0.5, 0.999), 0.4941, 0.0119),
)
#: Table I's activations and optimizers, in its order.
ACTIVATIONS = tuple(dict.fromkeys(str(r.activation) for r in TABLE_I))
OPTIMIZERS = tuple(dict.fromkeys(str(r.optimizer) for r in TABLE_I))
#: The report's protocol: epochs per round and rounds per row.
REPORT_EPOCHS, REPORT_ROUNDS = 100, 10


def table_i_row(activation: str | None, optimizer: str | None) -> Row | None:
    """Table I's row for this activation and optimizer (a plain name), if it has one."""
    return next(
        (r for r in TABLE_I if (r.activation, r.optimizer) == (activation, optimizer)), None
    )


def plain_optimizer(optimizer: str) -> str | None:
    """The optimizer's name when its spec has no settings (``adam``, ``adam()``)."""
    spec = parse_one(optimizer, "optimizer")
    return None if spec.args or spec.kwargs else spec.name


def grid_rows(
    activations: Sequence[str] | None = None,
    optimizers: Sequence[str] | None = None,
    lrs: Sequence[float] | None = None,
    beta1s: Sequence[float] | None = None,
    beta2s: Sequence[float] | None = None,
    *,
    model: bool = False,
) -> list[Row]:
    """Every combination of the given values. An axis left out takes Table I's values:
    activations relu, sigmoid, tanh; optimizers sgd, adam; and for each pair the report's
    learning rate and betas (1e-3 and the optimizer's own betas for pairs not in it).
    Optimizers are specs: ``adam(eps=1e-6)``.

    ``model=True`` makes rows for a config with a model spec, which has its own
    activations: the rows vary the optimizer, lr and betas only. Without ``lrs``, each
    optimizer takes each of Table I's settings for it (learning rate and betas); with
    them, the optimizer's own betas unless ``beta1s`` and ``beta2s`` say otherwise.

    Betas apply only to optimizers that take them and whose spec does not set them (so
    ``optimizers=["sgd", "adam"], beta1s=[0.5]`` gives one SGD row per learning rate). A
    row equal to one of Table I's keeps its numbers.
    """
    if model and activations:
        raise ValueError(
            "a model spec has its own activations, so rows for it cannot vary the activation; "
            "vary the optimizer, the learning rate and the betas"
        )
    pairs: Iterable[tuple[str | None, str]] = (
        [(None, o) for o in optimizers or OPTIMIZERS]
        if model
        else itertools.product(activations or ACTIVATIONS, optimizers or OPTIMIZERS)
    )
    rows: list[Row] = []
    for activation, optimizer in pairs:
        spec = parse_one(optimizer, "optimizer")
        accepted = settings(minidl.registry.get("optimizer", spec.name), "optimizer")
        takes_betas = "betas" in accepted and "betas" not in spec.kwargs
        known = [
            (r.lr, r.beta1, r.beta2)
            for r in TABLE_I
            if r.optimizer == spec.name and activation in (None, r.activation)
        ]
        if activation is None and lrs:  # Table I's settings go together: lr and betas
            known = []
        defaults = list(dict.fromkeys(known)) or [(TrainConfig.lr, None, None)]
        for lr0, beta1, beta2 in defaults:
            row_b1: Sequence[float | None] = [None]
            row_b2: Sequence[float | None] = [None]
            if takes_betas:
                row_b1, row_b2 = beta1s or [beta1], beta2s or [beta2]
            row_lrs: Sequence[float | None] = lrs or [lr0]
            for lr, b1, b2 in itertools.product(row_lrs, row_b1, row_b2):
                changes: dict[str, Any] = {} if activation is None else {"activation": activation}
                changes.update(optimizer=optimizer, lr=lr)
                changes.update({k: v for k, v in (("beta1", b1), ("beta2", b2)) if v is not None})
                row = Row(changes)
                row = next((r for r in TABLE_I if r.changes == row.changes), row)
                if row not in rows:
                    rows.append(row)
    return rows


def model_rows() -> list[Row]:
    """The default rows for a config with a model spec: Table I's optimizer settings
    (its activation column does not apply), each once."""
    return grid_rows(model=True)


def check_rows(rows: Sequence[Row], base: TrainConfig) -> None:
    """Refuse rows that set an activation for a base with a model spec (it would be
    ignored), and rows that set the seed."""
    if base.model:
        for row in rows:
            if row.activation is not None:
                raise ValueError(
                    f"row {row.title} sets the activation, but the model spec "
                    f"{base.model!r} has its own activations; vary the optimizer, the learning "
                    "rate and the betas instead"
                )


def round_config(base: TrainConfig, row: Row, round_index: int) -> TrainConfig:
    """The configuration of one round of one row: the row's changes and the round's seed.
    The base's ``beta1``, ``beta2`` and ``eps`` go only to the rows whose optimizer takes
    them (so Table I's SGD rows ignore ``--eps``)."""
    config = base.replace(**row.changes, seed=base.seed + round_index)
    accepted = settings(
        minidl.registry.get("optimizer", parse_one(config.optimizer, "optimizer").name), "optimizer"
    )
    dropped = {
        k: None for k, name in SHORTHANDS.items() if name not in accepted and k not in row.changes
    }
    return config.replace(**dropped)


def protocol_notes(base: TrainConfig, rounds: int | None, *, epochs: bool = True) -> list[str]:
    """How a sweep of ``base`` over ``rounds`` rounds differs from the report's protocol
    (Table I's: 100 epochs, 10 rounds, TrainConfig's other defaults), one line each, for
    the tables that print the report's numbers beside their own. ``epochs=False``: the
    epochs are not the sweep's to say (tuning chooses them)."""
    notes = []
    if epochs and base.epochs != REPORT_EPOCHS:
        notes.append(
            f"{base.epochs} epoch{'s' if base.epochs != 1 else ''} per round (the report "
            f"trained {REPORT_EPOCHS}): not comparable with its column"
        )
    if rounds is not None and rounds != REPORT_ROUNDS:
        notes.append(
            f"{rounds} round{'s' if rounds != 1 else ''} per row (the report's had "
            f"{REPORT_ROUNDS}): the mean and std are {'rougher' if rounds < REPORT_ROUNDS else 'finer'}"
        )
    report = TrainConfig()
    differ = []
    for name in ("dataset", "data", "test_data", "n_train", "n_test", "model", "hidden", "init",
                 "gain", "standardize", "loss", "schedule", "batch_size", "eps", "dtype"):  # fmt: skip
        ours, theirs = getattr(base, name), getattr(report, name)
        if name in ("n_train", "n_test") and base.data is None and base.dataset == report.dataset:
            ours, theirs = ours or 1000, 1000  # the disc's own sizes
        if ours != theirs and not (name == "hidden" and base.model):
            differ.append(f"{name.replace('_', '-')} {text_of(ours)} (report: {text_of(theirs)})")
    if differ:
        notes.append(f"unlike the report: {', '.join(differ)}: not comparable with its column")
    return notes
