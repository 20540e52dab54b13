"""Checks for plugin authors: call them from your plugin's own tests.

Each check builds what it tests in float64, compares hand-written gradients with central
finite differences (no autograd anywhere), and raises :class:`AssertionError` with a
message that says what failed, where, and what was expected::

    from minidl.testing import check_layer, check_loss, check_optimizer

    def test_my_layer():
        check_layer(lambda: MyLayer(3, 4), input_shape=(5, 3))

Pass a class or a zero-argument factory rather than an instance: the check then builds the
object with float64 as the default dtype. An instance is moved to float64 with its ``to``
method, or parameter by parameter.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from .data import Dataset
from .parameter import Parameter

__all__ = ["check_dataset", "check_layer", "check_loss", "check_optimizer"]

DTYPE = torch.float64


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Build things with ``dtype`` as torch's default dtype, restoring it afterwards."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def _build(obj: Any, methods: Sequence[str], what: str) -> tuple[Any, bool]:
    """(the object, whether we built it). A class is always a factory, even though it has
    the methods (unbound) as attributes."""
    is_instance = not isinstance(obj, type) and all(
        callable(getattr(obj, m, None)) for m in methods
    )
    if is_instance:
        return obj, False
    if not callable(obj):
        raise TypeError(
            f"expected a {what}, its class or a factory, got {type(obj).__name__} "
            f"(a {what} has {', '.join(methods)})"
        )
    with default_dtype(DTYPE):
        made = obj()
    missing = [m for m in methods if not callable(getattr(made, m, None))]
    if missing:
        raise AssertionError(
            f"{_name(obj)}() made a {type(made).__name__}, which is not a {what}: it lacks "
            f"{', '.join(missing)} (a {what} needs {', '.join(methods)})"
        )
    return made, True


def _name(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or type(obj).__name__


def _to_float64(layer: Any) -> None:
    move = getattr(layer, "to", None)
    if callable(move):
        move(dtype=DTYPE)
    else:
        for p in layer.parameters():
            p.to(dtype=DTYPE)


def _label(p: Parameter, i: int) -> str:
    return f"parameter {i} ({p.name!r})" if p.name else f"parameter {i}"


def _check_parameters(layer: Any, name: str, fresh: bool) -> list[Parameter]:
    params = layer.parameters()
    if not isinstance(params, (list, tuple)):
        raise AssertionError(
            f"{name}.parameters() must return a list of minidl.Parameter, "
            f"got {type(params).__name__}"
        )
    params = list(params)
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise AssertionError(
                f"{name}.parameters() item {i} is a {type(p).__name__}, not a minidl.Parameter "
                "(wrap trainable tensors as Parameter(tensor), which also holds their .grad)"
            )
    if len({id(p) for p in params}) != len(params):
        raise AssertionError(f"{name}.parameters() lists the same Parameter twice")
    again = list(layer.parameters())
    if len(again) != len(params) or any(a is not b for a, b in zip(again, params, strict=False)):
        raise AssertionError(
            f"{name}.parameters() returns different Parameter objects on each call; an "
            "optimizer keeps the ones it was given, so they must stay the same"
        )
    for i, p in enumerate(params):
        label = _label(p, i)
        if p.grad.shape != p.data.shape:
            raise AssertionError(
                f"{name} {label}: grad has shape {tuple(p.grad.shape)} but data has shape "
                f"{tuple(p.data.shape)}"
            )
        if p.grad.dtype != p.data.dtype or p.grad.device != p.data.device:
            raise AssertionError(
                f"{name} {label}: grad is {p.grad.dtype} on {p.grad.device} but data is "
                f"{p.data.dtype} on {p.data.device}"
            )
        if p.data.dtype != DTYPE:
            raise AssertionError(
                f"{name} {label} is {p.data.dtype} after building the layer in float64; "
                "parameters must follow the requested dtype (use torch's default dtype, or "
                "a dtype argument, and move them in to())"
            )
        if fresh and bool(p.grad.any()):
            raise AssertionError(
                f"{name} {label}: grad is not zero after construction; "
                "Parameter.grad starts as zeros"
            )
    return params


def _tensor(value: Any, what: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise AssertionError(f"{what} returned {type(value).__name__}, expected a torch.Tensor")
    return value


def _hint(got: Tensor, expected: Tensor) -> str:
    """A guess at the bug when ``got`` is a multiple of ``expected``."""
    norm = float((expected * expected).sum())
    if norm == 0.0:
        return ""
    factor = float((got * expected).sum()) / norm
    if abs(factor - 1.0) < 1e-6 or not torch.allclose(got, factor * expected, rtol=1e-5, atol=1e-8):
        return ""
    if abs(factor + 1.0) < 1e-6:
        return " (the sign is flipped)"
    return f" (off by a factor of {factor:.6g})"


def assert_close(
    got: Tensor, expected: Tensor, what: str, rtol: float, atol: float, reference: str
) -> float:
    """Raise an AssertionError naming ``what`` and the worst element unless close; return the
    largest absolute difference."""
    if got.shape != expected.shape:
        raise AssertionError(
            f"{what} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
        )
    if not bool(torch.isfinite(got).all()):
        index = tuple(int(i) for i in (~torch.isfinite(got)).nonzero()[0])
        raise AssertionError(f"{what} is not finite at index {index}: {float(got[index])}")
    diff = (got - expected).abs()
    excess = diff - (atol + rtol * expected.abs())
    worst = float(diff.max()) if diff.numel() else 0.0
    if diff.numel() and bool((excess > 0).any()):
        flat = int(excess.reshape(-1).argmax())
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), got.shape))
        n_bad = int((excess > 0).sum())
        raise AssertionError(
            f"{what} does not match {reference}: at index {index} got {float(got[index]):.8g}, "
            f"expected {float(expected[index]):.8g}; {n_bad} of {got.numel()} elements off, "
            f"largest difference {worst:.3g} (rtol={rtol:g}, atol={atol:g}){_hint(got, expected)}"
        )
    return worst


def _numeric_grad(f: Callable[[], float], t: Tensor, eps: float) -> Tensor:
    """Central differences of ``f()`` with respect to each element of ``t``, perturbed in
    place and restored (element by element, so any strides work)."""
    grad = torch.zeros_like(t)
    for index in itertools.product(*(range(n) for n in t.shape)):
        original = float(t[index])
        t[index] = original + eps
        plus = f()
        t[index] = original - eps
        minus = f()
        t[index] = original
        grad[index] = (plus - minus) / (2 * eps)
    return grad


def check_layer(
    layer: Any,
    input_shape: Sequence[int],
    *,
    input: Tensor | None = None,
    seed: int = 0,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-7,
    batch_independent: bool = True,
    large_inputs: float | None = None,
) -> dict[str, float]:
    """Check a layer against the Module protocol and its backward against finite differences.

    ``layer``: a layer class, a zero-argument factory (``lambda: Linear(3, 4)``) or an
    instance. ``input_shape``: a batch of at least two rows, e.g. ``(5, 3)``; ``input``
    replaces the random standard-normal input (e.g. to keep away from a kink).

    Checks, in float64: ``parameters()`` returns the same :class:`minidl.Parameter` objects
    each call, each grad of its data's shape, dtype and device, zero after construction;
    ``forward`` leaves its input alone and keeps the batch size and dtype; ``backward``
    returns the input's shape, adds into ``Parameter.grad`` in place (twice means double)
    and equals central finite differences for the input and every parameter element; a
    batch of one works and (with ``batch_independent``) matches the same row in a batch.
    With ``large_inputs``, forward and backward also stay finite for inputs that large.

    Returns the largest absolute difference found per checked gradient.
    """
    made, fresh = _build(layer, ("forward", "backward", "parameters"), "layer")
    name = type(made).__name__
    if not fresh:
        _to_float64(made)
    shape = tuple(input_shape)
    if len(shape) < 2 or shape[0] < 2:
        raise ValueError(
            f"input_shape {shape}: give a batch of at least 2 rows and the features, e.g. (5, 3)"
        )
    params = _check_parameters(made, name, fresh)
    generator = torch.Generator().manual_seed(seed)
    if input is not None:
        if tuple(input.shape) != shape:
            raise ValueError(f"input has shape {tuple(input.shape)}, input_shape says {shape}")
        x = input.detach().to(DTYPE).clone()
    else:
        x = torch.randn(shape, generator=generator, dtype=DTYPE)

    def forward(inp: Tensor, what: str = "forward") -> Tensor:
        kept = inp.clone()
        out = _tensor(made.forward(inp), f"{name}.{what}")
        if not torch.equal(inp, kept):
            raise AssertionError(
                f"{name}.forward modified its input in place; the layer before it may still "
                "need that tensor (compute into a new tensor instead)"
            )
        if out.dim() == 0 or out.shape[0] != inp.shape[0]:
            raise AssertionError(
                f"{name}.{what} on input of shape {tuple(inp.shape)} returned shape "
                f"{tuple(out.shape)}; the first dimension is the batch and must be kept"
            )
        if out.dtype != DTYPE:
            raise AssertionError(
                f"{name}.forward returned {out.dtype} for float64 input and parameters; "
                "outputs must follow the input's dtype"
            )
        return out

    def backward(grad_output: Tensor, inp: Tensor) -> Tensor:
        kept = grad_output.clone()
        grad_input = _tensor(made.backward(grad_output), f"{name}.backward")
        if not torch.equal(grad_output, kept):
            raise AssertionError(
                f"{name}.backward modified grad_output in place; return a new tensor instead"
            )
        if grad_input.shape != inp.shape:
            raise AssertionError(
                f"{name}.backward returned a gradient of shape {tuple(grad_input.shape)} for "
                f"an input of shape {tuple(inp.shape)}; backward returns the gradient with "
                "respect to forward's input, so it must have the input's shape"
            )
        if grad_input.dtype != DTYPE:
            raise AssertionError(f"{name}.backward returned {grad_input.dtype}, expected float64")
        return grad_input

    y = forward(x)
    if not bool(torch.isfinite(y).all()):
        raise AssertionError(f"{name}.forward returned non-finite values for a normal input")
    g = torch.randn(y.shape, generator=generator, dtype=DTYPE)
    grads_before = [p.grad for p in params]
    for p in params:
        p.grad.zero_()
    grad_x = backward(g, x)
    for i, p in enumerate(params):
        if p.grad is not grads_before[i] and p.grad.data_ptr() != grads_before[i].data_ptr():
            raise AssertionError(
                f"{name}.backward replaced the grad tensor of {_label(p, i)}; add into "
                "Parameter.grad in place (an optimizer may hold it as a view of one buffer)"
            )
    grad_params = [p.grad.clone() for p in params]

    # The protocol accumulates: a second backward adds the same amount again.
    forward(x)
    backward(g, x)
    for i, (p, first) in enumerate(zip(params, grad_params, strict=True)):
        if not torch.allclose(p.grad, 2 * first, rtol=1e-9, atol=1e-12):
            raise AssertionError(
                f"{name}.backward must add into Parameter.grad, not overwrite it: after two "
                f"backward calls {_label(p, i)}'s grad is not twice that of one call"
            )
        p.grad.zero_()

    def objective(inp: Tensor) -> float:
        return float((made.forward(inp) * g).sum())

    errors: dict[str, float] = {}
    reference = "central finite differences"
    x_moved = x.clone()
    numeric_x = _numeric_grad(lambda: objective(x_moved), x_moved, eps)
    errors["input"] = assert_close(
        grad_x, numeric_x, f"{name}.backward's input gradient", rtol, atol, reference
    )
    for i, (p, grad) in enumerate(zip(params, grad_params, strict=True)):
        numeric = _numeric_grad(lambda: objective(x), p.data, eps)
        label = _label(p, i)
        errors[p.name or f"parameter {i}"] = assert_close(
            grad, numeric, f"{name}.backward's gradient for {label}", rtol, atol, reference
        )

    # A batch of one: no squeeze() dropping the batch dimension, no statistics over one row.
    x1 = x[:1].clone()
    y1 = forward(x1, "forward on a batch of one")
    if not bool(torch.isfinite(y1).all()):
        raise AssertionError(f"{name}.forward on a batch of one returned non-finite values")
    grad_x1 = backward(g[:1].clone(), x1)
    if batch_independent:
        assert_close(
            y1, y[:1], f"{name}.forward on a batch of one", 1e-9, 1e-12, "row 0 of a batch"
        )
        assert_close(
            grad_x1,
            grad_x[:1],
            f"{name}.backward on a batch of one",
            1e-9,
            1e-12,
            "row 0 of a batch",
        )
    for p in params:
        p.grad.zero_()

    if large_inputs is not None:
        big = x * (large_inputs / float(x.abs().max()))
        out = forward(big)
        grad_big = backward(torch.ones_like(out), big)
        if not (bool(torch.isfinite(out).all()) and bool(torch.isfinite(grad_big).all())):
            raise AssertionError(
                f"{name} is not finite for inputs of magnitude up to {large_inputs:g}: "
                "forward or backward overflowed"
            )
        for p in params:
            p.grad.zero_()
    return errors


def check_loss(
    loss: Any,
    prediction_shape: Sequence[int],
    *,
    prediction: Tensor | None = None,
    target: Tensor | None = None,
    seed: int = 0,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    large_inputs: float | None = None,
) -> dict[str, float]:
    """Check a loss against the Loss protocol and its backward against finite differences.

    ``loss``: a class, a zero-argument factory or an instance. Predictions are standard
    normal and targets uniform in [0, 1] unless given. Checks, in float64: ``forward``
    returns a finite 0-dim tensor and leaves its arguments alone; ``backward()`` returns the
    prediction's shape and equals central finite differences; a batch of one works;
    ``accuracy``, if defined, returns a number in [0, 1]. With ``large_inputs``, forward
    and backward also stay finite for predictions that large (numerical stability).
    """
    made, _ = _build(loss, ("forward", "backward"), "loss")
    name = type(made).__name__
    shape = tuple(prediction_shape)
    if len(shape) < 2 or shape[0] < 2:
        raise ValueError(f"prediction_shape {shape}: give a batch of at least 2 rows, e.g. (6, 1)")
    generator = torch.Generator().manual_seed(seed)
    pred = (
        prediction.detach().to(DTYPE).clone()
        if prediction is not None
        else torch.randn(shape, generator=generator, dtype=DTYPE)
    )
    tgt = (
        target.detach().to(DTYPE).clone()
        if target is not None
        else torch.rand(shape, generator=generator, dtype=DTYPE)
    )

    def value(p: Tensor, t: Tensor, what: str = "forward") -> Tensor:
        kept_p, kept_t = p.clone(), t.clone()
        out = _tensor(made.forward(p, t), f"{name}.{what}")
        if not (torch.equal(p, kept_p) and torch.equal(t, kept_t)):
            raise AssertionError(f"{name}.forward modified its prediction or target in place")
        if out.dim() != 0:
            raise AssertionError(
                f"{name}.{what} returned shape {tuple(out.shape)}; a loss returns a 0-dim "
                "tensor (reduce with .mean() or .sum())"
            )
        if out.dtype != DTYPE:
            raise AssertionError(f"{name}.{what} returned {out.dtype} for float64 input")
        if not bool(torch.isfinite(out)):
            raise AssertionError(f"{name}.{what} returned {float(out)}")
        return out

    def gradient(p: Tensor, what: str = "backward") -> Tensor:
        grad = _tensor(made.backward(), f"{name}.{what}")
        if grad.shape != p.shape:
            raise AssertionError(
                f"{name}.{what} returned shape {tuple(grad.shape)} for a prediction of shape "
                f"{tuple(p.shape)}; it must return the gradient with respect to the prediction"
            )
        return grad

    value(pred, tgt)
    grad = gradient(pred)
    numeric = _numeric_grad(lambda: float(made.forward(pred, tgt)), pred, eps)
    errors = {
        "prediction": assert_close(
            grad, numeric, f"{name}.backward", rtol, atol, "central finite differences"
        )
    }

    value(pred[:1].clone(), tgt[:1].clone(), "forward on a batch of one")
    if not bool(torch.isfinite(gradient(pred[:1], "backward on a batch of one")).all()):
        raise AssertionError(f"{name}.backward on a batch of one returned non-finite values")

    score = getattr(made, "accuracy", None)
    if score is not None:
        result = score(pred, tgt)
        try:
            number = float(result)
        except (TypeError, ValueError):
            raise AssertionError(
                f"{name}.accuracy returned {type(result).__name__}, expected a number"
            ) from None
        if not 0.0 <= number <= 1.0:
            raise AssertionError(
                f"{name}.accuracy returned {number}, expected a fraction in [0, 1]"
            )

    if large_inputs is not None:
        big = pred * (large_inputs / float(pred.abs().max()))
        try:
            value(big, tgt, f"forward on predictions of magnitude {large_inputs:g}")
        except AssertionError as e:
            raise AssertionError(f"{e} (not numerically stable)") from None
        if not bool(torch.isfinite(gradient(big)).all()):
            raise AssertionError(
                f"{name}.backward is not finite for predictions of magnitude {large_inputs:g}"
            )
    return errors


def _quadratic(seed: int) -> tuple[list[Parameter], list[Tensor], list[Tensor]]:
    """Two parameters of different shapes; loss ``sum(curvature * (w - centre)**2) / 2``."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(3, 2), (4,)]
    params = [
        Parameter(torch.randn(s, generator=g, dtype=DTYPE), n)
        for s, n in zip(shapes, ("weight", "bias"), strict=True)
    ]
    centres = [torch.randn(s, generator=g, dtype=DTYPE) for s in shapes]
    curvatures = [torch.rand(s, generator=g, dtype=DTYPE) + 0.5 for s in shapes]
    return params, centres, curvatures


