"""Property-based tests (hypothesis) over model specs, CLI option values and CSV contents:
whatever the input, `minidl-run` ends with exit code 0 or a documented error code, with
one line saying what was wrong, never a traceback and never the catch-all for bugs; and it
never hangs (each case runs under an alarm). The number of cases tried is shown in the
test summary.

Sizes are kept small (a few points, an epoch or two; no number of five digits where it
would size a tensor) so that the cases run in CI in seconds."""

from __future__ import annotations

import re
import signal
import string
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hardening_common import EXIT_CODES, error_line, fresh_registry, invoke  # noqa: F401

pytestmark = pytest.mark.usefixtures("fresh_registry")

SETTINGS = settings(
    deadline=None,
    database=None,  # no .hypothesis/ directory: every CI run draws afresh from its seed
    derandomize=True,  # the same cases every run: a failure here is reproducible as is
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TINY = ["--epochs", "1", "--n-train", "20", "--n-test", "10", "--batch-size", "10"]
HANG_S = 20


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
    record_property(f"hardening: fuzz {name}", f"{len(codes)} cases ({outcomes})")
    assert 0 in codes and any(codes), f"{name}: only exit codes {sorted(set(codes))}"


def _hang(signum: int, frame: FrameType | None) -> None:
    raise AssertionError(f"a case ran for more than {HANG_S} s")


def run_case(*args: str) -> int:
    """One CLI run: a documented exit code, and when it fails, one line saying why."""
    previous = signal.signal(signal.SIGALRM, _hang)
    signal.alarm(HANG_S)
    try:
        result = invoke(*args, code=None)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert result.exit_code in EXIT_CODES - {130, 143}, (args, result.exit_code, result.output)
    assert "Traceback" not in result.output
    if result.exit_code:
        error_line(result)
        assert result.stdout == "", (args, result.stdout)
    return result.exit_code


def small_numbers_only(text: str) -> bool:
    """No number of five digits or more (1e5 rows or units would take seconds or gigabytes)."""
    return re.search(r"\d{5}|\d[eE]\+?\d", text) is None


# --- model specs -----------------------------------------------------------------------

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
    st.sampled_from(["'he'", "'xavier'", "'zzz'", "None", "True", "[1, 2]", "[]", "{}", "x", "1+1",
                     "init='he'", "gain=2.0", "gain=-1", "in_features=2", "in_features=3",
                     "out_features=4", "bias=1", "**k", "*a", "lambda: 0", "'", "(", ")"]),
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
    st.lists(ITEMS, min_size=1, max_size=4).map(lambda items: " ".join(items)),  # no commas
    st.text(alphabet="linearsigmodth(),=[]'0123456789.-_ ", max_size=30),
    st.text(max_size=20),
)


@settings(SETTINGS, max_examples=300)
@given(spec=SPECS.filter(small_numbers_only))
def test_fuzz_model_specs(spec: str, counted: list[int]) -> None:
    counted.append(run_case("train", *TINY, "--model", spec))


# --- option values -----------------------------------------------------------------------

VALUES = st.one_of(
    st.sampled_from(["0", "-1", "1", "2", "0.5", "1e-3", "nan", "inf", "-inf", "1e308", "", " ",
                     "relu", "adam", "sgd", "mse", "he", "cosine", "float64", "25,25", "4,", ",",
                     "0.1,0.9", "x", "--lr", "\x00", "é"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-5, 300).map(str),
    st.text(max_size=6),
)  # fmt: skip
TRAIN_OPTIONS = ["--lr", "--epochs", "--batch-size", "--hidden", "--activation", "--optimizer",
                 "--loss", "--init", "--gain", "--beta1", "--beta2", "--eps", "--schedule",
                 "--seed", "--dtype", "--n-train", "--n-test", "--model", "--device"]  # fmt: skip
SWEEP_OPTIONS = ["--lr", "--beta1", "--beta2", "--activation", "--optimizer", "--rounds",
                 "--epochs", "--hidden", "--seed", "--eps"]  # fmt: skip
SIZED = {"--epochs", "--batch-size", "--hidden", "--n-train", "--n-test", "--rounds", "--model"}


def sized_small(pairs: list[tuple[str, str]]) -> bool:
    return all(small_numbers_only(v) for o, v in pairs if o in SIZED) and all(
        not (o in ("--epochs", "--rounds") and v.strip().isdigit() and int(v) > 5) for o, v in pairs
    )


@settings(SETTINGS, max_examples=300)
@given(
    pairs=st.lists(st.tuples(st.sampled_from(TRAIN_OPTIONS), VALUES), max_size=4).filter(
        sized_small
    ),
    standardize=st.booleans(),
)
def test_fuzz_train_options(
    pairs: list[tuple[str, str]], standardize: bool, counted: list[int]
) -> None:
    args = [*TINY, "--hidden", "4"] + (["--standardize"] if standardize else [])
    counted.append(run_case("train", *args, *[x for pair in pairs for x in pair]))


@settings(SETTINGS, max_examples=100)
@given(
    pairs=st.lists(st.tuples(st.sampled_from(SWEEP_OPTIONS), VALUES), max_size=3).filter(
        sized_small
    )
)
def test_fuzz_sweep_options(pairs: list[tuple[str, str]], counted: list[int]) -> None:
    base = [*TINY, "--hidden", "4", "--rounds", "1", "--activation", "relu", "--optimizer", "sgd"]
    counted.append(run_case("sweep", *base, *[x for pair in pairs for x in pair]))


# --- CSV contents ------------------------------------------------------------------------

CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64).map(repr),
    st.integers(-3, 3).map(str),
    st.sampled_from(["", " ", "x", "1e39", "-1e39", "0x10", "1_0", "'1'", '"2"', "nan", "1,", "é"]),
)
ROWS = st.lists(st.lists(CELLS, min_size=1, max_size=4).map(",".join), max_size=12)
CSV_TEXT = st.one_of(
    ROWS.map("\n".join),
    st.builds(lambda header, rows: header + "\n" + "\n".join(rows), st.sampled_from(["x,y,label", "a,b", "#c", ""]), ROWS),
    st.text(alphabet=string.digits + ",.-+eEnaif#\n\r\t x", max_size=120),
    st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
)  # fmt: skip


@settings(SETTINGS, max_examples=300)
@given(text=CSV_TEXT, test_file=st.booleans())
def test_fuzz_csv_contents(text: str, test_file: bool, tmp_path: Path, counted: list[int]) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    extra = ["--test-data", str(path)] if test_file else []
    counted.append(
        run_case(
            "train",
            "--data",
            str(path),
            *extra,
            "--epochs",
            "1",
            "--hidden",
            "4",
            "--batch-size",
            "4",
        )
    )
