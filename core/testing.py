"""Checks for plugin authors' tests, run in float64 under no_grad with the caller's random state
and dtype restored after; each failure is an AssertionError saying what, where, what expected."""

import contextlib
import copy
import functools
import inspect
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from .data import Dataset
from .module import move, named_buffers
from .parameter import Parameter

__all__ = ["check_dataset", "check_layer", "check_loss", "check_optimizer"]

DTYPE = torch.float64


@contextlib.contextmanager
def _sandbox() -> Iterator[None]:
    before = torch.get_default_dtype()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.set_default_dtype(DTYPE)
        try:
            yield
        finally:
            torch.set_default_dtype(before)


def _require(ok: object, message: str) -> None:
    if not ok:
        raise AssertionError(message)


def _build(obj: Any, methods: tuple[str, ...]) -> tuple[Any, str]:
    """An instance as it is; a class (which has the methods too) or a factory called."""
    if isinstance(obj, type) or not all(callable(getattr(obj, m, None)) for m in methods):
        made = obj()
        lacks = ", ".join(m for m in methods if not callable(getattr(made, m, None)))
        _require(not lacks, f"{obj.__qualname__}() made a {type(made).__name__} lacking {lacks}")
        obj = made
    return obj, type(obj).__name__


def _call(who: str, f: Callable[..., Any], args: list[Tensor], want: tuple[int, ...]) -> Tensor:
    """``f(*args)``: its arguments kept, finite float64 of shape ``want`` (-1: any more dims)."""
    kept, out = [a.clone() for a in args], f(*args)
    _require(isinstance(out, Tensor), f"{who} returned {type(out).__name__}, not a Tensor")
    _require(all(map(torch.equal, args, kept)), f"{who} modified an argument in place")
    n, bad = len(want) - want.count(-1), not bool(out.isfinite().all())
    fits = out.shape[:n] == want[:n] and (out.dim() == n or n < len(want))
    why = f"{who} returned {out.dtype} of shape {tuple(out.shape)}{' with non-finite values' * bad}, expected finite float64 of shape {str(tuple(want)).replace('-1', '...')}"
    _require(fits and out.dtype == DTYPE and not bad, why)
    return out  # type: ignore[no-any-return]


def _fd_error(grad: Tensor, f: Callable[[], Any], t: Tensor, what: str, tol: Any) -> float:
    """The worst gap from central differences of ``f()``, ``t`` perturbed element by element."""
    numeric, eps = torch.zeros_like(t), 1e-6
    for i in itertools.product(*(range(n) for n in t.shape)):
        kept = float(t[i])
        t[i] = kept + eps
        plus = float(f())
        t[i] = kept - eps
        numeric[i] = (plus - float(f())) / (2 * eps)
        t[i] = kept
    excess = torch.nan_to_num((grad - numeric).abs() - tol[1] - tol[0] * numeric.abs(), nan=1)
    if bool((excess > 0).any()):
        i = tuple(int(j) for j in torch.unravel_index(excess.argmax(), t.shape))
        k = float((grad * numeric).sum()) / (float(numeric.square().sum()) or 1.0)
        guess = f"; it is {k:.6g} times the expected" if torch.allclose(grad, k * numeric) else ""
        why = f"{what} does not match central finite differences: at index {i} got {float(grad[i]):.8g}, expected {float(numeric[i]):.8g}; {int((excess > 0).sum())} of {t.numel()} elements off (rtol, atol = {tol}){guess}"
        raise AssertionError(why)
    return float((grad - numeric).abs().max()) if t.numel() else 0.0


def _parameters(layer: Any, name: str) -> list[Parameter]:
    move(layer, dtype=DTYPE)  # an instance; a layer built here is float64 already
    params, again = layer.parameters(), layer.parameters()
    kinds = {type(p).__name__ for p in params} - {"Parameter"}
    why = f"{name}.parameters() must return a list of minidl.Parameter, not {type(params).__name__} of {kinds}"
    _require(isinstance(params, list | tuple) and not kinds, why)
    same = len(again) == len(params) and all(map(lambda a, b: a is b, again, params))
    _require(same, f"{name}.parameters() returns new Parameter objects at each call")
    for i, p in enumerate(params):
        why = f"{name} parameter {i} ({p.name!r}) is {p.data.dtype}, its grad {p.grad.dtype}; both must follow the dtype asked for (float64)"
        _require(p.data.dtype == p.grad.dtype == DTYPE, why)
    return list(params)