def check_optimizer(
    factory: Callable[..., Any],
    *,
    lr: float = 0.1,
    steps: int = 300,
    tol: float = 1e-4,
    seed: int = 0,
    **hyperparameters: Any,
) -> dict[str, float]:
    """Check an optimizer factory (``factory(parameters, lr=lr, **hyperparameters)``) on a
    small quadratic in float64.

    Checks: it keeps ``lr`` as a plain attribute and a new value changes the next step (as
    learning-rate schedules do); making it leaves the weights alone; ``zero_grad()`` zeroes
    every gradient and no weight; one ``step()`` lowers the loss; after ``steps`` steps the
    loss is below ``tol`` times its start, finite throughout, and dtypes and shapes are kept.
    """

    def make(params: list[Parameter]) -> Any:
        try:
            opt = factory(params, lr=lr, **hyperparameters)
        except TypeError as e:
            raise AssertionError(
                f"{_name(factory)}(parameters, lr={lr!r}, ...) failed: {e}; an optimizer is "
                "made as Factory(parameters, lr=..., **hyperparameters)"
            ) from None
        missing = [m for m in ("step", "zero_grad") if not callable(getattr(opt, m, None))]
        if missing:
            raise AssertionError(
                f"{type(opt).__name__} lacks {', '.join(missing)}; an optimizer needs step() "
                "and zero_grad()"
            )
        if not isinstance(getattr(opt, "lr", None), (int, float)) or opt.lr != lr:
            raise AssertionError(
                f"{type(opt).__name__} must keep the learning rate as a number attribute "
                f"lr equal to the lr it was made with ({lr!r}), got "
                f"{getattr(opt, 'lr', '(no attribute lr)')!r}; schedules set opt.lr between epochs"
            )
        return opt

    params, centres, curvatures = _quadratic(seed)
    initial = [p.data.clone() for p in params]

    def loss() -> float:
        return sum(
            0.5 * float((a * (p.data - c).pow(2)).sum())
            for p, c, a in zip(params, centres, curvatures, strict=True)
        )

    def accumulate_gradients() -> None:
        for p, c, a in zip(params, centres, curvatures, strict=True):
            p.grad.add_(a * (p.data - c))  # as a backward pass adds into .grad

    opt = make(params)
    name = type(opt).__name__
    for i, (p, w) in enumerate(zip(params, initial, strict=True)):
        if not torch.equal(p.data, w):
            raise AssertionError(f"making {name} changed the weights of {_label(p, i)}")

    for p in params:
        p.grad.fill_(1.0)
    opt.zero_grad()
    for i, (p, w) in enumerate(zip(params, initial, strict=True)):
        if not torch.equal(p.data, w):
            raise AssertionError(
                f"{name}.zero_grad() changed the weights of {_label(p, i)}; it must zero "
                "gradients only"
            )
        if bool(p.grad.any()):
            raise AssertionError(f"{name}.zero_grad() left the gradient of {_label(p, i)} nonzero")

    start = loss()
    accumulate_gradients()
    opt.step()
    after = loss()
    if all(torch.equal(p.data, w) for p, w in zip(params, initial, strict=True)):
        raise AssertionError(f"{name}.step() did not change the weights")
    if not after < start:
        raise AssertionError(
            f"one {name}.step() with lr={lr:g} raised the loss of a quadratic from {start:.6g} "
            f"to {after:.6g}; it should step against the gradient (check the update's sign)"
        )

    history = [start, after]
    for step in range(2, steps + 1):
        opt.zero_grad()
        accumulate_gradients()
        opt.step()
        history.append(loss())
        if not math.isfinite(history[-1]):
            raise AssertionError(f"{name}: the loss became {history[-1]} at step {step}")
    for i, (p, w) in enumerate(zip(params, initial, strict=True)):
        if p.data.dtype != DTYPE or p.data.shape != w.shape:
            raise AssertionError(
                f"{name}.step() changed {_label(p, i)} to {p.data.dtype} of shape "
                f"{tuple(p.data.shape)}; it was float64 of shape {tuple(w.shape)}"
            )
    if not history[-1] < tol * start:
        raise AssertionError(
            f"{name} does not converge on a quadratic: after {steps} steps with lr={lr:g} the "
            f"loss went from {start:.6g} to {history[-1]:.6g}, wanted below {tol:g} times the "
            "start"
        )

    # Schedules set opt.lr between epochs: the next step must use the new value.
    steps_taken = []
    for new_lr in (lr, lr / 2):
        fresh, _, _ = _quadratic(seed)
        params[:] = fresh
        opt = make(params)
        opt.lr = new_lr
        accumulate_gradients()
        opt.step()
        steps_taken.append(
            torch.cat([(p.data - w).reshape(-1) for p, w in zip(params, initial, strict=True)])
        )
    if torch.allclose(steps_taken[0], steps_taken[1], rtol=1e-12, atol=0.0):
        raise AssertionError(
            f"setting {name}.lr = {lr / 2:g} did not change the next step; step() must read "
            "self.lr each time, since schedules change it between epochs"
        )
    return {"initial_loss": start, "final_loss": history[-1]}


