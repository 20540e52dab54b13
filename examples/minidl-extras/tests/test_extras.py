"""minidl-extras' own tests: minidl's plugin-author kit, torch as the reference, then the
plugin through minidl's registry, its Python API and its command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from minidl_extras import BCEWithLogits, LeakyReLU, MomentumSGD, spirals
from minidl_extras.commands import extras_info

import minidl
from minidl import registry
from minidl.cli import TrainConfig, cli, run
from minidl.cli.commands.plugins import records
from minidl.testing import check_dataset, check_layer, check_loss, check_optimizer


@pytest.mark.parametrize("slope", [0.01, 0.2, 0.0, -0.5])
def test_leaky_relu_passes_the_kit(slope: float) -> None:
    check_layer(lambda: LeakyReLU(slope), input_shape=(6, 4), large_inputs=1e3)


def test_leaky_relu_equals_torch() -> None:
    x = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    g = torch.randn(7, 3, dtype=torch.float64)
    layer = LeakyReLU(0.1)
    y = layer.forward(x.detach())
    with torch.enable_grad():
        expected = F.leaky_relu(x, 0.1)
        expected.backward(g)
    torch.testing.assert_close(y, expected.detach(), rtol=0, atol=0)
    torch.testing.assert_close(layer.backward(g), x.grad, rtol=0, atol=0)


def test_leaky_relu_records_how_it_was_made_and_rejects_a_bad_slope() -> None:
    assert LeakyReLU(slope=0.05).init_args == ((), {"slope": 0.05})  # what a model file keeps
    assert repr(LeakyReLU(0.05)) == "LeakyReLU(slope=0.05)"
    with pytest.raises(ValueError, match="slope must be a finite number"):
        LeakyReLU(float("nan"))


def test_bce_passes_the_kit() -> None:
    target = (torch.rand(8, 1, generator=torch.Generator().manual_seed(1)) > 0.5).double()
    check_loss(BCEWithLogits, prediction_shape=(8, 1), target=target, large_inputs=1e3)
    check_loss(BCEWithLogits, prediction_shape=(5, 3))  # soft targets, several outputs


@pytest.mark.parametrize("scale", [1.0, 50.0, 800.0])
def test_bce_equals_torch_even_for_huge_logits(scale: float) -> None:
    gen = torch.Generator().manual_seed(0)
    z = (torch.randn(9, 1, generator=gen, dtype=torch.float64) * scale).requires_grad_()
    y = (torch.rand(9, 1, generator=gen, dtype=torch.float64) > 0.5).double()
    loss = BCEWithLogits()
    value = loss.forward(z.detach(), y)
    with torch.enable_grad():
        expected = F.binary_cross_entropy_with_logits(z, y)
        expected.backward()
    torch.testing.assert_close(value, expected.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loss.backward(), z.grad, rtol=1e-12, atol=1e-15)
    assert loss.accuracy(z.detach(), y) == float(((z > 0) == (y > 0.5)).double().mean())


HYPER = [
    {"momentum": 0.9},
    {"momentum": 0.5, "weight_decay": 0.01},
    {"momentum": 0.9, "nesterov": True},
    {"momentum": 0.8, "dampening": 0.3},
    {"momentum": 0.0},
]


@pytest.mark.parametrize("hyper", HYPER)
def test_momentum_sgd_passes_the_kit(hyper: dict) -> None:
    check_optimizer(MomentumSGD, lr=0.05, steps=400, resumable=True, **hyper)


@pytest.mark.parametrize(
    "hyper", [*HYPER[:3], {"momentum": 0.6, "dampening": 0.25, "weight_decay": 0.02}]
)
def test_momentum_sgd_trajectory_equals_torch_optim(hyper: dict) -> None:
    """100 steps from the same weights, the same gradient function on both sides."""
    gen = torch.Generator().manual_seed(3)
    shapes = [(4, 3), (4,), (1, 4)]
    start = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    ours = [minidl.Parameter(w.clone()) for w in start]
    theirs = [torch.nn.Parameter(w.clone()) for w in start]
    opt = MomentumSGD(ours, lr=0.03, **hyper)
    ref = torch.optim.SGD(theirs, lr=0.03, **hyper)

    def gradient(w: torch.Tensor, step: int) -> torch.Tensor:
        return torch.sin(3 * w) + w**3 - 0.01 * step

    for step in range(100):
        opt.zero_grad()
        for p in ours:
            p.grad.add_(gradient(p.data, step))
        opt.step()
        ref.zero_grad()
        for q in theirs:
            q.grad = gradient(q.detach(), step)
        ref.step()
    for p, q in zip(ours, theirs, strict=True):
        torch.testing.assert_close(p.data, q.detach(), rtol=1e-12, atol=1e-14)


def test_momentum_sgd_state_comes_from_the_base_class_and_resumes_exactly() -> None:
    """No state_dict is written in MomentumSGD: FlatOptimizer's captures the velocity."""
    assert "state_dict" not in vars(MomentumSGD) and "load_state_dict" not in vars(MomentumSGD)

    def run_steps(steps: int, resume_at: int | None = None) -> torch.Tensor:
        torch.manual_seed(0)
        w = minidl.Parameter(torch.randn(5, dtype=torch.float64))
        opt = MomentumSGD([w], lr=0.05, momentum=0.9, weight_decay=0.01)
        for step in range(steps):
            if step == resume_at:
                state = opt.state_dict()
                assert set(state) == {
                    "lr",
                    "momentum",
                    "dampening",
                    "weight_decay",
                    "nesterov",
                    "velocity",
                    "started",
                }
                opt = MomentumSGD([w], lr=0.05, momentum=0.9, weight_decay=0.01)
                opt.load_state_dict(state)
                assert opt.started is True
            opt.zero_grad()
            w.grad.add_(torch.cos(w.data) * 3)
            opt.step()
        return w.data.clone()

    torch.testing.assert_close(run_steps(30, resume_at=12), run_steps(30), rtol=0, atol=0)
    assert not torch.equal(run_steps(30), run_steps(29))


