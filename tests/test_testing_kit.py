"""minidl.testing: it passes the built-ins and catches each kind of broken plugin."""

from __future__ import annotations

import re

import pytest
import torch
from torch import Tensor

import minidl
from minidl import Parameter
from minidl.plugins import MSE, SGD, Adam, Linear, ReLU, Sigmoid, Tanh
from minidl.plugins.datasets import disc_dataset
from minidl.plugins.layers import Standardize
from minidl.testing import check_dataset, check_layer, check_loss, check_optimizer

# --- the built-ins pass ---------------------------------------------------------------


@pytest.mark.parametrize("activation", [ReLU, Sigmoid, Tanh])
def test_builtin_activations_pass(activation: type) -> None:
    errors = check_layer(activation, (5, 3), large_inputs=1000.0)
    assert set(errors) == {"input"}


def test_linear_passes_and_every_parameter_is_checked() -> None:
    errors = check_layer(lambda: Linear(3, 4), (5, 3))
    assert set(errors) == {"input", "weight", "bias"}
    assert max(errors.values()) < 1e-7


def test_a_float32_instance_is_moved_to_float64() -> None:
    layer = Linear(2, 2)
    check_layer(layer, (3, 2))
    assert layer.weight.data.dtype == torch.float64


def test_standardize_and_a_whole_network_pass() -> None:
    check_layer(lambda: Standardize([0.5, -1.0, 2.0], [1.0, 0.5, 3.0]), (4, 3))
    check_layer(lambda: minidl.build_model("linear(4), tanh, linear(2), sigmoid", 3), (4, 3))


def test_mse_passes() -> None:
    check_loss(MSE, (6, 2), large_inputs=1e3)


@pytest.mark.parametrize(
    ("factory", "hyper"),
    [(SGD, {}), (Adam, {}), (Adam, {"betas": (0.8, 0.99), "weight_decay": 0.01})],
)
def test_builtin_optimizers_pass(factory: type, hyper: dict) -> None:
    result = check_optimizer(factory, lr=0.1, **hyper)
    assert result["final_loss"] < 1e-4 * result["initial_loss"]


def test_disc_dataset_passes() -> None:
    check_dataset(disc_dataset)


# --- broken layers fail, each with a message that says what is wrong -------------------


class Scale:
    """y = w * x elementwise, written with no base class; subclasses break it."""

    def __init__(self, features: int = 3) -> None:
        self.w = Parameter(torch.linspace(0.5, 1.5, features), "w")

    def forward(self, x: Tensor) -> Tensor:
        self._x = x
        return x * self.w.data

    def backward(self, grad_output: Tensor) -> Tensor:
        self.w.grad.add_((grad_output * self._x).sum(0))
        return grad_output * self.w.data

    def parameters(self) -> list[Parameter]:
        return [self.w]


class WrongSign(Scale):
    def backward(self, grad_output: Tensor) -> Tensor:
        super().backward(grad_output)
        return -grad_output * self.w.data


class WrongParameterGradient(Scale):
    def backward(self, grad_output: Tensor) -> Tensor:
        self.w.grad.add_((grad_output * self._x).mean(0))  # mean, not sum, over the batch
        return grad_output * self.w.data


class WrongShape(Scale):
    def backward(self, grad_output: Tensor) -> Tensor:
        return super().backward(grad_output).sum(0)


class Overwrites(Scale):
    def backward(self, grad_output: Tensor) -> Tensor:
        self.w.grad = (grad_output * self._x).sum(0)  # replaces instead of adding
        return grad_output * self.w.data


class Squeezes(Scale):
    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x).squeeze()  # drops the batch dimension for one row


class ModifiesInput(Scale):
    def forward(self, x: Tensor) -> Tensor:
        self._x = x.clone()
        return x.mul_(self.w.data)


class Float32Weights(Scale):
    def __init__(self) -> None:
        self.w = Parameter(torch.ones(3, dtype=torch.float32), "w")

    def to(self, device: object = None, dtype: object = None) -> None:
        pass  # ignores the request


