"""minidl.testing: it passes the built-ins and catches each kind of broken plugin."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import minidl
from minidl import Dataset, FlatOptimizer, ModuleBase, Parameter
from minidl.plugins import MSE, SGD, Adam, Linear, ReLU, Sigmoid, Tanh
from minidl.plugins.datasets import disc_dataset
from minidl.plugins.layers import Standardize
from minidl.plugins.losses import CrossEntropy
from minidl.testing import check_dataset, check_layer, check_loss, check_optimizer

# --- correct stateful layers, written with tensor operations only ---------------------------


class Dropout(ModuleBase):
    """Zeroes each input with probability p in training mode and scales the rest by 1/(1-p)."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        self._scale = torch.ones_like(x)
        if self.training:
            self._scale = (torch.rand(x.shape, dtype=x.dtype) >= self.p) / (1 - self.p)
        return x * self._scale

    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output * self._scale


class BatchNorm(ModuleBase):
    """Per-feature batch normalisation of (N, features), with running statistics."""

    def __init__(self, features: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        self.momentum, self.eps = momentum, eps
        self.weight = Parameter(torch.linspace(0.5, 1.5, features), "weight")
        self.bias = Parameter(torch.linspace(-0.5, 0.5, features), "bias")
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            mean, var = x.mean(0), x.var(0, unbiased=False)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(x.var(0, unbiased=True), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        self._inv_std = (var + self.eps).rsqrt()
        self._normal = (x - mean) * self._inv_std
        return self._normal * self.weight.data + self.bias.data

    def backward(self, grad_output: Tensor) -> Tensor:
        self.weight.grad.add_((grad_output * self._normal).sum(0))
        self.bias.grad.add_(grad_output.sum(0))
        g = grad_output * self.weight.data
        if not self.training:  # the statistics are constants
            return g * self._inv_std
        mean_g, mean_gn = g.mean(0), (g * self._normal).mean(0)
        return (g - mean_g - self._normal * mean_gn) * self._inv_std


class Momentum(FlatOptimizer):
    """Heavy-ball SGD: its velocity is state that a resumed run needs."""

    def __init__(self, parameters: list[Parameter], lr: float, momentum: float = 0.9) -> None:
        super().__init__(parameters, lr)
        self.momentum, self.velocity = momentum, torch.zeros_like(self.data)

    def step(self) -> None:
        self.velocity.mul_(self.momentum).add_(self.grad)
        self.data.add_(self.velocity, alpha=-self.lr)


# --- the built-ins and the correct stateful plugins pass ----------------------------------


@pytest.mark.parametrize("activation", [ReLU, Sigmoid, Tanh])
def test_builtin_activations_pass(activation: type) -> None:
    errors = check_layer(activation, (5, 3), large_inputs=1000.0)
    assert set(errors) == {"the input"}


def test_linear_passes_and_every_parameter_is_checked() -> None:
    errors = check_layer(lambda: Linear(3, 4), (5, 3))
    assert set(errors) == {"the input", "parameter 0 ('weight')", "parameter 1 ('bias')"}
    assert max(errors.values()) < 1e-7


def test_a_float32_instance_is_moved_to_float64_and_the_callers_state_is_kept() -> None:
    layer, rng = Linear(2, 2), torch.get_rng_state()
    check_layer(layer, (3, 2))
    assert layer.weight.data.dtype == torch.float64
    assert torch.get_default_dtype() == torch.float32 and torch.is_grad_enabled()
    assert torch.equal(torch.get_rng_state(), rng)


def test_standardize_and_a_whole_network_pass() -> None:
    check_layer(lambda: Standardize([0.5, -1.0, 2.0], [1.0, 0.5, 3.0]), (4, 3))
    check_layer(lambda: minidl.build("linear(4), tanh, linear(2), sigmoid", (3,)), (4, 3))


def test_any_rank_inputs_pass() -> None:
    check_layer(Tanh, (3, 2, 4))


def test_dropout_and_batchnorm_pass_in_both_modes() -> None:
    rng = torch.get_rng_state()
    check_layer(Dropout, (6, 4), large_inputs=1e3)
    assert torch.equal(torch.get_rng_state(), rng)  # the kit reseeds only its own fork
    errors = check_layer(lambda: BatchNorm(3), (6, 3))
    assert set(errors) == {"the input", "parameter 0 ('weight')", "parameter 1 ('bias')"}
    layer = BatchNorm(3).eval()
    check_layer(layer, (6, 3))
    assert layer.training  # left in training mode, the default


def test_a_layer_net_with_modes_is_checked_in_both() -> None:
    check_layer(lambda: minidl.Sequential(Linear(3, 4), BatchNorm(4), Dropout(0.3)), (5, 3))


@pytest.mark.parametrize("loss", [MSE, CrossEntropy])
def test_builtin_losses_pass(loss: type) -> None:
    assert check_loss(loss, (6, 3), large_inputs=1e3)["prediction"] < 1e-8


def test_a_loss_that_says_class_targets_gets_class_indices() -> None:
    class IndicesOnly(CrossEntropy):
        def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
            if target.is_floating_point():
                raise ValueError("IndicesOnly takes (N,) int64 class indices only")
            return super().forward(prediction, target)

    check_loss(IndicesOnly, (6, 4))


def test_cross_entropy_passes_with_class_indices_and_with_probabilities() -> None:
    check_loss(CrossEntropy, (5, 4), target=torch.tensor([0, 3, 1, 1, 2]))
    check_loss(CrossEntropy, (5, 4), target=torch.rand(5, 4).softmax(1))


@pytest.mark.parametrize(
    ("factory", "settings"),
    [(SGD, {}), (Adam, {}), (Adam, {"betas": (0.8, 0.99), "weight_decay": 0.01}), (Momentum, {})],
)
def test_builtin_and_stateful_optimizers_pass_and_resume(factory: type, settings: dict) -> None:
    result = check_optimizer(factory, lr=0.1, resumable=True, **settings)
    assert result["final_loss"] < 1e-4 * result["initial_loss"]


def test_datasets_with_sizes_without_sizes_and_with_class_indices_pass() -> None:
    check_dataset(disc_dataset)
    check_dataset(lambda seed: disc_dataset(seed, 20, 10))

    def images(seed: int, n_train: int = 8, n_test: int = 4) -> tuple[Dataset, Dataset]:
        """(N, 1, 3, 3) images in three classes: by their mean brightness."""
        gen = torch.Generator().manual_seed(seed)
        x = [torch.rand(n, 1, 3, 3, generator=gen) for n in (n_train, n_test)]
        train, test = (Dataset(xs, (xs.mean((1, 2, 3)) * 3).long()) for xs in x)
        return train, test

    check_dataset(images)


# --- broken layers fail, each with a message that says what is wrong -------------------


class Scale:
    """y = w * x elementwise, written with no base class (so: no modes); subclasses break it."""

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


class DropsInEval(Dropout):
    def forward(self, x: Tensor) -> Tensor:
        self._scale = (torch.rand(x.shape) >= self.p).to(x.dtype) / (1 - self.p)
        return x * self._scale


class MasklessBackward(Dropout):
    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output  # forgets the mask: wrong in training mode only


class UpdatesStatsInEval(BatchNorm):
    def forward(self, x: Tensor) -> Tensor:
        self.running_mean.lerp_(x.mean(0), self.momentum)  # whatever the mode
        return super().forward(x)


class TrainReturnsNone(Scale):
    training = True

    def train(self, mode: bool = True) -> None:
        self.training = mode


class TrainIgnoresMode(Scale):
    training = True

    def train(self, mode: bool = True) -> TrainIgnoresMode:
        return self


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
            r"^WrongSign.backward's gradient for the input does not match central finite differences.*it is -1 times the expected$",
        ),
        (
            WrongParameterGradient,
            r"gradient for parameter 0 \('w'\) does not match.*it is 0.2 times the expected",
        ),
        (
            WrongShape,
            r"WrongShape.backward returned torch.float64 of shape \(3,\), expected finite float64 of shape \(5, 3\)",
        ),
        (Overwrites, r"must add into Parameter.grad: after two calls parameter 0 \('w'\)'s grad"),
        (
            Squeezes,
            r"Squeezes.forward on a batch of one returned torch.float64 of shape \(3,\), expected finite float64 of shape \(1, \.\.\.\)",
        ),
        (ModifiesInput, "ModifiesInput.forward modified an argument in place"),
        (Float32Weights, r"parameter 0 \('w'\) is torch.float32, its grad torch.float32"),
        (
            ReturnsTensorsNotParameters,
            "must return a list of minidl.Parameter, not list of {'Tensor'}",
        ),
        (NewParametersEachCall, "returns new Parameter objects at each call"),
        (NoBackward, r"NoBackward\(\) made a NoBackward lacking backward"),
        (DropsInEval, "^in eval mode, DropsInEval.forward is random$"),
        (
            MasklessBackward,
            "^in training mode, MasklessBackward.backward's gradient for the input does not match",
        ),
        (
            lambda: UpdatesStatsInEval(3),
            "^in eval mode, UpdatesStatsInEval changed its buffer 'running_mean'$",
        ),
        (TrainReturnsNone, r"TrainReturnsNone.train\(False\) must return the layer"),
        (
            TrainIgnoresMode,
            r"TrainIgnoresMode.train\(False\) must return the layer and set training=False",
        ),
    ],
)
def test_broken_layers_fail_with_a_clear_message(layer: type, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_layer(layer, (5, 3))


def test_an_eval_that_does_not_return_the_layer_fails() -> None:
    class EvalReturnsNone(Dropout):
        def eval(self) -> None:  # type: ignore[override]
            self.train(False)

    with pytest.raises(AssertionError, match=r"EvalReturnsNone.eval\(\) must return the layer"):
        check_layer(EvalReturnsNone, (5, 3))


def test_overflow_is_caught_only_when_asked() -> None:
    check_layer(OverflowingSigmoid, (4, 2))
    with pytest.raises(
        AssertionError,
        match=r"OverflowingSigmoid.backward on inputs up to 1000 returned .* with non-finite values",
    ):
        check_layer(OverflowingSigmoid, (4, 2), large_inputs=1000.0)


def test_batch_dependence_is_caught_unless_declared() -> None:
    class CentreBatch:
        def forward(self, x: Tensor) -> Tensor:
            return x - x.mean(0)

        def backward(self, grad_output: Tensor) -> Tensor:
            return grad_output - grad_output.mean(0)

        def parameters(self) -> list[Parameter]:
            return []

    with pytest.raises(
        AssertionError, match="forward on a batch of one gives .*, row 0 of a batch"
    ):
        check_layer(CentreBatch, (4, 2))
    check_layer(CentreBatch, (4, 2), batch_independent=False)


def test_input_shape_must_be_a_batch() -> None:
    with pytest.raises(ValueError, match="batch of at least 2"):
        check_layer(ReLU, (1, 3))
    with pytest.raises(ValueError, match="batch of at least 2"):
        check_loss(MSE, (1, 3))


# --- broken losses ----------------------------------------------------------------------


class HalfGradientMSE(MSE):
    def backward(self) -> Tensor:
        return super().backward() / 2  # forgets the 2


class NotReduced(MSE):
    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        self._diff = prediction - target
        return self._diff.pow(2)


class BadAccuracy(MSE):
    def accuracy(self, prediction: Tensor, target: Tensor) -> float:
        return 100.0  # a percentage, not a fraction


class ModifiesTarget(MSE):
    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        return super().forward(prediction, target.clamp_(0.2, 0.8))


class ForgetsOneHot(CrossEntropy):
    def backward(self) -> Tensor:
        assert self._softmax is not None
        return self._softmax / len(self._softmax)  # without the - one_hot(target)


class NaiveBCE:
    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        self._p, self._t = torch.sigmoid(prediction), target
        return -(target * self._p.log() + (1 - target) * (1 - self._p).log()).mean()

    def backward(self) -> Tensor:
        return (self._p - self._t) / self._p.numel()


@pytest.mark.parametrize(
    ("loss", "message"),
    [
        (
            HalfGradientMSE,
            r"^HalfGradientMSE.backward does not match.*it is 0.5 times the expected$",
        ),
        (
            NotReduced,
            r"NotReduced.forward returned torch.float64 of shape \(6, 3\), expected finite float64 of shape \(\)",
        ),
        (BadAccuracy, r"accuracy returned 100.0, expected a fraction in \[0, 1\]"),
        (ModifiesTarget, "ModifiesTarget.forward modified an argument in place"),
        (ForgetsOneHot, "^ForgetsOneHot.backward does not match central finite differences"),
    ],
)
def test_broken_losses_fail_with_a_clear_message(loss: type, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_loss(loss, (6, 3))


def test_an_unstable_loss_is_caught() -> None:
    target = torch.tensor([[0.0], [1.0], [1.0], [0.0]])
    check_loss(NaiveBCE, (4, 1), target=target)  # fine for moderate logits
    with pytest.raises(
        AssertionError, match=r"on predictions up to 1000 \(not numerically stable\)"
    ):
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
    """No base class and no state_dict; copies lr into a private field, so schedules cannot
    change it."""

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


class ForgetsVelocity(Momentum):
    def state_dict(self) -> dict:
        state = super().state_dict()
        del state["velocity"]
        return state


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (
            Ascends,
            r"one Ascends.step\(\) with lr=0.1 took the loss of a quadratic from .*not lower",
        ),
        (ZeroesWeights, r"ZeroesWeights.zero_grad\(\) must zero every gradient and no weight"),
        (ForgetsSomeGradients, r"ForgetsSomeGradients.zero_grad\(\) must zero every gradient"),
        (CachesLr, r"setting CachesLr.lr = 0.05 did not change the next step"),
        (NoLr, r"setting NoLr.lr = 0.05 did not change the next step"),
        (DoesNothing, r"one DoesNothing.step\(\) .* from (\S+) to \1, not lower"),
        (Stalls, r"Stalls does not converge: after 300 steps"),
        (ForgetsVelocity, r"ForgetsVelocity does not resume exactly: 1 step\(s\) after loading"),
    ],
)
def test_broken_optimizers_fail_with_a_clear_message(factory: type, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_optimizer(factory, lr=0.1)


def test_resuming_is_checked_when_possible_required_or_skipped_on_request() -> None:
    check_optimizer(ForgetsVelocity, lr=0.1, resumable=False)

    class PlainSGD(Stalls):
        def step(self) -> None:
            for p in self.params:
                p.data.add_(p.grad, alpha=-self.lr)

    check_optimizer(PlainSGD)  # no state_dict: nothing to resume, and not asked to
    with pytest.raises(AssertionError, match=r"PlainSGD cannot resume: it has no state_dict\(\)"):
        check_optimizer(PlainSGD, resumable=True)


def test_an_optimizer_with_the_wrong_signature_fails_naming_the_argument() -> None:
    def needs_momentum(parameters: list[Parameter], lr: float, momentum: float) -> SGD:
        return SGD(parameters, lr)

    with pytest.raises(
        TypeError, match="needs_momentum.* missing 1 required positional argument: 'momentum'"
    ):
        check_optimizer(needs_momentum)
    check_optimizer(needs_momentum, momentum=0.5)


# --- broken datasets --------------------------------------------------------------------


def _with_targets(y: Tensor) -> Dataset:
    """A dataset whose targets slipped past Dataset's own checks (it rejects float (N,))."""
    data = Dataset(torch.rand(len(y), 2), torch.zeros(len(y), 1))
    object.__setattr__(data, "y", y)
    return data


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (
            lambda seed=0, n_train=10, n_test=10: disc_dataset(
                int(torch.randint(0, 1000, ())), n_train, n_test
            ),
            "two calls with seed=0 gave different data",
        ),
        (
            lambda seed=0, n_train=10, n_test=10: disc_dataset(0, n_train, n_test),
            "seed 1 gave the same data",
        ),
        (
            lambda seed=0, n_train=10, n_test=10: disc_dataset(seed, n_train + 1, n_test),
            "train set has 41 points, asked for 40",
        ),
        (lambda seed=0: disc_dataset(seed, 5, 0), "test set has 0 points, asked for some"),
        (
            lambda seed=0: (_with_targets(torch.rand(4, dtype=torch.float32)),) * 2,
            r"train set has targets of torch.float32 and shape \(4,\); expected finite values, targets \(N, k\) floats or \(N,\) int64 class indices >= 0$",
        ),
        (
            lambda seed=0: (_with_targets(torch.arange(4, dtype=torch.int32)),) * 2,
            r"train set has targets of torch.int32 and shape \(4,\)",
        ),
        (
            lambda seed=0: (_with_targets(torch.tensor([0, -1])),) * 2,
            r"train set has targets of torch.int64 and shape \(2,\); expected .* class indices >= 0",
        ),
        (
            lambda seed=0: (Dataset(torch.full((3, 2), torch.nan), torch.zeros(3, 1)),) * 2,
            "train set has NaN or infinite values and targets of torch.float64",
        ),
        (lambda seed=0: (disc_dataset(seed, 5, 5)[0], None), "must return two minidl.Dataset"),
    ],
)
def test_broken_datasets_fail_with_a_clear_message(factory: object, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_dataset(factory)