class _Run:
    """A layer in one mode; each forward draws the same random numbers (dropout masks)."""

    def __init__(self, layer: Any, name: str, mode: bool | None) -> None:
        switched = mode is None or layer.train(mode) is layer and layer.training is mode
        _require(switched, f"{name}.train({mode}) must return the layer and set training={mode}")
        self.layer, self.who = layer, f"in {'training' if mode else 'eval'} mode, {name}"
        self.who = name if mode is None else self.who

    def forward(self, x: Tensor, on: str = "", seed: int = 0) -> Tensor:
        torch.default_generator.manual_seed(seed)
        return _call(f"{self.who}.forward{on}", self.layer.forward, [x], (len(x), -1))

    def backward(self, grad_output: Tensor, x: Tensor, on: str = "") -> Tensor:
        return _call(f"{self.who}.backward{on}", self.layer.backward, [grad_output], x.shape)

    def gradients(self, x: Tensor, params: list[Parameter], tol: Any) -> dict[str, float]:
        g = torch.randn(self.forward(x).shape, generator=torch.Generator().manual_seed(1))
        for p in params:
            p.grad.zero_()
        grads = [self.backward(g, x), *(p.grad.clone() for p in params)]
        self.forward(x)
        self.backward(g, x)  # twice: Parameter.grad accumulates
        for i, (p, once) in enumerate(zip(params, grads[1:], strict=True)):
            why = f"{self.who}.backward must add into Parameter.grad: after two calls parameter {i} ({p.name!r})'s grad is not twice that of one"
            _require(torch.allclose(p.grad, 2 * once, rtol=1e-9, atol=1e-12), why)
            p.grad.zero_()
        keys = ["the input", *(f"parameter {i} ({p.name!r})" for i, p in enumerate(params))]
        moved, errors = x.clone(), {}
        for key, t, grad in zip(keys, [moved, *(p.data for p in params)], grads, strict=True):
            what = f"{self.who}.backward's gradient for {key}"
            errors[key] = _fd_error(grad, lambda: (self.forward(moved) * g).sum(), t, what, tol)
        return errors

    def inference(self, x: Tensor, batch_independent: bool) -> None:
        kept, y = {key: b.clone() for key, b in named_buffers(self.layer)}, self.forward(x)
        self.backward(torch.ones_like(y), x)
        for key, b in named_buffers(self.layer):  # running statistics stay put
            _require(torch.equal(b, kept[key]), f"{self.who} changed its buffer {key!r}")
        _require(torch.equal(y, self.forward(x, seed=1)), f"{self.who}.forward is random")
        one = self.forward(x[:1].clone(), " on a batch of one")  # no squeeze() dropping it
        self.backward(torch.ones_like(one), x[:1], " on a batch of one")
        why = f"{self.who}.forward on a batch of one gives {one.tolist()}, row 0 of a batch {y[:1].tolist()}"
        _require(not batch_independent or torch.allclose(one, y[:1], 1e-9, 1e-12), why)


@_sandbox()
def check_layer(
    layer: Any,
    input_shape: Sequence[int],
    *,
    input: Tensor | None = None,
    tol: tuple[float, float] = (1e-5, 1e-7),
    batch_independent: bool = True,
    large_inputs: float | None = None,
) -> dict[str, float]:
    """Check a layer on a batch of ``input_shape`` (N >= 2) or ``input``: its parameters, modes,
    forward and backward in each mode against finite differences within ``tol`` (rtol, atol),
    and in eval mode determinism, fixed buffers and a batch of one (row 0 of a batch, if
    ``batch_independent``). ``large_inputs``: no overflow. Returns the largest gap per gradient."""
    shape = tuple(input_shape)
    if not shape or shape[0] < 2 or (input is not None and input.shape != shape):
        raise ValueError(f"input_shape {shape}: give a batch of at least 2, e.g. (5, 3), as input")
    made, name = _build(layer, ("forward", "backward", "parameters"))
    params, modal = _parameters(made, name), callable(getattr(made, "train", None))
    if callable(getattr(made, "eval", None)):
        why = f"{name}.eval() must return the layer and set training=False"
        _require(made.eval() is made and made.training is False, why)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)) if input is None else input
    x, errors = x.to(DTYPE, copy=True), dict[str, float]()
    for mode in [False, True] if modal else [None]:  # eval first: end in the default mode
        run = _Run(made, name, mode)
        if not mode:
            run.inference(x, batch_independent)
        if large_inputs is not None:
            on, big = f" on inputs up to {large_inputs:g}", x * (large_inputs / x.abs().max())
            run.backward(torch.ones_like(run.forward(big, on)), big, on)
        errors = {k: max(e, errors.get(k, 0.0)) for k, e in run.gradients(x, params, tol).items()}
    return errors


