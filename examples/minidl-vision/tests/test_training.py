"""A whole convnet from a minidl spec: the same learning curve as its torch.nn twin, saved
and loaded models that predict alike, and the accuracy target on digits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from minidl_vision import digits

import minidl

SPEC = (
    "conv2d(8, 3, padding=1), batchnorm2d(8), relu, maxpool2d(2), flatten, "
    "dropout(0.25), linear(10)"
)
NO_DROPOUT = SPEC.replace("dropout(0.25), ", "")
NO_BIAS = NO_DROPOUT.replace("padding=1)", "padding=1, bias=False)")
#: The convnet of the accuracy target.
TARGET_SPEC = (
    "conv2d(16, 3, padding=1), batchnorm2d(16), relu, maxpool2d(2), "
    "conv2d(32, 3, padding=1), batchnorm2d(32), relu, maxpool2d(2), "
    "flatten, dropout(0.25), linear(10)"
)


def twin_of(spec: str) -> torch.nn.Sequential:
    """The spec's layers in torch.nn (its state_dict keys are minidl's)."""
    nn = torch.nn
    layers = {
        SPEC: [
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.25), nn.Linear(8 * 4 * 4, 10),
        ],
        NO_DROPOUT: [
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
        ],
        NO_BIAS: [
            nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
        ],
        TARGET_SPEC: [
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.25), nn.Linear(32 * 2 * 2, 10),
        ],
    }[spec]  # fmt: skip
    return nn.Sequential(*layers)


def twin_fit(
    net: torch.nn.Sequential,
    train: minidl.Dataset,
    test: minidl.Dataset,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    lr: float = 1e-3,
) -> list[dict[str, float]]:
    """minidl.fit's loop written with torch.nn, autograd and torch.optim.Adam: the same
    batches (Dataset.batches with a generator seeded alike), then loss and accuracy on
    both sets in eval mode after every epoch."""
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    history = []

    def evaluate(data: minidl.Dataset) -> tuple[float, float]:
        net.eval()
        with torch.no_grad():
            logits = net(data.x)
        return float(F.cross_entropy(logits, data.y)), float(
            (logits.argmax(1) == data.y).double().mean()
        )

    with torch.enable_grad():
        for epoch in range(1, epochs + 1):
            net.train()
            for x, y in train.batches(batch_size, generator):
                optimizer.zero_grad()
                F.cross_entropy(net(x), y).backward()
                optimizer.step()
            record: dict[str, float] = {"epoch": epoch}
            record["train_loss"], record["train_accuracy"] = evaluate(train)
            record["test_loss"], record["test_accuracy"] = evaluate(test)
            history.append(record)
    return history


def small_digits(dtype: torch.dtype) -> tuple[minidl.Dataset, minidl.Dataset]:
    train, test = digits(seed=1, n_train=300, n_test=120)
    return train.to(dtype=dtype), test.to(dtype=dtype)


def test_spec_builds_the_convnet_with_torchs_keys() -> None:
    model = minidl.build(TARGET_SPEC, (1, 8, 8))
    names = [minidl.registry.name_of("layer", type(layer)) for layer in model.layers]
    assert names == [
        "conv2d", "batchnorm2d", "relu", "maxpool2d", "conv2d", "batchnorm2d", "relu",
        "maxpool2d", "flatten", "dropout", "linear",
    ]  # fmt: skip
    assert [model.layers[0].in_channels, model.layers[4].in_channels] == [1, 16]
    assert model.layers[-1].in_features == 32 * 2 * 2
    ours, theirs = model.state_dict(), twin_of(TARGET_SPEC).state_dict()
    assert sorted(ours) == sorted(theirs)  # minidl lists every parameter first, then buffers
    assert all(ours[k].shape == theirs[k].shape and ours[k].dtype == theirs[k].dtype for k in ours)
    assert model.forward(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


# A convolution's bias right before batch norm has a gradient of exactly zero in theory,
# rounding noise (1e-17) in practice, which Adam divides by its eps (1e-8) into steps of
# 1e-12: the bias then wanders differently in the two, which eval mode's running mean
# shows, and training amplifies the difference by about 4x an epoch (1e-11 after the
# first epoch, 3e-9 after the sixth). Without that bias the curves agree to 1e-15.
@pytest.mark.parametrize(
    "spec, dropout_seed, rel",
    [(NO_BIAS, None, 1e-12), (NO_DROPOUT, None, 1e-7), (SPEC, 5, 1e-7)],
    ids=["no-conv-bias", "no-dropout", "dropout"],
)
def test_learning_curve_equals_the_torch_twin(
    spec: str, dropout_seed: int | None, rel: float
) -> None:
    """Float64, the same initial weights (copied through state_dict), the same batches:
    every epoch's losses and accuracies agree, and so do the final weights and running
    statistics. With dropout, seeding torch's generator alike gives both the same masks."""
    torch.manual_seed(0)
    model = minidl.build(spec, (1, 8, 8)).to(torch.float64)
    net = twin_of(spec).to(torch.float64)
    net.load_state_dict(model.state_dict())
    train, test = small_digits(torch.float64)
    optimizer = minidl.create("optimizer", "adam", model.parameters(), lr=3e-3)
    loss = minidl.create("loss", "cross_entropy")
    settings: dict[str, Any] = {"epochs": 6, "batch_size": 50, "seed": 3}
    if dropout_seed is not None:
        torch.manual_seed(dropout_seed)
    ours = minidl.fit(model, loss, optimizer, train, test, **settings)
    if dropout_seed is not None:
        torch.manual_seed(dropout_seed)
    theirs = twin_fit(net, train, test, lr=3e-3, **settings)
    assert ours[-1]["train_loss"] < 0.8 * ours[0]["train_loss"]  # it learns
    for mine, twin in zip(ours, theirs, strict=True):
        for key in ("train_loss", "test_loss"):
            assert mine[key] == pytest.approx(twin[key], rel=rel), (mine["epoch"], key)
        for key in ("train_accuracy", "test_accuracy"):
            assert mine[key] == twin[key], (mine["epoch"], key)
    final = net.state_dict()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, final[key], rtol=1000 * rel, atol=rel, msg=key)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_saved_model_predicts_as_the_original(tmp_path: Path, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    model = minidl.build(TARGET_SPEC, (1, 8, 8)).to(dtype)
    train, test = digits(seed=0, n_train=200, n_test=100)
    optimizer = minidl.create("optimizer", "adam", model.parameters())
    minidl.fit(model, minidl.create("loss", "cross_entropy"), optimizer, train, test, epochs=2)
    minidl.save_model(model, tmp_path / "convnet", metadata={"dataset": "digits"})
    loaded, metadata = minidl.load_model(tmp_path / "convnet")
    assert metadata == {"dataset": "digits"}
    assert not loaded.training and not any(layer.training for layer in loaded.layers)
    assert loaded.parameters()[0].data.dtype == dtype
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    expected = minidl.predict(model, test.x)
    for _ in range(3):  # every time: eval mode draws no dropout mask, moves no statistic
        assert torch.equal(minidl.predict(loaded, test.x), expected)
        assert torch.equal(loaded.forward(test.x.to(dtype)), expected)
    assert int(loaded.state_dict()["1.num_batches_tracked"]) == 2 * 2  # epochs x steps


def test_the_convnet_reaches_98_percent_on_digits() -> None:
    """The accuracy target: lr 1e-3 and batch 100 (the CLI's defaults), 30 epochs, the mean
    over five seeds (the split, the initial weights and the shuffling)."""
    accuracies = []
    for seed in range(5):
        train, test = minidl.create("dataset", "digits", seed=seed)
        torch.manual_seed(seed)
        model = minidl.build(TARGET_SPEC, (1, 8, 8))
        optimizer = minidl.create("optimizer", "adam", model.parameters(), lr=1e-3)
        loss = minidl.create("loss", "cross_entropy")
        history = minidl.fit(
            model, loss, optimizer, train, test, epochs=30, batch_size=100, seed=seed,
            evaluate_every_epoch=False,
        )  # fmt: skip
        accuracies.append(history[-1]["test_accuracy"])
    mean = sum(accuracies) / len(accuracies)
    assert mean >= 0.98, f"test accuracies {accuracies}, mean {mean:.4f}"


def test_a_model_with_pairs_and_every_layer_round_trips(tmp_path: Path) -> None:
    """Tuples in the spec come back from JSON as lists; every layer rebuilds from them."""
    spec = (
        "conv2d(4, (3, 2), stride=(2, 1), padding=(1, 0), bias=False), batchnorm2d(4, "
        "momentum=None), relu, maxpool2d((2, 1)), flatten, batchnorm1d(16), dropout(0.5), "
        "linear(3)"
    )
    torch.manual_seed(1)
    model = minidl.build(spec, (2, 6, 5))
    model.forward(torch.randn(4, 2, 6, 5))  # move the running statistics
    minidl.save_model(model, tmp_path / "m")
    loaded, _ = minidl.load_model(tmp_path / "m")
    x = torch.randn(3, 2, 6, 5)
    assert torch.equal(minidl.predict(loaded, x), minidl.predict(model, x))
    assert loaded.layers[0].kernel_size == (3, 2) and loaded.layers[0].bias is None