def check_dataset(
    factory: Callable[..., Any], *, n_train: int = 40, n_test: int = 30, seed: int = 0
) -> None:
    """Check a dataset factory: ``factory(seed=, n_train=, n_test=)`` returns two
    :class:`minidl.Dataset` of those sizes with the same features, finite values, the same
    data for the same seed and different data for another seed."""
    name = _name(factory)

    def make(s: int) -> tuple[Dataset, Dataset]:
        result = factory(seed=s, n_train=n_train, n_test=n_test)
        if (
            not isinstance(result, tuple)
            or len(result) != 2
            or not all(isinstance(d, Dataset) for d in result)
        ):
            raise AssertionError(
                f"{name}(seed=..., n_train=..., n_test=...) must return (train, test), two "
                f"minidl.Dataset; got {type(result).__name__}"
            )
        return result

    train, test = make(seed)
    for label, data, n in (("train", train, n_train), ("test", test, n_test)):
        if len(data) != n:
            raise AssertionError(f"{name}: {label} set has {len(data)} points, asked for {n}")
        if not (bool(torch.isfinite(data.x).all()) and bool(torch.isfinite(data.y).all())):
            raise AssertionError(f"{name}: {label} set has NaN or infinite values")
    if train.features != test.features or train.y.shape[1] != test.y.shape[1]:
        raise AssertionError(f"{name}: train and test sets have different widths")
    again, _ = make(seed)
    if not (torch.equal(again.x, train.x) and torch.equal(again.y, train.y)):
        raise AssertionError(f"{name}: two calls with seed={seed} gave different data")
    other, _ = make(seed + 1)
    if torch.equal(other.x, train.x):
        raise AssertionError(f"{name}: seed={seed} and seed={seed + 1} gave the same data")
    if torch.equal(test.x[: min(n_train, n_test)], train.x[: min(n_train, n_test)]):
        raise AssertionError(f"{name}: the test set repeats the training set")
