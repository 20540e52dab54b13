"""The training loop: modes, targets of every kind, reproducible and resumable shuffling,
honest divergence, and learning curves equal to the torch twin's."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import minidl
from benchmarks.twin import torch_optimizer, torch_twin, twin_fit
from minidl import Dataset, ModuleBase, Sequential
from minidl.plugins import MSE, SGD, Adam, CrossEntropy, Linear, ReLU, Sigmoid, Standardize, Tanh

F64 = torch.float64
DISC = minidl.registry.get("dataset", "disc")
SPEC = "linear(16), relu, linear(16), relu, linear(1), sigmoid"


def setup(
    seed: int = 0, spec: str = SPEC, n_train: int = 200
) -> tuple[Sequential, Dataset, Dataset]:
    torch.manual_seed(seed)
    model = minidl.build(spec, (2,))
    train, test = DISC(seed=seed, n_train=n_train, n_test=100)
    return model, train, test


def three_classes(n: int, seed: int) -> Dataset:
    """Points in the unit square, class 0, 1 or 2 by the ring they fall in: (N,) int64."""
    x = torch.rand(n, 2, generator=torch.Generator().manual_seed(seed))
    r = (x - 0.5).norm(dim=1)
    return Dataset(x, (r > 0.2).long() + (r > 0.4).long())


class RecordingDropout(ModuleBase):
    """Dropout-like: in training it zeroes every other feature (and doubles the rest), in
    eval it passes the input through; it records the mode of each call."""

    def __init__(self) -> None:
        self.modes: list[bool] = []

    def forward(self, x: Tensor) -> Tensor:
        self.modes.append(self.training)
        if not self.training:
            return x
        self._mask = torch.zeros(x.shape[-1], dtype=x.dtype)
        self._mask[::2] = 2.0
        return x * self._mask

    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output * self._mask if self.training else grad_output


# ---------------------------------------------------------------------------- labels, accuracy


def test_labels_of_each_target_kind() -> None:
    assert minidl.labels(torch.tensor([[0.2], [0.7], [0.5]])).tolist() == [0, 1, 0]
    assert minidl.labels(torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])).tolist() == [1, 0]
    classes = torch.tensor([2, 0, 1])
    assert minidl.labels(classes) is classes
    assert minidl.labels(torch.tensor([0.2, 0.9])).tolist() == [0, 1]
    assert minidl.labels(classes).dtype == torch.int64


def test_accuracy_for_one_column_several_columns_and_class_indices() -> None:
    assert minidl.accuracy(
        torch.tensor([[0.2], [0.7], [0.9]]), torch.tensor([[0.0], [0.0], [1.0]])
    ) == pytest.approx(2 / 3)
    p = torch.tensor([[0.1, 0.9], [0.8, 0.2]])
    assert minidl.accuracy(p, torch.tensor([[0.0, 1.0], [0.0, 1.0]])) == 0.5
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 1.0, 2.0], [0.0, 5.0, 1.0], [1.0, 0.0, 0.0]])
    assert minidl.accuracy(logits, torch.tensor([0, 2, 2, 1])) == 0.5
    assert minidl.accuracy(torch.tensor([[0.9], [0.1]]), torch.tensor([1, 1])) == 0.5
    assert math.isnan(minidl.accuracy(torch.zeros(0, 1), torch.zeros(0, 1)))


def test_accuracy_refuses_one_target_column_against_several_outputs() -> None:
    with pytest.raises(ValueError) as info:
        minidl.accuracy(torch.rand(4, 3), torch.tensor([[0.0], [1.0], [2.0], [1.0]]))
    assert str(info.value) == (
        "targets of shape (4, 1) cannot score 3 output(s): give 3 target column(s), or class "
        "indices of shape (N,) as int64"
    )
    with pytest.raises(ValueError, match=r"targets of shape \(4, 2\) cannot score 1 output"):
        minidl.accuracy(torch.rand(4, 1), torch.rand(4, 2))


# ---------------------------------------------------------------------------- modes


def test_fit_trains_in_training_mode_evaluates_in_eval_mode_and_ends_in_eval() -> None:
    torch.manual_seed(0)
    dropout = RecordingDropout()
    model = Sequential(Linear(2, 4), dropout, Tanh(), Linear(4, 1), Sigmoid())
    train, test = DISC(seed=0, n_train=40, n_test=20)
    minidl.fit(model, MSE(), SGD(model.parameters(), lr=0.1), train, test, epochs=2, batch_size=10)
    # Per epoch: four training steps, then the evaluation on the training and the test set.
    assert dropout.modes == ([True] * 4 + [False, False]) * 2
    assert not model.training and not dropout.training and not model[0].training
    # The evaluation saw the eval-mode network: its loss is the eval-mode loss.
    history = minidl.fit(model, MSE(), SGD(model.parameters(), lr=1e-9), train, epochs=1)
    model.eval()
    expected = float(MSE().forward(model.forward(train.x), train.y))
    assert history[0]["train_loss"] == pytest.approx(expected, rel=1e-5)


def test_fit_without_evaluating_every_epoch_evaluates_once_at_the_end() -> None:
    torch.manual_seed(0)
    dropout = RecordingDropout()
    model = Sequential(Linear(2, 4), dropout, Linear(4, 1))
    train, _ = DISC(seed=0, n_train=30, n_test=1)
    minidl.fit(
        model, MSE(), SGD(model.parameters(), lr=0.1), train, epochs=3, batch_size=10,
        evaluate_every_epoch=False,
    )  # fmt: skip
    assert dropout.modes == [True] * 9 + [False]


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_and_predict_run_in_eval_mode_and_restore_the_mode(training: bool) -> None:
    torch.manual_seed(0)
    dropout = RecordingDropout()
    model = Sequential(Linear(2, 4), dropout, Linear(4, 1)).train(training)
    data, _ = DISC(seed=1, n_train=20, n_test=1)
    loss, accuracy = minidl.evaluate(model, MSE(), data)
    out = minidl.predict(model, data.x)
    assert dropout.modes == [False, False]
    assert model.training is training and dropout.training is training
    model.eval()
    assert torch.equal(out, model.forward(data.x))
    assert loss == pytest.approx(float(MSE().forward(out, data.y)), rel=1e-6)
    assert accuracy == minidl.accuracy(out, data.y)


def test_predict_moves_inputs_to_the_models_dtype() -> None:
    torch.manual_seed(0)
    model = Sequential(Linear(2, 3), Tanh()).to(F64)
    x = torch.rand(5, 2)
    out = minidl.predict(model, x)
    assert out.dtype == F64 and out.shape == (5, 3)
    assert torch.equal(out, model.forward(x.to(F64)))


# ---------------------------------------------------------------------------- targets


def test_fit_and_evaluate_with_several_target_columns() -> None:
    torch.manual_seed(0)
    x = torch.rand(60, 2, generator=torch.Generator().manual_seed(3))
    y = torch.stack([x[:, 0] > 0.5, x[:, 0] <= 0.5], 1).float()  # one-hot rows
    data = Dataset(x, y)
    model = minidl.build("linear(8), tanh, linear(2), sigmoid", (2,))
    history = minidl.fit(
        model, MSE(), Adam(model.parameters(), lr=0.05), data, data, epochs=5, batch_size=20
    )
    out = minidl.predict(model, x)
    assert out.shape == (60, 2)
    assert history[-1]["train_accuracy"] == minidl.accuracy(out, y)
    assert history[-1]["test_loss"] == pytest.approx(float(F.mse_loss(out, y)), rel=1e-6)
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_fit_with_class_indices_and_cross_entropy_in_float64() -> None:
    torch.manual_seed(0)
    train, test = three_classes(150, seed=1), three_classes(60, seed=2)
    assert train.y.dtype == torch.int64 and train.y.dim() == 1
    model = minidl.build("linear(16), tanh, linear(3)", (2,)).to(F64)
    history = minidl.fit(
        model, CrossEntropy(), Adam(model.parameters(), lr=0.05), train, test, epochs=6,
        batch_size=30,
    )  # fmt: skip
    out = minidl.predict(model, test.x)
    assert out.dtype == F64
    assert history[-1]["test_accuracy"] == minidl.accuracy(out, test.y)
    assert history[-1]["test_loss"] == pytest.approx(float(F.cross_entropy(out, test.y)), rel=1e-12)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    # Negative class indices are refused before any step.
    bad = Dataset(train.x, train.y - 1)
    with pytest.raises(minidl.DataError, match="class indices must be >= 0, got -1"):
        minidl.fit(model, CrossEntropy(), SGD(model.parameters(), lr=0.1), bad, epochs=1)


# ---------------------------------------------------------------------------- the loop


def test_fit_seed_controls_the_shuffling() -> None:
    results = []
    for seed in (1, 1, 2):
        model, train, _ = setup()
        minidl.fit(
            model, MSE(), SGD(model.parameters(), lr=0.1), train, epochs=2, batch_size=20, seed=seed
        )
        results.append(torch.cat([p.data.flatten() for p in model.parameters()]))
    assert torch.equal(results[0], results[1])
    assert not torch.equal(results[0], results[2])


def test_history_keys_and_values() -> None:
    model, train, test = setup()
    loss = MSE()
    history = minidl.fit(
        model, loss, Adam(model.parameters(), lr=1e-2), train, test, epochs=3, batch_size=50
    )
    assert [r["epoch"] for r in history] == [1, 2, 3]
    for r in history:
        assert set(r) == {
            "epoch",
            "lr",
            "train_loss",
            "train_accuracy",
            "test_loss",
            "test_accuracy",
        }
        assert r["lr"] == 1e-2
    # The last record is the trained model's evaluation on each set.
    assert history[-1]["train_loss"] == pytest.approx(
        float(loss.forward(model(train.x), train.y)), rel=1e-6
    )
    assert history[-1]["test_accuracy"] == minidl.accuracy(model(test.x), test.y)
    no_test = minidl.fit(model, loss, SGD(model.parameters(), lr=0.1), train, epochs=1)
    assert set(no_test[0]) == {"epoch", "lr", "train_loss", "train_accuracy"}


def test_skipping_evaluation_reports_mean_step_loss_until_the_last_epoch() -> None:
    model, train, test = setup()
    history = minidl.fit(
        model,
        MSE(),
        SGD(model.parameters(), lr=0.1),
        train,
        test,
        epochs=3,
        evaluate_every_epoch=False,
    )
    assert [set(r) for r in history[:2]] == [{"epoch", "lr", "train_loss"}] * 2
    assert "test_accuracy" in history[2]


def test_schedule_sets_the_lr_each_epoch_and_callbacks_see_each_record() -> None:
    model, train, _ = setup()
    seen: list[tuple[int, Any]] = []

    def callback(record: dict[str, Any], m: Any) -> None:
        seen.append((record["epoch"], m))
        record["extra"] = record["epoch"] * 10

    opt = SGD(model.parameters(), lr=1.0)
    history = minidl.fit(
        model, MSE(), opt, train, epochs=3, schedule=lambda e: 0.1 / e, callbacks=[callback]
    )
    assert [r["lr"] for r in history] == [0.1, 0.05, 0.1 / 3]
    assert opt.lr == 0.1 / 3
    assert seen == [(1, model), (2, model), (3, model)]
    assert [r["extra"] for r in history] == [10, 20, 30]


@pytest.mark.parametrize("lr", [1.0, 3.0])
def test_divergence_names_the_first_bad_epoch_and_step(lr: float) -> None:
    """The step whose loss is NaN or infinite; if every step's loss of an epoch was finite
    but the model after it is not (the last update blew up), that epoch's last step."""
    spec, batch = "linear(25), relu, linear(25), relu, linear(1)", 20
    # Reference: the same steps by hand, every loss checked.
    model, train, _ = setup(spec=spec)
    loss, opt = MSE(), SGD(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    expected = None
    for epoch in range(1, 6):
        for step, (x, y) in enumerate(train.batches(batch, generator), 1):
            opt.zero_grad()
            value = float(loss.forward(model(x), y))
            if not math.isfinite(value):
                expected = (epoch, step)
                break
            model.backward(loss.backward())
            opt.step()
        if expected is None and not math.isfinite(float(loss.forward(model(train.x), train.y))):
            expected = (epoch, step)
        if expected is not None:
            break
    assert expected is not None and expected != (1, 1)

    model, train, _ = setup(spec=spec)
    with pytest.raises(minidl.DivergenceError) as info:
        minidl.fit(model, MSE(), SGD(model.parameters(), lr=lr), train, epochs=5, batch_size=batch)
    assert (info.value.epoch, info.value.step) == expected
    assert f"at epoch {expected[0]}, step {expected[1]} (lr={lr:g})" in str(info.value)
    assert "try a lower learning rate" in str(info.value)
    assert info.value.exit_code == 1 and isinstance(info.value, minidl.NonFiniteError)


def test_resuming_at_start_epoch_equals_the_uninterrupted_run() -> None:
    model, train, test = setup()
    straight = minidl.fit(
        model,
        MSE(),
        Adam(model.parameters(), lr=1e-2),
        train,
        test,
        epochs=4,
        batch_size=30,
        seed=3,
    )

    resumed, train, test = setup()
    opt = Adam(resumed.parameters(), lr=1e-2)
    first = minidl.fit(resumed, MSE(), opt, train, test, epochs=2, batch_size=30, seed=3)
    rest = minidl.fit(
        resumed, MSE(), opt, train, test, epochs=4, batch_size=30, seed=3, start_epoch=3
    )
    assert [r["epoch"] for r in rest] == [3, 4]
    assert first + rest == straight
    for p, q in zip(resumed.parameters(), model.parameters(), strict=True):
        assert torch.equal(p.data, q.data)


def test_batches_replaces_the_batching() -> None:
    calls: list[tuple[int, int, torch.dtype]] = []

    def halves(data: Dataset, batch_size: int, generator: torch.Generator):  # type: ignore[no-untyped-def]
        calls.append((len(data), batch_size, data.x.dtype))
        assert isinstance(generator, torch.Generator)
        half = len(data) // 2
        yield data.x[half:], data.y[half:]
        yield data.x[:half], data.y[:half]

    model, train, _ = setup()
    model.to(F64)
    reference = Sequential(*[type(m)(*m.init_args[0], **m.init_args[1]) for m in model.layers])
    reference.to(F64).load_state_dict(model.state_dict())
    minidl.fit(
        model, MSE(), SGD(model.parameters(), lr=0.5), train, epochs=3, batch_size=7, batches=halves
    )
    assert calls == [(200, 7, F64)] * 3
    # By hand: two steps an epoch, the second half first, no shuffling.
    loss, opt = MSE(), SGD(reference.parameters(), lr=0.5)
    x, y = train.x.to(F64), train.y.to(F64)
    for _ in range(3):
        for rows in (slice(100, None), slice(None, 100)):
            opt.zero_grad()
            loss.forward(reference.forward(x[rows]), y[rows])
            reference.backward(loss.backward())
            opt.step()
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.data, q.data, rtol=1e-13, atol=1e-15)


