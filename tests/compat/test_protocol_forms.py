"""The kernel's side of the plugin contract: it calls a layer's optional methods only in the
forms the Module protocol documents (``to(device=..., dtype=...)``, ``train(mode)``,
``eval()``, ``buffers()``); its errors are plain exceptions that the command line shows
as click's; an optimizer's state is what it names publicly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
import torch
from test_cli_errors import error_line, fresh_cli  # noqa: F401 (a fixture, used below)

import minidl
from minidl import FlatOptimizer, Parameter
from minidl.cli import TrainConfig, run
from minidl.module import move
from minidl.plugins import Adam
from minidl.testing import check_layer, check_optimizer

F64 = torch.float64


class Spy:
    """y = x * w + b, with every optional method of the protocol, each recording how it was
    called and refusing any form but the documented one."""

    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __init__(self, in_features: int) -> None:
        self.w = Parameter(torch.ones(in_features), "w")
        self.seen = torch.zeros(in_features)  # a buffer
        self.training = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.x = x
        if self.training:
            self.seen.add_(x.detach().abs().sum(0))
        return x * self.w.data

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        self.w.grad += (grad_output * self.x).sum(0)
        return grad_output * self.w.data

    def parameters(self) -> list[Parameter]:
        return [self.w]

    def _record(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        Spy.calls.append((name, args, kwargs))

    def buffers(self, *args: Any, **kwargs: Any) -> list[torch.Tensor]:
        self._record("buffers", args, kwargs)
        assert not args and not kwargs, (args, kwargs)
        return [self.seen]

    def train(self, *args: Any, **kwargs: Any) -> Spy:
        self._record("train", args, kwargs)
        [mode] = args
        assert isinstance(mode, bool) and not kwargs, (args, kwargs)
        self.training = mode
        return self

    def eval(self, *args: Any, **kwargs: Any) -> Spy:
        self._record("eval", args, kwargs)
        assert not args and not kwargs, (args, kwargs)
        return self.train(False)

    def to(self, *args: Any, **kwargs: Any) -> Spy:
        self._record("to", args, kwargs)
        assert not args and set(kwargs) == {"device", "dtype"}, (args, kwargs)
        device, dtype = kwargs["device"], kwargs["dtype"]
        assert device is None or isinstance(device, torch.device), device
        assert dtype is None or isinstance(dtype, torch.dtype), dtype
        self.w.to(device=device, dtype=dtype)
        self.seen = self.seen.to(device=device, dtype=dtype)
        return self


class SpyPlugin:
    @staticmethod
    def register_layers(register: Callable[[str, object], None]) -> None:
        register("spy", Spy)


@pytest.fixture
def spy(plugin: Callable[[object, str], str], monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    plugin(SpyPlugin(), "spy-plugin")
    monkeypatch.setattr(Spy, "calls", [])
    return Spy.calls


CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("args", "kwargs", "device", "dtype"),
    [
        ((F64,), {}, None, F64),
        (("cpu",), {}, CPU, None),
        (("cpu", F64), {}, CPU, F64),
        ((CPU, F64), {}, CPU, F64),
        ((torch.zeros(1, dtype=F64),), {}, CPU, F64),
        ((), {"dtype": F64}, None, F64),
        ((), {"device": "cpu", "dtype": F64}, CPU, F64),
    ],
    ids=["dtype", "device-str", "str-dtype", "device-dtype", "tensor", "kw-dtype", "kw-both"],
)
def test_a_layers_own_to_gets_keywords_whatever_form_the_model_got(
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    device: torch.device | None,
    dtype: torch.dtype | None,
    spy: list[Any],
) -> None:
    model = minidl.Sequential(Spy(2), minidl.Sequential(Spy(2)))
    assert model.to(*args, **kwargs) is model
    move(Spy(2), *args, **kwargs)
    assert spy == [("to", (), {"device": device, "dtype": dtype})] * 3
    for m in (model[0], model[1][0]):
        assert m.w.data.dtype == m.seen.dtype == (dtype or torch.float32)


def test_every_optional_method_is_called_in_its_documented_form(
    spy: list[Any], tmp_path: Path
) -> None:
    """Building, training, evaluating, predicting, saving, loading, the test kit and an
    experiment with diagnostics: each Spy method asserts its form as it is called."""
    torch.manual_seed(0)
    train, test = minidl.create("dataset", "disc", seed=0, n_train=40, n_test=20)
    model = minidl.build("linear(4), spy, linear(1), sigmoid", (2,))
    model.to(F64)
    optimizer = minidl.create("optimizer", "sgd", model.parameters(), lr=0.1)
    loss = minidl.create("loss", "mse")
    minidl.fit(model, loss, optimizer, train.to(dtype=F64), test.to(dtype=F64), epochs=1)
    minidl.evaluate(model, loss, test.to(dtype=F64))
    minidl.predict(model, test.x.to(F64))
    minidl.save_model(model, tmp_path / "model")
    loaded, _ = minidl.load_model(tmp_path / "model")
    assert torch.equal(loaded[1].seen, model[1].seen.to(loaded[1].seen.dtype))
    check_layer(lambda: Spy(3), (4, 3))
    run(TrainConfig(model="linear(4), spy, linear(1), sigmoid", epochs=1, n_train=40, n_test=20, diagnostics=True, dtype="float64"))  # fmt: skip
    assert {c[0] for c in spy} >= {"to", "train", "eval", "buffers"}


# --- errors ---------------------------------------------------------------------------------


def test_the_kernels_errors_are_not_clicks() -> None:
    for error in (minidl.MinidlError, minidl.SpecError, minidl.DivergenceError):
        assert not issubclass(error, click.ClickException), error
    e = minidl.UnknownNameError("layer", "relux", ["relu"])
    assert (e.message, str(e), e.exit_code) == (
        "unknown layer 'relux'. Available names: relu",
        "unknown layer 'relux'. Available names: relu",
        2,
    )
    assert minidl.NonFiniteError("x").exit_code == 1


class Raising:
    """A plugin's command that raises one of the kernel's errors, as a command may."""

    @staticmethod
    def register_commands(cli: click.Group) -> None:
        @cli.command("raise")
        @click.argument("kind")
        def raise_(kind: str) -> None:
            raise getattr(minidl, kind)(f"a {kind} from a plugin's command")


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("MinidlError", 2),
        ("SpecError", 2),
        ("DataError", 2),
        ("PluginError", 2),
        ("ModelFileError", 2),
        ("NonFiniteError", 1),
    ],
)
def test_a_kernel_error_in_a_command_is_one_error_line_with_its_exit_code(
    kind: str,
    code: int,
    invoke,  # type: ignore[no-untyped-def]
    plugin: Callable[[object, str], str],
    request: pytest.FixtureRequest,
) -> None:
    request.getfixturevalue("fresh_cli")
    plugin(Raising(), "raising")
    result = invoke("raise", kind, code=code)
    assert error_line(result) == f"Error: a {kind} from a plugin's command"


# --- optimizer state ------------------------------------------------------------------------


class WithScratch(FlatOptimizer):
    """Momentum with scratch: a buffer reused every step and a cached constant."""

    def __init__(self, parameters: Any, lr: float, momentum: float = 0.9) -> None:
        super().__init__(parameters, lr)
        self.momentum = momentum
        self.velocity = torch.zeros_like(self.data)
        self._update = torch.zeros_like(self.data)  # (empty_like may hold NaN: never equal)
        self._calls = 0

    def step(self) -> None:
        self._calls += 1
        self.velocity.mul_(self.momentum).add_(self.grad)
        torch.mul(self.velocity, self.lr, out=self._update)
        self.data.sub_(self._update)


def test_state_is_what_an_optimizer_names_publicly() -> None:
    params = [Parameter(torch.randn(3)), Parameter(torch.randn(2, 2))]
    assert sorted(Adam(params, lr=0.1).state_dict()) == [
        "beta1", "beta2", "eps", "lr", "m", "steps", "v", "weight_decay"
    ]  # fmt: skip
    mine = WithScratch(params, lr=0.1)
    assert sorted(mine.state_dict()) == ["lr", "momentum", "velocity"]
    # The scratch is not needed to resume: a fresh one loaded from the state steps alike.
    check_optimizer(WithScratch, lr=0.05, resumable=True)
    check_optimizer(Adam, lr=0.05, resumable=True)


def test_underscore_keys_are_ignored_on_load_and_public_ones_required() -> None:
    mine = WithScratch([Parameter(torch.zeros(3))], lr=0.1)
    scratch, state = mine._update, mine.state_dict()
    before = scratch.clone()
    mine.load_state_dict({**state, "_update": torch.full((3,), 7.0), "_calls": 5})
    assert mine._update is scratch and torch.equal(scratch, before) and mine._calls == 0
    del state["velocity"]
    with pytest.raises(KeyError, match="WithScratch state lacks velocity"):
        mine.load_state_dict(state)
