"""Bad input as `minidl-run` users meet it: exit code 2 and one "Error:" line naming what was
wrong and what would be valid (click may put its usage line and a hint above it), never a
traceback; a run that fails while it runs (divergence, an overflow) exits 1 and writes
nothing; hypothesis fuzzes model specs, option values and CSV contents.

``error_line`` and ``fresh_cli`` are shared with the other CLI test files."""

from __future__ import annotations

import re
import signal
import string
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest
from click.testing import Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minidl
from minidl import registry
from minidl.cli import TrainConfig, cli, run
from minidl.registry import PLUGINS_ENV

FAST = ["--epochs", "2", "--n-train", "100", "--n-test", "50"]
#: the exit codes minidl-run documents (minidl.cli.app)
EXIT_CODES = {0, 1, 2, 130, 143}


#: a progress line of a run off a terminal (minidl.cli.output.Progress)
PROGRESS = re.compile(r"^epoch +\d+/\d+  ")


def progress_epochs(stderr: str) -> list[int]:
    """The epochs of the progress lines a run printed off a terminal, which must be all
    it printed on stderr."""
    lines = stderr.splitlines()
    assert all(PROGRESS.match(line) for line in lines), stderr
    return [int(line.split()[1].split("/")[0]) for line in lines]


def error_line(result: Result, *fragments: str) -> str:
    """The one "Error:" line of a failed run, last on stderr; above it only click's usage
    line and hint; no traceback, and never the catch-all for bugs. Each fragment is in it;
    a fragment "Available names: a, b" means these names are among those listed (installed
    plugins may add more)."""
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Warning: ")]
    lines = [line for line in lines if not PROGRESS.match(line)]
    assert lines and lines[-1].startswith("Error: "), result.stderr
    assert all(line.startswith(("Usage: ", "Try ")) for line in lines[:-1]), result.stderr
    line = lines[-1]
    assert "(set MINIDL_TRACEBACK=1" not in line, line  # an anticipated error never reads so
    for fragment in fragments:
        if fragment.startswith("Available names: "):
            assert "Available names: " in line, line
            listed = set(line.split("Available names: ", 1)[1].split(", "))
            assert set(fragment.removeprefix("Available names: ").split(", ")) <= listed, line
        else:
            assert fragment in line, (fragment, line)
    return line