def test_fit_follows_the_model_dtype_and_rejects_bad_sizes_and_empty_data() -> None:
    model, train, test = setup()
    model.to(dtype=torch.float64)
    history = minidl.fit(model, MSE(), SGD(model.parameters(), lr=0.1), train, test, epochs=1)
    assert history[0]["train_loss"] > 0
    assert train.x.dtype == torch.float32  # the caller's data is not changed
    for epochs, batch in ((0, 10), (1, 0)):
        with pytest.raises(ValueError, match="epochs and batch_size must be at least 1"):
            minidl.fit(
                model,
                MSE(),
                SGD(model.parameters(), lr=0.1),
                train,
                epochs=epochs,
                batch_size=batch,
            )
    empty = Dataset(torch.zeros(0, 2), torch.zeros(0, 1))
    with pytest.raises(minidl.DataError, match="the training set is empty"):
        minidl.fit(model, MSE(), SGD(model.parameters(), lr=0.1), empty, epochs=1)
    with pytest.raises(minidl.DataError, match="the test set is empty"):
        minidl.fit(model, MSE(), SGD(model.parameters(), lr=0.1), train, empty, epochs=1)


def test_evaluate_in_chunks_equals_one_pass() -> None:
    model, train, _ = setup()
    loss = MSE()
    whole = (float(loss.forward(model(train.x), train.y)), minidl.accuracy(model(train.x), train.y))
    chunked = minidl.evaluate(model, loss, train, chunk=7)  # 200 = 28 * 7 + 4
    assert chunked == pytest.approx(whole, rel=1e-6)
    classes = three_classes(50, seed=4)
    torch.manual_seed(1)
    net = minidl.build("linear(3)", (2,))
    one = minidl.evaluate(net, CrossEntropy(), classes)
    assert minidl.evaluate(net, CrossEntropy(), classes, chunk=8) == pytest.approx(one, rel=1e-6)
    assert one[0] == pytest.approx(float(F.cross_entropy(net(classes.x), classes.y)), rel=1e-6)