@_sandbox()
def check_loss(
    loss: Any,
    prediction_shape: Sequence[int],
    *,
    prediction: Tensor | None = None,
    target: Tensor | None = None,
    tol: tuple[float, float] = (1e-5, 1e-8),
    large_inputs: float | None = None,
) -> dict[str, float]:
    """Check a loss on predictions of ``prediction_shape`` (N >= 2, k) or ``prediction`` and
    ``target``, by default (N,) class indices if the loss has ``class_targets = True``: a 0-dim
    value, backward against finite differences, a batch of one, ``accuracy`` in [0, 1]."""
    made, name = _build(loss, ("forward", "backward"))
    shape, gen = tuple(prediction_shape), torch.Generator().manual_seed(0)
    if len(shape) < 2 or shape[0] < 2:
        raise ValueError(f"prediction_shape {shape}: give a batch of at least 2, e.g. (6, 1)")
    pred = torch.randn(shape, generator=gen) if prediction is None else prediction.to(DTYPE)
    if target is None and getattr(made, "class_targets", False) is True:
        target = torch.randint(shape[1], shape[:1], generator=gen)
    target = torch.rand(shape, generator=gen) if target is None else target
    pred, tgt = pred.clone(), target.to(DTYPE if target.is_floating_point() else None, copy=True)

    def run(p: Tensor, t: Tensor, on: str = "") -> Tensor:
        _call(f"{name}.forward{on}", made.forward, [p, t], ())
        return _call(f"{name}.backward{on}", made.backward, [], tuple(p.shape))

    gap = _fd_error(run(pred, tgt), lambda: made.forward(pred, tgt), pred, f"{name}.backward", tol)
    run(pred[:1].clone(), tgt[:1].clone(), " on a batch of one")
    got = getattr(made, "accuracy", lambda p, t: 0.0)(pred, tgt)
    why = f"{name}.accuracy returned {got!r}, expected a fraction in [0, 1]"
    _require(isinstance(got, int | float | Tensor) and 0 <= float(got) <= 1, why)
    if large_inputs is not None:
        big = pred * (large_inputs / pred.abs().max())
        run(big, tgt, f" on predictions up to {large_inputs:g} (not numerically stable)")
    return {"prediction": gap}


class _Quadratic:
    """``sum(c * (w - w0) ** 2) / 2``; ``step(opt)`` takes a training step, returns the loss."""

    def __init__(self) -> None:
        w = torch.randn(20, generator=torch.Generator().manual_seed(0))
        self.params = [Parameter(w[:6].view(3, 2).clone()), Parameter(w[6:10].clone())]
        self.centre, self.curvature = w[10:], w[10:].cos() + 1.5

    def weights(self) -> Tensor:
        return torch.cat([p.data.reshape(-1) for p in self.params])

    def step(self, opt: Any = None) -> float:
        if opt is not None:
            before = self.weights()
            opt.zero_grad()  # the last step's gradients are still there
            zeroed = not any(p.grad.any() for p in self.params)
            why = f"{type(opt).__name__}.zero_grad() must zero every gradient and no weight"
            _require(zeroed and torch.equal(before, self.weights()), why)
            grad = self.curvature * (self.weights() - self.centre)  # added as backward does
            self.params[0].grad.add_(grad[:6].view(3, 2))
            self.params[1].grad.add_(grad[6:])
            opt.step()
        return 0.5 * float((self.curvature * (self.weights() - self.centre).pow(2)).sum())