class ReturnsTensorsNotParameters(Scale):
    def parameters(self) -> list:  # type: ignore[override]
        return [self.w.data]


class NewParametersEachCall(Scale):
    def parameters(self) -> list[Parameter]:
        return [Parameter(self.w.data, "w")]


class NoBackward:
    def forward(self, x: Tensor) -> Tensor:
        return x

    def parameters(self) -> list[Parameter]:
        return []


class OverflowingSigmoid:
    def forward(self, x: Tensor) -> Tensor:
        self._e = torch.exp(-x)
        return 1 / (1 + self._e)

    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output * self._e / (1 + self._e) ** 2

    def parameters(self) -> list[Parameter]:
        return []


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (
            WrongSign,
            "WrongSign.backward's input gradient does not match central finite differences.*the sign is flipped",
        ),
        (
            WrongParameterGradient,
            r"gradient for parameter 0 \('w'\) does not match.*off by a factor of 0.2",
        ),
        (
            WrongShape,
            r"backward returned a gradient of shape \(3,\) for an input of shape \(5, 3\)",
        ),
        (Overwrites, "must add into Parameter.grad, not overwrite it"),
        (
            Squeezes,
            r"forward on a batch of one on input of shape \(1, 3\) returned shape \(3,\); the first dimension is the batch",
        ),
        (ModifiesInput, "modified its input in place"),
        (
            Float32Weights,
            r"parameter 0 \('w'\) is torch.float32 after building the layer in float64",
        ),
        (ReturnsTensorsNotParameters, "item 0 is a Tensor, not a minidl.Parameter"),
        (NewParametersEachCall, "returns different Parameter objects on each call"),
        (NoBackward, "it lacks backward"),
    ],
)
def test_broken_layers_fail_with_a_clear_message(layer: type, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_layer(layer, (5, 3))


def test_overflow_is_caught_only_when_asked() -> None:
    check_layer(OverflowingSigmoid, (4, 2))
    with pytest.raises(AssertionError, match="not finite for inputs of magnitude up to 1000"):
        check_layer(OverflowingSigmoid, (4, 2), large_inputs=1000.0)


def test_batch_dependence_is_caught_unless_declared() -> None:
    class CentreBatch:
        def forward(self, x: Tensor) -> Tensor:
            return x - x.mean(0)

        def backward(self, grad_output: Tensor) -> Tensor:
            return grad_output - grad_output.mean(0)

        def parameters(self) -> list[Parameter]:
            return []

    with pytest.raises(AssertionError, match="on a batch of one does not match row 0 of a batch"):
        check_layer(CentreBatch, (4, 2))
    check_layer(CentreBatch, (4, 2), batch_independent=False)


def test_input_shape_must_be_a_batch() -> None:
    with pytest.raises(ValueError, match="batch of at least 2 rows"):
        check_layer(ReLU, (1, 3))


# --- broken losses ----------------------------------------------------------------------


class HalfGradientMSE(MSE):
    def backward(self) -> Tensor:
        return self._diff / self._diff.numel()  # forgets the 2


class NotReduced(MSE):
    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        self._diff = prediction - target
        return self._diff.pow(2)


class BadAccuracy(MSE):
    def accuracy(self, prediction: Tensor, target: Tensor) -> float:
        return 100.0  # a percentage, not a fraction


class NaiveBCE:
    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        self._p, self._t = torch.sigmoid(prediction), target
        return -(target * self._p.log() + (1 - target) * (1 - self._p).log()).mean()

    def backward(self) -> Tensor:
        return (self._p - self._t) / self._p.numel()


@pytest.mark.parametrize(
    ("loss", "message"),
    [
        (HalfGradientMSE, r"HalfGradientMSE.backward does not match.*off by a factor of 0.5"),
        (NotReduced, r"returned shape \(6, 1\); a loss returns a 0-dim tensor"),
        (BadAccuracy, r"accuracy returned 100.0, expected a fraction in \[0, 1\]"),
    ],
)
def test_broken_losses_fail_with_a_clear_message(loss: type, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_loss(loss, (6, 1))


def test_an_unstable_loss_is_caught() -> None:
    target = torch.tensor([[0.0], [1.0], [1.0], [0.0]])
    check_loss(NaiveBCE, (4, 1), target=target)  # fine for moderate logits
    with pytest.raises(AssertionError, match="not numerically stable"):
        check_loss(NaiveBCE, (4, 1), target=target, large_inputs=1000.0)


# --- broken optimizers ------------------------------------------------------------------


class Ascends(SGD):
    def step(self) -> None:
        self.data.add_(self.grad, alpha=self.lr)


class ZeroesWeights(SGD):
    def zero_grad(self) -> None:
        self.data.zero_()


class ForgetsSomeGradients(SGD):
    def zero_grad(self) -> None:
        self.flat.params[0].grad.zero_()


class CachesLr:
    """No base class; copies lr into a private field, so schedules cannot change it."""

    def __init__(self, parameters: list[Parameter], lr: float) -> None:
        self.params, self.lr, self._step = list(parameters), lr, lr

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad.zero_()

    def step(self) -> None:
        for p in self.params:
            p.data.add_(p.grad, alpha=-self._step)


class NoLr(CachesLr):
    def __init__(self, parameters: list[Parameter], lr: float) -> None:
        super().__init__(parameters, lr)
        del self.lr


class DoesNothing(CachesLr):
    def step(self) -> None:
        pass


class Stalls(CachesLr):
    def step(self) -> None:
        for p in self.params:
            p.data.add_(p.grad.sign(), alpha=-self.lr)  # a fixed step size: oscillates


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (Ascends, r"raised the loss of a quadratic.*check the update's sign"),
        (ZeroesWeights, r"zero_grad\(\) changed the weights of parameter 0 \('weight'\)"),
        (
            ForgetsSomeGradients,
            r"zero_grad\(\) left the gradient of parameter 1 \('bias'\) nonzero",
        ),
        (CachesLr, r"setting CachesLr.lr = 0.05 did not change the next step"),
        (NoLr, r"lr equal to the lr it was made with \(0.1\), got '\(no attribute lr\)'"),
        (DoesNothing, r"step\(\) did not change the weights"),
        (Stalls, r"Stalls does not converge on a quadratic: after 300 steps"),
    ],
)
def test_broken_optimizers_fail_with_a_clear_message(factory: type, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_optimizer(factory, lr=0.1)


def test_an_optimizer_with_the_wrong_signature_is_named() -> None:
    def needs_momentum(parameters: list[Parameter], lr: float, momentum: float) -> SGD:
        return SGD(parameters, lr)

    with pytest.raises(
        AssertionError, match=re.escape("needs_momentum(parameters, lr=0.1, ...) failed")
    ):
        check_optimizer(needs_momentum)
    check_optimizer(needs_momentum, momentum=0.5)


# --- broken datasets --------------------------------------------------------------------


def test_broken_datasets_fail_with_a_clear_message() -> None:
    def unseeded(seed: int = 0, n_train: int = 10, n_test: int = 10) -> tuple:
        return disc_dataset(int(torch.randint(0, 1000, ())), n_train, n_test)

    def wrong_size(seed: int = 0, n_train: int = 10, n_test: int = 10) -> tuple:
        return disc_dataset(seed, n_train + 1, n_test)

    def same_for_test(seed: int = 0, n_train: int = 10, n_test: int = 10) -> tuple:
        train, _ = disc_dataset(seed, n_train, n_test)
        return train, train

    with pytest.raises(AssertionError, match="two calls with seed=0 gave different data"):
        check_dataset(unseeded)
    with pytest.raises(AssertionError, match="train set has 41 points, asked for 40"):
        check_dataset(wrong_size)
    with pytest.raises(AssertionError, match="the test set repeats the training set"):
        check_dataset(same_for_test, n_test=40)