def test_disc_dataset_is_the_seeds_task_and_reproducible() -> None:
    train, test = DISC(seed=4, n_train=2000, n_test=500)
    again, _ = DISC(seed=4, n_train=2000, n_test=500)
    assert torch.equal(train.x, again.x) and torch.equal(train.y, again.y)
    assert not torch.equal(train.x[:500], test.x)
    assert train.x.shape == (2000, 2) and train.y.shape == (2000, 1)
    assert train.x.min() >= 0 and train.x.max() < 1
    inside = ((train.x - 0.5) ** 2).sum(1) < 1 / (2 * math.pi)  # radius 1/sqrt(2 pi): area 1/2
    assert torch.equal(train.y.squeeze(1), inside.float())
    assert 0.45 < train.y.mean().item() < 0.55


# ---------------------------------------------------------------------------- the torch twin


def assert_same_curves(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        for key in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12), (a["epoch"], key)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_learning_curve_equals_torch_twin(activation: str, optimizer: str) -> None:
    lr = 0.5 if optimizer == "sgd" else 1e-2
    model, train, test = setup(
        seed=3, spec=f"linear(16), {activation}, linear(16), {activation}, linear(1), sigmoid"
    )
    model.to(F64)
    net = torch_twin(model)
    opt = minidl.create("optimizer", optimizer, model.parameters(), lr=lr)
    ours = minidl.fit(model, MSE(), opt, train, test, epochs=4, batch_size=50, seed=3)
    theirs = twin_fit(
        net, torch_optimizer(optimizer, net.parameters(), lr=lr), train, test, epochs=4,
        batch_size=50, seed=3,
    )  # fmt: skip
    assert_same_curves(ours, theirs)
    assert ours[-1]["train_loss"] < ours[0]["train_loss"]  # it learned something
    for p, q in zip(model.parameters(), net.parameters(), strict=True):
        torch.testing.assert_close(p.data, q.detach(), rtol=1e-9, atol=1e-12)