def test_momentum_sgd_rejects_bad_hyperparameters() -> None:
    params = [minidl.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="momentum must be a non-negative number"):
        MomentumSGD(params, lr=0.1, momentum=-1)
    with pytest.raises(ValueError, match="nesterov needs momentum > 0"):
        MomentumSGD(params, lr=0.1, momentum=0.0, nesterov=True)


def test_spirals_passes_the_kit() -> None:
    check_dataset(spirals)


def test_spirals_are_two_balanced_arms_half_a_turn_apart() -> None:
    train, _ = spirals(seed=5, n_train=400, n_test=10, noise=0.0)
    centred = train.x - 0.5
    radius = centred.norm(dim=1)
    assert int(train.y.sum()) == 200
    assert float(radius.min()) >= 0.05 - 1e-6 and float(radius.max()) <= 0.5 + 1e-6
    # Noise-free, a point of arm 1 turned by half a circle lies on arm 0: its angle
    # matches arm 0's angle at that radius.
    angle = torch.atan2(centred[:, 1], centred[:, 0])
    expected = (2 * radius) * 2 * torch.pi + torch.pi * train.y[:, 0]
    wrapped = torch.remainder(angle - expected + torch.pi, 2 * torch.pi) - torch.pi
    assert float(wrapped.abs().max()) < 1e-4


# --- through minidl ---------------------------------------------------------------------------


@pytest.fixture
def extras() -> str:
    """The plugin as minidl sees it: the installed entry point, or the module by name."""
    return registry.load("minidl_extras")


def test_registered_names_resolve_to_the_plugin(extras: str) -> None:
    assert registry.get("layer", "leaky_relu") is LeakyReLU
    assert registry.get("loss", "bce") is BCEWithLogits
    assert registry.get("optimizer", "momentum_sgd") is MomentumSGD
    assert registry.get("dataset", "spirals") is spirals
    record = next(r for r in records() if r["name"] == extras)
    assert record["error"] == ""
    assert record["registers"] == {
        "layer": ["leaky_relu"],
        "loss": ["bce"],
        "optimizer": ["momentum_sgd"],
        "dataset": ["spirals"],
    }
    assert "register_commands" in record["hooks"]


MODEL = "linear(32), leaky_relu(slope=0.05), linear(32), leaky_relu(0.05), linear(1)"


def test_training_on_spirals_with_every_extra_and_their_settings(extras: str) -> None:
    result = run(
        TrainConfig(
            dataset="spirals(noise=0.02)", n_train=400, n_test=200, model=MODEL, loss="bce",
            optimizer="momentum_sgd(momentum=0.9, nesterov=True)", lr=0.1, epochs=40,
            batch_size=20, seed=1,
        )
    )  # fmt: skip
    assert isinstance(result.optimizer, MomentumSGD) and result.optimizer.nesterov is True
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < 0.2 * losses[0]
    assert result.test_accuracy > 0.9  # chance is 0.5; no line separates two spirals


def test_the_command_line_trains_saves_and_predicts(extras: str, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["train", "--dataset", "spirals(turns=1.0)", "--n-train", "200", "--n-test", "100",
            "--model", MODEL, "--loss", "bce", "--optimizer", "momentum_sgd(momentum=0.8)",
            "--lr", "0.1", "--epochs", "3", "--batch-size", "20", "--json", "--no-diagnostics"]  # fmt: skip
    result = runner.invoke(cli, ["-p", "minidl_extras", *args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["config"]["optimizer"] == "momentum_sgd(momentum=0.8)"
    # The saved model names the plugin's layer, with its setting, and loads with it.
    layers = json.loads((tmp_path / "model.json").read_text())["layers"]
    assert layers[1]["name"] == "leaky_relu" and layers[1]["kwargs"] == {"slope": 0.05}
    model, _ = minidl.load_model(tmp_path)
    predicted = runner.invoke(
        cli, ["-p", "minidl_extras", "predict", str(tmp_path), "0.5", "0.25", "--json"]
    )
    assert predicted.exit_code == 0, predicted.output
    expected = minidl.predict(model, torch.tensor([[0.5, 0.25]]))
    assert json.loads(predicted.stdout)["predictions"][0]["output"] == expected[0].tolist()
    # A setting the factory does not take is named, with the ones it takes.
    bad = runner.invoke(
        cli, ["-p", "minidl_extras", "train", "--optimizer", "momentum_sgd(moment=0.8)"]
    )
    assert bad.exit_code == 2
    assert (
        "optimizer 'momentum_sgd' has no setting 'moment'; its settings: momentum, dampening"
        in bad.stderr
    )


def test_extras_info_command(extras: str) -> None:
    out = CliRunner().invoke(extras_info, ["--json"])
    assert out.exit_code == 0, out.output
    info = json.loads(out.output)
    assert info["plugin"] == extras
    assert info["registers"]["optimizer"] == ["momentum_sgd"]
    through_minidl = CliRunner().invoke(cli, ["-p", "minidl_extras", "extras-info", "--json"])
    assert json.loads(through_minidl.stdout) == info