@_sandbox()
def check_optimizer(
    factory: Callable[..., Any],
    *,
    lr: float = 0.1,
    steps: int = 300,
    tol: float = 1e-4,
    resumable: bool | None = None,
    **settings: Any,
) -> dict[str, float]:
    """Check ``factory(parameters, lr=lr, **settings)`` on a quadratic: zero_grad, one step,
    a new ``lr``, ``steps`` to below ``tol`` times the start loss, and resuming from a copy of
    ``state_dict()`` bit for bit (if it has one; ``resumable`` True requires, False skips)."""
    make = functools.partial(factory, lr=lr, **settings)
    problem, slow, twin = _Quadratic(), _Quadratic(), _Quadratic()
    opt, slowed = make(problem.params), make(slow.params)
    name, slowed.lr = type(opt).__name__, lr / 2  # as a schedule sets it between epochs
    history = [problem.step(), problem.step(opt)]
    why = f"one {name}.step() with lr={lr:g} took the loss of a quadratic from {history[0]:.6g} to {history[1]:.6g}, not lower: check its sign"
    _require(history[1] < history[0], why)
    why = f"setting {name}.lr = {lr / 2:g} did not change the next step; step() must read self.lr"
    _require(slow.step(slowed) != history[1], why)
    if resumable or (resumable is None and hasattr(opt, "state_dict")):
        _require(hasattr(opt, "state_dict"), f"{name} cannot resume: it has no state_dict()")
        resumed = make(twin.params)
        resumed.load_state_dict(copy.deepcopy(opt.state_dict()))
        twin.params[0].data, twin.params[1].data = (p.data for p in problem.params)
        for step in range(1, 6):
            history.append(problem.step(opt))
            twin.step(resumed)
            why = f"{name} does not resume exactly: {step} step(s) after loading its state_dict(), a fresh one is off; it must hold all that step() uses"
            _require(torch.equal(problem.weights(), twin.weights()), why)
    history += [problem.step(opt) for _ in range(len(history), steps + 1)]
    why = f"{name} does not converge: after {steps} steps with lr={lr:g} the loss of a quadratic went from {history[0]:.6g} to {history[-1]:.6g}, not below {tol:g} times that"
    _require(history[-1] < tol * history[0], why)
    return {"initial_loss": history[0], "final_loss": history[-1]}


@_sandbox()
def check_dataset(factory: Any, *, n_train: int = 40, n_test: int = 30, seed: int = 0) -> None:
    """Check ``factory(seed=, n_train=, n_test=)`` (without sizes if it takes none): two
    Datasets of those sizes, finite, targets (N, k) floats or (N,) int64 class indices >= 0,
    reproducible for a seed, other for another."""
    name, accepted = factory.__qualname__, inspect.signature(factory).parameters
    sizes = {"n_train": n_train, "n_test": n_test}
    if not ({*sizes} <= {*accepted} or any(p.kind is p.VAR_KEYWORD for p in accepted.values())):
        sizes = {}
    make = functools.partial(factory, **sizes)
    train, test = data = make(seed=seed)
    _require(all(isinstance(d, Dataset) for d in data), f"{name} must return two minidl.Dataset")
    for label, d in (("train", train), ("test", test)):
        asked, y = sizes.get(f"n_{label}", len(d) or "some"), d.y
        _require(len(d) == asked, f"{name}: {label} set has {len(d)} points, asked for {asked}")
        classes = y.dim() == 1 and y.dtype == torch.int64 and bool((y >= 0).all())
        finite = all(bool(t.isfinite().all()) for t in (d.x, y) if t.is_floating_point())
        why = f"{name}: {label} set has {'NaN or infinite values and ' * (not finite)}targets of {y.dtype} and shape {tuple(y.shape)}; expected finite values, targets (N, k) floats or (N,) int64 class indices >= 0"
        _require(finite and (classes or (y.dim() == 2 and y.is_floating_point())), why)
    again, other = make(seed=seed)[0], make(seed=seed + 1)[0]
    same = torch.equal(again.x, train.x) and torch.equal(again.y, train.y)
    _require(same, f"{name}: two calls with seed={seed} gave different data")
    _require(not torch.equal(other.x, train.x), f"{name}: seed {seed + 1} gave the same data")
