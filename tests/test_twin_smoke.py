"""minidl's training equals its torch.nn twin: same weights, same batches, same curves."""

import pytest
import torch
from twin import make_torch_optimizer, torch_twin, twin_fit

import minidl


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_learning_curve_equals_torch_twin(activation: str, optimizer: str) -> None:
    config = minidl.TrainConfig(
        activation=activation,
        optimizer=optimizer,
        lr=0.1 if optimizer == "sgd" else 1e-2,
        epochs=5,
        batch_size=50,
        n_train=300,
        n_test=200,
        dtype="float64",
        seed=3,
    )
    model, loss, opt, train, test = minidl.experiment.setup(config)
    net = torch_twin(model)
    torch_opt = make_torch_optimizer(optimizer, net.parameters(), lr=config.lr)
    ours = minidl.fit(model, loss, opt, train, test, epochs=5, batch_size=50, seed=3)
    theirs = twin_fit(net, torch_opt, train, test, epochs=5, batch_size=50, seed=3)
    for a, b in zip(ours, theirs, strict=True):
        for key in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12), (a["epoch"], key)
    for p, q in zip(model.parameters(), net.parameters(), strict=True):
        torch.testing.assert_close(p.data, q.detach(), rtol=1e-9, atol=1e-12)