def test_learning_curve_with_cross_entropy_on_class_indices_equals_torch_twin() -> None:
    torch.manual_seed(5)
    model = minidl.build("linear(16), tanh, linear(3)", (2,)).to(F64)
    train, test = three_classes(170, seed=6), three_classes(80, seed=7)
    net = torch_twin(model)
    ours = minidl.fit(
        model, CrossEntropy(), Adam(model.parameters(), lr=0.03), train, test, epochs=4,
        batch_size=32, seed=2,
    )  # fmt: skip
    theirs = twin_fit(
        net, torch_optimizer("adam", net.parameters(), lr=0.03), train, test, epochs=4,
        batch_size=32, seed=2, loss=F.cross_entropy,
    )  # fmt: skip
    assert_same_curves(ours, theirs)
    assert ours[-1]["train_loss"] < ours[0]["train_loss"]
    for p, q in zip(model.parameters(), net.parameters(), strict=True):
        torch.testing.assert_close(p.data, q.detach(), rtol=1e-9, atol=1e-12)


def test_learning_curve_equals_torch_twin_with_standardize_partial_batches_and_adam_options() -> (
    None
):
    """Standardisation, a last batch smaller than the rest, Xavier init and non-default Adam
    hyperparameters."""
    train, test = DISC(seed=9, n_train=310, n_test=100)
    torch.manual_seed(9)
    model = Sequential(
        Standardize.fit(train.x),
        Linear(2, 16, init="xavier"),
        Tanh(),
        Linear(16, 16, init="xavier"),
        ReLU(),
        Linear(16, 1, init="xavier"),
        Sigmoid(),
    ).to(F64)
    net = torch_twin(model)
    settings = {"lr": 2e-2, "betas": (0.8, 0.99), "eps": 1e-6}
    opt = Adam(model.parameters(), **settings)
    ours = minidl.fit(model, MSE(), opt, train, test, epochs=4, batch_size=64, seed=9)
    theirs = twin_fit(
        net, torch_optimizer("adam", net.parameters(), **settings), train, test, epochs=4,
        batch_size=64, seed=9,
    )  # fmt: skip
    assert_same_curves(ours, theirs)
    for p, q in zip(model.parameters(), net.parameters(), strict=True):
        torch.testing.assert_close(p.data, q.detach(), rtol=1e-9, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_on_cuda_follows_the_cpu_run() -> None:
    histories, models = [], []
    for device in ("cpu", "cuda"):
        model, train, test = setup(seed=2)
        model.to(device, F64)
        opt = Adam(model.parameters(), lr=1e-2)
        histories.append(minidl.fit(model, MSE(), opt, train, test, epochs=3, batch_size=50))
        models.append(model)
    assert {p.data.device.type for p in models[1].parameters()} == {"cuda"}
    for a, b in zip(histories[1], histories[0], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-9)
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-9)
    for p, q in zip(models[1].parameters(), models[0].parameters(), strict=True):
        torch.testing.assert_close(p.data.cpu(), q.data, rtol=1e-9, atol=1e-12)
