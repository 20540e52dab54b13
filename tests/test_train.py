"""The training loop: reproducible, resumable, honest about divergence, equal to a torch twin."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from twin import make_torch_optimizer, torch_twin, twin_fit

import minidl
from minidl.plugins import MSE, SGD, Adam

DISC = minidl.registry.get("dataset", "disc")


def _setup(seed: int = 0, spec: str = "linear(25), relu, linear(25), relu, linear(1), sigmoid"):
    torch.manual_seed(seed)
    model = minidl.build_model(spec, 2)
    train, test = DISC(seed=seed, n_train=200, n_test=100)
    return model, train, test


def test_run_is_reproducible_from_its_seed() -> None:
    a = minidl.run(epochs=3, n_train=200, n_test=100, seed=5)
    b = minidl.run(epochs=3, n_train=200, n_test=100, seed=5)
    c = minidl.run(epochs=3, n_train=200, n_test=100, seed=6)
    assert a.history == b.history
    assert all(
        torch.equal(p.data, q.data)
        for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True)
    )
    assert a.history != c.history


def test_fit_seed_controls_the_shuffling() -> None:
    results = []
    for seed in (1, 1, 2):
        model, train, test = _setup()
        minidl.fit(
            model, MSE(), SGD(model.parameters(), lr=0.1), train, epochs=2, batch_size=20, seed=seed
        )
        results.append(torch.cat([p.data.flatten() for p in model.parameters()]))
    assert torch.equal(results[0], results[1])
    assert not torch.equal(results[0], results[2])


def test_history_keys_and_values() -> None:
    model, train, test = _setup()
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
    model, train, test = _setup()
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
    model, train, _ = _setup()
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
    model, train, _ = _setup(spec=spec)
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

    model, train, _ = _setup(spec=spec)
    with pytest.raises(minidl.DivergenceError) as info:
        minidl.fit(model, MSE(), SGD(model.parameters(), lr=lr), train, epochs=5, batch_size=batch)
    assert (info.value.epoch, info.value.step) == expected
    assert f"at epoch {expected[0]}, step {expected[1]} (lr={lr:g})" in str(info.value)
    assert "try a lower learning rate" in str(info.value)


def test_resuming_at_start_epoch_equals_the_uninterrupted_run() -> None:
    model, train, test = _setup()
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

    resumed, train, test = _setup()
    opt = Adam(resumed.parameters(), lr=1e-2)
    first = minidl.fit(resumed, MSE(), opt, train, test, epochs=2, batch_size=30, seed=3)
    rest = minidl.fit(
        resumed, MSE(), opt, train, test, epochs=4, batch_size=30, seed=3, start_epoch=3
    )
    assert first + rest == straight
    for p, q in zip(resumed.parameters(), model.parameters(), strict=True):
        assert torch.equal(p.data, q.data)


def test_fit_follows_the_model_dtype_and_rejects_bad_sizes() -> None:
    model, train, test = _setup()
    model.to(dtype=torch.float64)
    history = minidl.fit(model, MSE(), SGD(model.parameters(), lr=0.1), train, test, epochs=1)
    assert history[0]["train_loss"] > 0
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


def test_evaluate_in_chunks_equals_one_pass() -> None:
    model, train, _ = _setup()
    loss = MSE()
    whole = (float(loss.forward(model(train.x), train.y)), minidl.accuracy(model(train.x), train.y))
    chunked = minidl.evaluate(model, loss, train, chunk=7)  # 200 = 28 * 7 + 4
    assert chunked == pytest.approx(whole, rel=1e-6)


def test_accuracy_thresholds_one_output_and_argmaxes_several() -> None:
    assert minidl.accuracy(
        torch.tensor([[0.2], [0.7], [0.9]]), torch.tensor([[0.0], [0.0], [1.0]])
    ) == pytest.approx(2 / 3)
    p = torch.tensor([[0.1, 0.9], [0.8, 0.2]])
    assert minidl.accuracy(p, torch.tensor([[0.0, 1.0], [0.0, 1.0]])) == 0.5


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


def test_learning_curve_equals_torch_twin_with_standardize_partial_batches_and_adam_options() -> (
    None
):
    """Beyond test_twin_smoke: standardisation, a last batch smaller than the rest, Xavier
    init and non-default Adam hyperparameters."""
    config = minidl.TrainConfig(
        activation="tanh",
        standardize=True,
        init="xavier",
        beta1=0.8,
        beta2=0.99,
        eps=1e-6,
        lr=2e-2,
        n_train=310,
        n_test=100,
        batch_size=64,
        epochs=4,
        dtype="float64",
        seed=9,
    )
    model, loss, opt, train, test = minidl.experiment.setup(config)
    net = torch_twin(model)
    torch_opt = make_torch_optimizer("adam", net.parameters(), lr=2e-2, betas=(0.8, 0.99), eps=1e-6)
    ours = minidl.fit(model, loss, opt, train, test, epochs=4, batch_size=64, seed=9)
    theirs = twin_fit(net, torch_opt, train, test, epochs=4, batch_size=64, seed=9)
    for a, b in zip(ours, theirs, strict=True):
        for key in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12), (a["epoch"], key)
    for p, q in zip(model.parameters(), net.parameters(), strict=True):
        torch.testing.assert_close(p.data, q.detach(), rtol=1e-9, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_run_on_cuda_follows_the_cpu_run() -> None:
    config = minidl.TrainConfig(
        epochs=3, n_train=300, n_test=200, dtype="float64", lr=1e-2, standardize=True
    )
    cpu = minidl.run(config)
    gpu = minidl.run(config, device="cuda")
    assert {p.data.device.type for p in gpu.model.parameters()} == {"cuda"}
    for a, b in zip(gpu.history, cpu.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-9)
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-9)
    for p, q in zip(gpu.model.parameters(), cpu.model.parameters(), strict=True):
        torch.testing.assert_close(p.data.cpu(), q.data, rtol=1e-9, atol=1e-12)