@pytest.fixture
def fresh_cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts as a new minidl-run process does (no plugin loaded yet, every
    installed one selected) and leaves the registry, the commands and the modules of
    one-file plugins as it found them."""
    monkeypatch.delenv(PLUGINS_ENV, raising=False)
    commands, owners, hooked = dict(cli.commands), dict(cli._owners), set(cli._hooked)
    modules = set(sys.modules)
    registry.reset()
    cli.commands.clear()  # as built, before any plugin added a command
    cli._owners.clear()
    cli._hooked.clear()
    try:
        yield
    finally:
        registry.reset()
        cli.commands.clear()
        cli.commands.update(commands)
        cli._owners.clear()
        cli._owners.update(owners)
        cli._hooked.clear()
        cli._hooked.update(hooked)
        for name in set(sys.modules) - modules:
            if name.startswith("minidl_plugin_"):
                del sys.modules[name]


# --- options ------------------------------------------------------------------------------

BUILTIN = {
    "activation": "Available names: relu, sigmoid, tanh",
    "layer": "Available names: linear, relu, sigmoid, standardize, tanh",
    "optimizer": "Available names: adam, adamw, sgd",
    "loss": "Available names: cross_entropy, mse",
    "initializer": "Available names: default, he, he_normal, xavier, xavier_normal",
    "dataset": "Available names: disc",
    "schedule": "Available names: constant, cosine, step",
}

USAGE = [
    (["--activation", "nope"], ["Invalid value for '--activation'", "unknown activation 'nope'", BUILTIN["activation"]]),
    (["--activation", "linear"], ["'--activation'", "layer 'linear' needs arguments, so it cannot be an activation", BUILTIN["activation"]]),
    (["--optimizer", "rmsprop"], ["Invalid value for '--optimizer'", "unknown optimizer 'rmsprop'", BUILTIN["optimizer"]]),
    (["--loss", "l1"], ["Invalid value for '--loss'", "unknown loss 'l1'", BUILTIN["loss"]]),
    (["--init", "zeros"], ["Invalid value for '--init'", "unknown initializer 'zeros'", BUILTIN["initializer"]]),
    (["--dataset", "spirals"], ["Invalid value for '--dataset'", "unknown dataset 'spirals'", BUILTIN["dataset"]]),
    (["--schedule", "nope"], ["Invalid value for '--schedule'", "unknown schedule 'nope'", BUILTIN["schedule"]]),
    # a setting a factory does not take: the factory, the keyword, the ones it takes
    (["--optimizer", "adam(bogus=1)"], ["'--optimizer'", "optimizer 'adam' has no setting 'bogus'; its settings: betas, eps, weight_decay"]),
    (["--schedule", "step(foo=0)"], ["'--schedule'", "schedule 'step' has no setting 'foo'; its settings: step_size, gamma"]),
    (["--dataset", "disc(radius=2)"], ["'--dataset'", "dataset 'disc' has no setting 'radius'; its settings: n_train, n_test"]),
    (["--loss", "mse(x=1)"], ["'--loss'", "loss 'mse' has no setting 'x'; its settings: (none)"]),
    (["--init", "he(slope=1)"], ["'--init'", "initializer 'he' has no setting 'slope'; its settings: gain"]),
    (["--model", "linear(25, biass=3), relu, linear(1)"], ["model spec item 1", "layer 'linear' has no setting 'biass'; its settings: out_features, bias, init, gain"]),
    # a setting's value that its factory refuses
    (["--optimizer", "adam(betas=(2, 0.9))"], ["cannot make optimizer adam(betas=(2, 0.9))", "beta1 must be in [0, 1), got 2"]),
    (["--schedule", "step(step_size=0)"], ["cannot make schedule step(step_size=0)", "step_size must be at least 1, got 0"]),
    (["--init", "he(gain=-1)"], ["initializer he(gain=-1)", "gain must be a number in [0, "]),
    (["--optimizer", "adam("], ["'--optimizer'", "optimizer spec: invalid syntax: '(' was never closed at column 6"]),
    (["--optimizer", "adam, sgd"], ["'--optimizer'", "optimizer spec 'adam, sgd' names 2 optimizers; give one"]),
    # the Adam shorthands on an optimizer without those settings
    (["--optimizer", "sgd", "--beta1", "0.5"], ["optimizer 'sgd' takes no beta1/beta2"]),
    (["--optimizer", "sgd", "--beta2", "0.5"], ["optimizer 'sgd' takes no beta1/beta2"]),
    (["--optimizer", "sgd", "--eps", "1e-6"], ["optimizer 'sgd' takes no eps"]),
    # ranges
    (["--lr", "0"], ["Invalid value for '--lr'", "'0' is not a finite number > 0"]),
    (["--lr", "-1"], ["Invalid value for '--lr'", "'-1' is not a finite number > 0"]),
    (["--lr", "nan"], ["'--lr'", "'nan' is not a finite number > 0"]),
    (["--lr", "inf"], ["'--lr'", "'inf' is not a finite number > 0"]),
    (["--lr", "1e300"], ["lr must be at most 3.40282e+38 for float32 parameters, got 1e+300"]),  # found by fuzzing
    (["--lr", "1e38"], ["lr must be at most 3.40282e+37 for adam with beta1=0.9 on float32 parameters"]),  # found by fuzzing
    (["--epochs", "0"], ["Invalid value for '--epochs'", "0 is not in the range x>=1"]),
    (["--epochs", "two"], ["'--epochs'", "'two' is not a valid integer"]),
    (["--batch-size", "0"], ["'--batch-size'", "0 is not in the range x>=1"]),
    (["--n-train", "0"], ["'--n-train'", "0 is not in the range x>=1"]),
    (["--n-test", "-3"], ["'--n-test'", "-3 is not in the range x>=1"]),
    (["--nproc", "0"], ["'--nproc'", "0 is not in the range x>=1"]),
    (["--beta1", "1"], ["'--beta1'", "1.0 is not in the range 0<=x<1"]),
    (["--beta1", "-0.1"], ["'--beta1'", "0<=x<1"]),
    (["--beta2", "1.5"], ["'--beta2'", "0<=x<1"]),
    (["--beta2", "nan"], ["beta2 must be in [0, 1), got nan"]),
    (["--eps", "-1"], ["'--eps'", "x>=0"]),
    (["--eps", "inf"], ["eps must be >= 0, got inf"]),
    (["--gain", "0"], ["'--gain'", "'0' is not a finite number > 0"]),
    (["--gain", "nan"], ["'--gain'", "'nan' is not a finite number > 0"]),
    (["--gain", "1e300"], ["gain must be a number in [0, 8.50706e+37], got 1e+300"]),
    (["--seed", "-1"], ["'--seed'", "0<=x<=9223372036854775807"]),
    (["--seed", str(2**70)], ["'--seed'", "0<=x<=9223372036854775807"]),
    (["--hidden", "25,x"], ["'--hidden'", "'25,x' is not a comma-separated list of positive widths"]),
    (["--hidden", "25,0"], ["'--hidden'", "positive widths (example: 25,25,25)"]),
    (["--dtype", "float16"], ["'--dtype'", "'float16' is not one of 'float32', 'float64'"]),
    (["--device", "banana"], ["'--device'", "'banana' is not a device; examples: cpu, cuda"]),
    # options that exclude or need each other
    (["--data", "a.csv", "--dataset", "disc"], ["--dataset and --data exclude each other"]),
    (["--test-data", "a.csv"], ["--test-data needs --data"]),
    (["--nope"], ["No such option '--nope'"]),
    (["--resume"], ["--resume needs --out DIR"]),
]  # fmt: skip


@pytest.mark.parametrize(("args", "fragments"), USAGE, ids=lambda v: " ".join(v)[:40])
def test_bad_train_options_exit_2_naming_what_is_valid(
    args: list[str], fragments: list[str], invoke
) -> None:  # type: ignore[no-untyped-def]
    result = invoke("train", *FAST, *args, code=2)
    error_line(result, *fragments)
    assert result.stdout == ""


MODEL_SPECS = [
    ("linear(25) relu", ["a comma is missing before 'relu' at column 12"]),
    ("linear(25 3), relu", ["a comma is missing before '3' at column 11"]),
    ("linear(25),, relu", ["invalid syntax at column 12"]),
    ("linear(25, relu", ["'(' was never closed"]),
    ("linear(25)), relu", ["unmatched ')' at column 11"]),
    ("linear(init=x), relu", ["quote strings: 'x' at column 13"]),
    ("linear(x), relu", ["model spec item 1 (linear) > item 1: unknown layer 'x'", "(a name inside a call is a layer; quote a string: 'x')"]),
    ("relu, 3", ["expected a name or name(arguments) at column 7"]),
    ("linear(**{}), relu", ["'**' is not allowed"]),
    ("", ["model spec is empty; give registered names"]),
    ("relu]+[linear(1)", ["invalid syntax: unmatched ']' at column 5"]),  # found by fuzzing
    ("linear(25), relux", ["'--model'", "model spec item 2: unknown layer 'relux'", BUILTIN["layer"]]),
    ("linear()", ["model spec item 1: cannot make layer linear(2)", "missing 1 required positional argument: 'out_features'"]),
    ("linear(-3)", ["model spec item 1: cannot make layer linear(2, -3)", "out_features must be a positive integer, got -3"]),
    ("linear(4), relu(3), linear(1)", ["model spec item 2: cannot make layer relu(3)", "ReLU() takes no arguments"]),
    ("linear(4, init='glorot')", ["unknown initializer 'glorot'", BUILTIN["initializer"]]),
    ("linear(4, gain=-1), relu, linear(1)", ["cannot make initializer default", "gain must be a number in [0, "]),
    ("standardize([1], [0])", ["every standard deviation must be positive"]),
    ("linear(99999999999)", ["model spec item 1: cannot make layer linear(2, 99999999999)", "allocate"]),
    ("linear(in_features=3, out_features=8), relu, linear(1)", ["model spec item 1 (linear) cannot take an input of shape (2,)"]),
    ("linear(8), relu, linear(3), sigmoid", ["cannot compare the model's output of shape (100, 3) with targets of shape (100, 1)"]),
    ("relu", ["no parameters to optimize"]),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "fragments"), MODEL_SPECS, ids=[s for s, _ in MODEL_SPECS])
def test_bad_model_specs_exit_2_pointing_at_the_item(
    spec: str, fragments: list[str], invoke
) -> None:  # type: ignore[no-untyped-def]
    result = invoke("train", *FAST, "--model", spec, code=2)
    error_line(result, *fragments)
    assert result.stdout == ""


def test_unknown_command_suggests_the_close_one(invoke) -> None:  # type: ignore[no-untyped-def]
    error_line(invoke("trian", code=2), "No such command 'trian'", "Did you mean 'train'?")


def test_a_config_file_is_checked_like_the_command_line(tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "run.toml"
    cases = {
        "lr = -1\n": ["Invalid value for '--lr'", "not a finite number > 0"],
        'optimizer = "adam(epz=1e-6)"\n': [
            "'--optimizer'",
            "has no setting 'epz'; its settings: betas, eps",
        ],
        "epochs = \n": ["Invalid value for '--config'", f"{config}: not valid TOML", "line 1"],
        "learning_rate = 0.1\n": ["'--config'", "unknown option 'learning_rate'; available: "],
        "epohcs = 3\n": ["'--config'", "unknown option 'epohcs'; did you mean 'epochs'?"],
    }
    for text, fragments in cases.items():
        config.write_text(text)
        error_line(invoke("train", *FAST, "--config", str(config), code=2), *fragments)
    error_line(
        invoke("train", "--config", str(tmp_path / "none.toml"), code=2),
        "'--config'", f"{tmp_path / 'none.toml'}: no such file",
    )  # fmt: skip


# --- data files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("x,y,label\n0.1,0.2,1\n0.3,oops,0\n", ["line 3: cell 'oops' (column 2) is not a number"]),
        ("0.1,0.2,1\n0.3,0.4\n", ["line 2: 2 columns, expected 3 (as the first row)"]),
        ("", ["the file is empty"]),
        ("x,y,label\n# nothing\n", ["no data rows, only a header"]),
        ("0.1,0.2,1\n0.1,nan,0\n", ["line 2: NaN or infinite value"]),
        ("0.1,0.2,1\n0.1,1e39,0\n", ["line 2: a value too large for float32"]),
        ("0.5\n0.25\n", ["1 column(s); need at least one feature column"]),
    ],
)
def test_bad_csv_files_name_the_file_and_line(
    tmp_path: Path,
    invoke,
    text: str,
    fragments: list[str],  # type: ignore[no-untyped-def]
) -> None:
    path = tmp_path / "data.csv"
    path.write_text(text)
    result = invoke("train", "--data", str(path), "--epochs", "1", code=2)
    error_line(result, str(path), *fragments)
    assert result.stdout == ""


def test_class_labels_the_model_cannot_output(tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("0.1,0.0,0\n0.2,0.0,0\n0.3,0.1,1\n0.0,0.5,0\n")
    test.write_text("0.1,0.0,0\n0.2,0.0,5\n")
    args = ["--data", str(train), "--loss", "cross_entropy", "--epochs", "1"]
    result = invoke(
        "train", *args, "--test-data", str(test), "--model", "linear(4), relu, linear(2)", code=2
    )
    error_line(result, "cross_entropy: class index 5 is out of range for 2 logits (classes 0 to 1)")
    result = invoke("train", *args, "--model", "linear(4), relu, linear(1)", code=2)
    error_line(
        result,
        "cross_entropy needs one logit per class, at least 2",
        "end the model with linear(K)",
    )


def test_missing_and_binary_data_files(tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "missing.csv"
    error_line(invoke("train", "--data", str(missing), code=2), f"{missing}: no such file")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    error_line(invoke("train", "--data", str(binary), code=2), f"{binary}: not a UTF-8 text file")


# --- failures while running: exit 1, nothing written -------------------------------------

DIVERGING = ["--model", "linear(25), relu, linear(1)", "--optimizer", "sgd", "--lr", "100"]
SMALL = ["--epochs", "5", "--n-train", "500", "--n-test", "50"]


def test_divergence_exits_1_naming_epoch_and_step_and_writes_nothing(
    tmp_path: Path, invoke
) -> None:  # type: ignore[no-untyped-def]
    # The reference: where the loss first stops being finite, by the library's own check.
    config = TrainConfig(
        model="linear(25), relu, linear(1)",
        optimizer="sgd",
        lr=100,
        epochs=5,
        n_train=500,
        n_test=50,
    )
    with pytest.raises(minidl.DivergenceError) as info:
        run(config)
    epoch, step = info.value.epoch, info.value.step
    assert epoch > 1  # so a checkpoint was written before it: it must go too

    out = tmp_path / "out"
    result = invoke("train", *SMALL, *DIVERGING, "--json", "--out", str(out), code=1)
    error_line(
        result, f"training diverged: the loss became NaN or infinite at epoch {epoch}, step {step}",
        "(lr=100)", "try a lower learning rate",
    )  # fmt: skip
    assert result.stdout == ""  # no JSON document with NaN or null numbers
    assert not out.exists()  # the directory it made for the run is gone too


def test_a_test_loss_that_overflows_is_a_failure_not_a_result(tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    train = tmp_path / "train.csv"
    train.write_text("".join(f"{i / 20},{(i * 3 % 20) / 20},{i % 2}\n" for i in range(20)))
    test = tmp_path / "test.csv"
    test.write_text("".join(f"{1e30 * (i + 1)},0.5,{i % 2}\n" for i in range(5)))
    result = invoke(
        "train", "--data", str(train), "--test-data", str(test), "--model", "linear(1)",
        "--epochs", "1", "--out", str(tmp_path / "out"), code=1,
    )  # fmt: skip
    error_line(result, "the test loss is inf after epoch 1", "overflow on the test inputs")
    assert result.stdout == ""
    assert not (tmp_path / "out").exists()  # a failed run leaves nothing behind


# --- plugins that misbehave: the layer is named ----------------------------------------

MISBEHAVING = textwrap.dedent(
    '''
    import torch
    import minidl

    class Narrow(minidl.ModuleBase):
        """Correct forward, but backward returns the gradient of a single column."""

        def forward(self, x):
            return x * 2

        def backward(self, grad):
            return grad[:, :1] * 2

    class Fragile(minidl.ModuleBase):
        def forward(self, x):
            raise RuntimeError("fragile layer broke")

        def backward(self, grad):
            return grad

    @minidl.hookimpl
    def register_layers(register):
        register("narrow", Narrow)
        register("fragile", Fragile)
    '''
)


@pytest.mark.usefixtures("fresh_cli")
def test_a_layer_whose_backward_or_forward_fails_is_named(tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "misbehaving.py"
    path.write_text(MISBEHAVING)
    result = invoke(
        "-p", str(path), "train", *FAST, "--model", "linear(8), narrow, linear(1), sigmoid", code=2
    )
    line = error_line(result, "layer 2 (narrow): backward returned a gradient of shape (100, 1)")
    assert "(100, 8)" in line and "mat1" not in line  # not deep inside a matrix product
    # The first call of a forward is the model spec's probe, before any training.
    result = invoke(
        "-p", str(path), "train", *FAST, "--model", "linear(8), fragile, linear(1)", code=2
    )
    error_line(
        result,
        "model spec item 2 (fragile) cannot take an input of shape (8,)",
        "fragile layer broke",
    )


# --- every documented exit code --------------------------------------------------------


@pytest.mark.usefixtures("fresh_cli")
def test_each_documented_exit_code_is_reached(invoke, plugin) -> None:  # type: ignore[no-untyped-def]
    from minidl.cli.signals import Interrupted

    class Stop(minidl.ModuleBase):
        """The identity; its third forward call is interrupted by a signal."""

        signum = signal.SIGINT

        def __init__(self) -> None:
            self.calls = 0

        def forward(self, x):  # type: ignore[no-untyped-def]
            self.calls += 1
            if self.calls == 3:  # the probe, then the first step: inside the training loop
                raise Interrupted(Stop.signum)
            return x

        def backward(self, grad):  # type: ignore[no-untyped-def]
            return grad

    class Plugin:
        @staticmethod
        def register_layers(register: Callable[[str, object], None]) -> None:
            register("stop", Stop)

    plugin(Plugin())
    reached = {
        invoke("train", *FAST).exit_code,
        invoke("train", *SMALL, *DIVERGING, code=1).exit_code,
        invoke("train", "--lr", "0", code=2).exit_code,
    }
    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        Stop.signum = signum
        result = invoke("train", *FAST, "--model", "stop, linear(1), sigmoid", code=code)
        name = "Ctrl-C (SIGINT)" if signum == signal.SIGINT else "SIGTERM"
        assert error_line(result) == f"Error: interrupted by {name}"  # no --out: no hint
        reached.add(result.exit_code)
    assert reached == EXIT_CODES


# --- fuzzing --------------------------------------------------------------------------------

SETTINGS = settings(
    deadline=None,
    database=None,  # no .hypothesis/ directory
    derandomize=True,  # the same cases every run: a failure here is reproducible as is
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TINY = ["--epochs", "1", "--n-train", "20", "--n-test", "10", "--batch-size", "10"]
HANG_S = 120  # a failure bound for a hang, not a speed limit: the machine is shared


@pytest.fixture
def counted(
    request: pytest.FixtureRequest, record_property: Callable[[str, object], None]
) -> Iterator[list[int]]:
    """The exit codes of the cases a fuzz test ran: shown in the summary, and checked to
    hold successes and failures both (a fuzz whose every case fails, or passes, at the
    first check tests little)."""
    codes: list[int] = []
    yield codes
    outcomes = ", ".join(f"exit {c}: {codes.count(c)}" for c in sorted(set(codes)))
    name = request.node.name.removeprefix("test_fuzz_").replace("_", " ")
    record_property(f"measured: fuzz {name}", f"{len(codes)} cases ({outcomes})")
    assert 0 in codes and 2 in codes, f"{name}: only exit codes {sorted(set(codes))}"


def _hang(signum: int, frame: FrameType | None) -> None:
    raise AssertionError(f"a case ran for more than {HANG_S} s")


def run_case(invoke: Callable[..., Result], *args: str) -> int:
    """One CLI run: a documented exit code, and when it fails, one line saying why."""
    previous = signal.signal(signal.SIGALRM, _hang)
    signal.alarm(HANG_S)
    try:
        result = invoke(*args, code=None)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert result.exit_code in EXIT_CODES - {130, 143}, (args, result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args,
        result.exception,
    )
    if result.exit_code:
        error_line(result)
        assert result.stdout == "", (args, result.stdout)
    return result.exit_code


def small_numbers_only(text: str) -> bool:
    """No number of five digits or more (1e5 rows or units would take seconds or gigabytes)."""
    return re.search(r"\d{5}|\d[eE]\+?\d", text) is None


NAMES = [
    "linear",
    "relu",
    "sigmoid",
    "tanh",
    "standardize",
    "Linear",
    "RELU",
    "nope",
    "_x",
    "lin ear",
]
ARGUMENTS = st.one_of(
    st.integers(-3, 40).map(str),
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
    st.sampled_from(["'he'", "'xavier'", "'zzz'", "'he(gain=2.0)'", "None", "True", "[1, 2]", "[]",
                     "{}", "x", "1+1", "init='he'", "gain=2.0", "gain=-1", "in_features=2",
                     "in_features=3", "out_features=4", "bias=1", "bias=False", "**k", "*a",
                     "lambda: 0", "'", "(", ")"]),
)  # fmt: skip
ITEMS = st.builds(
    lambda name, args, call: f"{name}({', '.join(args)})" if call else name,
    st.sampled_from(NAMES),
    st.lists(ARGUMENTS, max_size=3),
    st.booleans(),
)
ENDINGS = st.sampled_from([[], ["linear(1)"], ["linear(1)", "sigmoid"], ["linear(2)"]])
SPECS = st.one_of(
    st.builds(lambda items, end: ", ".join(items + end), st.lists(ITEMS, max_size=4), ENDINGS),
    st.lists(ITEMS, min_size=1, max_size=4).map(" ".join),  # no commas
    st.text(alphabet="linearsigmodth(),=[]'0123456789.-_ ", max_size=30),
    st.text(max_size=20),
)


@pytest.mark.usefixtures("fresh_cli")
@pytest.mark.filterwarnings("ignore::SyntaxWarning")  # Python's own, on specs such as 1e
@settings(SETTINGS, max_examples=120)
@given(spec=SPECS.filter(small_numbers_only))
def test_fuzz_model_specs(spec: str, counted: list[int], invoke) -> None:  # type: ignore[no-untyped-def]
    counted.append(run_case(invoke, "train", *TINY, "--model", spec))


VALUES = st.one_of(
    st.sampled_from(["0", "-1", "1", "2", "0.5", "1e-3", "nan", "inf", "-inf", "1e308", "", " ",
                     "relu", "adam", "sgd", "mse", "he", "cosine", "float64", "25,25", "4,", ",",
                     "0.1,0.9", "x", "--lr", "\x00", "é", "adam(eps=1e-6)", "step(step_size=1)",
                     "sgd(lr=1)", "adam(betas=(0.5, 2))", "xavier(gain=0.5)", "disc(n_train=30)",
                     "cross_entropy", "mse(", "cosine(min_lr=-1)"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-5, 300).map(str),
    st.text(max_size=6),
)  # fmt: skip
TRAIN_OPTIONS = ["--lr", "--epochs", "--batch-size", "--hidden", "--activation", "--optimizer",
                 "--loss", "--init", "--gain", "--beta1", "--beta2", "--eps", "--schedule",
                 "--seed", "--dtype", "--n-train", "--n-test", "--model", "--device",
                 "--dataset"]  # fmt: skip
SIZED = {"--epochs", "--batch-size", "--hidden", "--n-train", "--n-test", "--model", "--dataset"}


def sized_small(pairs: list[tuple[str, str]]) -> bool:
    return all(small_numbers_only(v) for o, v in pairs if o in SIZED) and all(
        not (o == "--epochs" and v.strip().isdigit() and int(v) > 5) for o, v in pairs
    )


@pytest.mark.usefixtures("fresh_cli")
@settings(SETTINGS, max_examples=150)
@given(
    pairs=st.lists(st.tuples(st.sampled_from(TRAIN_OPTIONS), VALUES), max_size=4).filter(
        sized_small
    ),
    standardize=st.booleans(),
)
def test_fuzz_train_options(
    pairs: list[tuple[str, str]], standardize: bool, counted: list[int], invoke
) -> None:  # type: ignore[no-untyped-def]
    args = [*TINY, "--hidden", "4"] + (["--standardize"] if standardize else [])
    counted.append(run_case(invoke, "train", *args, *[x for pair in pairs for x in pair]))


CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64).map(repr),
    st.integers(-3, 3).map(str),
    st.sampled_from(["", " ", "x", "1e39", "-1e39", "0x10", "1_0", "'1'", '"2"', "nan", "1,", "é"]),
)
ROWS = st.lists(st.lists(CELLS, min_size=1, max_size=4).map(",".join), max_size=12)
NUMBER = st.floats(-10, 10, allow_nan=False).map(repr) | st.integers(-3, 3).map(str)
WELL_FORMED = st.integers(2, 4).flatmap(  # rows of one width, the last cell a label
    lambda width: st.lists(
        st.tuples(st.lists(NUMBER, min_size=width - 1, max_size=width - 1), st.integers(0, 3)).map(
            lambda row: ",".join([*row[0], str(row[1])])
        ),
        min_size=1,
        max_size=12,
    )
)
CSV_TEXT = st.one_of(
    WELL_FORMED.map("\n".join),
    ROWS.map("\n".join),
    st.builds(lambda header, rows: header + "\n" + "\n".join(rows), st.sampled_from(["x,y,label", "a,b", "#c", ""]), ROWS),
    st.text(alphabet=string.digits + ",.-+eEnaif#\n\r\t x", max_size=120),
    st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
)  # fmt: skip


@pytest.mark.usefixtures("fresh_cli")
@settings(SETTINGS, max_examples=150)
@given(text=CSV_TEXT, test_file=st.booleans(), loss=st.sampled_from(["mse", "cross_entropy"]))
def test_fuzz_csv_contents(
    text: str, test_file: bool, loss: str, tmp_path: Path, counted: list[int], invoke
) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "data.csv"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    extra = ["--test-data", str(path)] if test_file else []
    args = [
        "--data",
        str(path),
        *extra,
        "--loss",
        loss,
        "--epochs",
        "1",
        "--hidden",
        "4",
        "--batch-size",
        "4",
    ]
    counted.append(run_case(invoke, "train", *args))
