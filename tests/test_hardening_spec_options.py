"""Malformed model specs and out-of-range options, as `minidl-run` users meet them: one line
naming the option, pointing at the token, saying what would be valid; exit code 2."""

from __future__ import annotations

import pytest
from test_hardening_common import FAST, error_line, fresh_registry, invoke  # noqa: F401

pytestmark = pytest.mark.usefixtures("fresh_registry")


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ("linear(25) relu", ["a comma is missing before 'relu' at column 12"]),
        ("linear(25 3), relu", ["a comma is missing before '3' at column 11"]),
        ("linear(25),, relu", ["invalid syntax at column 12"]),
        ("linear(25, relu", ["'(' was never closed"]),
        ("linear(25)), relu", ["unmatched ')' at column 11"]),
        ("linear(x), relu", ["quote strings: 'x' at column 8"]),
        ("relu, 3", ["expected a layer name or name(arguments) at column 7"]),
        ("linear(**{}), relu", ["'**' is not allowed"]),
        ("", ["model spec is empty; example: 'linear(25), relu, linear(1), sigmoid'"]),
        ("linear(25), relux", ["model spec item 2: unknown layer 'relux'; available: linear, relu"]),
        ("linear()", ["cannot build linear(2)", "missing 1 required positional argument: 'out_features'"]),
        ("linear(-3)", ["cannot build linear(2, -3)", "out_features must be a positive integer, got -3"]),
        ("linear(25, bias=3)", ["cannot build linear(2, 25, bias=3)", "unexpected keyword argument 'bias'"]),
        ("relu(3)", ["cannot build relu(3)"]),
        ("linear(4, init='glorot')", ["unknown initializer 'glorot'; available: "]),
        ("standardize([1], [0])", ["every standard deviation must be positive"]),
        ("linear(99999999999)", ["cannot build linear(2, 99999999999)", "allocate"]),
    ],
)  # fmt: skip
def test_model_spec_errors(spec: str, fragments: list[str]) -> None:
    result = invoke("train", *FAST, "--model", spec, code=2)
    error_line(result, "Invalid value for '--model'", *fragments)
    assert result.stdout == ""


TRAIN_RANGES = [
    (["--lr", "0"], ["'--lr'", "0.0 is not in the range x>0"]),
    (["--lr", "-1"], ["'--lr'", "-1.0 is not in the range x>0"]),
    (["--lr", "nan"], ["lr must be a positive number, got nan"]),
    (["--lr", "inf"], ["lr must be a positive number, got inf"]),
    (
        ["--lr", "1e300"],
        ["lr must be at most 3.40282e+38 for float32 parameters"],
    ),  # found by fuzzing
    (["--epochs", "0"], ["'--epochs'", "0 is not in the range x>=1"]),
    (["--batch-size", "0"], ["'--batch-size'", "0 is not in the range x>=1"]),
    (["--n-train", "0"], ["'--n-train'"]),
    (["--beta1", "1"], ["'--beta1'", "1.0 is not in the range 0<=x<1"]),
    (["--beta1", "-0.1"], ["'--beta1'"]),
    (["--beta2", "1.5"], ["'--beta2'"]),
    (["--beta2", "nan"], ["beta2 must be in [0, 1), got nan"]),
    (["--eps", "-1"], ["'--eps'"]),
    (["--eps", "inf"], ["eps must be >= 0, got inf"]),
    (["--gain", "0"], ["'--gain'", "0.0 is not a number > 0"]),
    (["--gain", "nan"], ["'--gain'", "nan is not a number > 0"]),
    (["--seed", "-1"], ["'--seed'"]),
    (["--seed", str(2**70)], ["'--seed'"]),
    (["--hidden", "25,0"], ["'--hidden'", "positive layer widths"]),
    (["--hidden", "a"], ["'--hidden'"]),
    (["--epochs", "two"], ["'--epochs'", "'two' is not a valid integer"]),
    (["--nproc", "0"], ["'--nproc'"]),
    (["--optimizer", "sgd", "--beta1", "0.5"], ["optimizer 'sgd' does not take --beta1"]),
]


@pytest.mark.parametrize(("args", "fragments"), TRAIN_RANGES)
def test_train_options_out_of_range(args: list[str], fragments: list[str]) -> None:
    result = invoke("train", *FAST, *args, code=2)
    error_line(result, *fragments)
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--rounds", "0"], ["'--rounds'", "0 is not in the range x>=1"]),
        (["--jobs", "0"], ["'--jobs'"]),
        (["--lr", "0.1,0"], ["'--lr'", "0 in '0.1,0' is out of range: need learning rates > 0"]),
        (["--lr", "nan"], ["'--lr'", "need learning rates > 0"]),
        (["--lr", "inf"], ["lr must be a positive number, got inf"]),
        (["--lr", ","], ["'--lr'", "holds no learning rates"]),
        (["--beta1", "0.9,1"], ["'--beta1'", "need numbers in [0, 1)"]),
        (["--beta2", "-1"], ["'--beta2'"]),
        (["--epochs", "0"], ["'--epochs'"]),
        (["--batch-size", "-5"], ["'--batch-size'"]),
        (["--activation", "relu,nope"], ["unknown activation 'nope'"]),
        (["--optimizer", "adamw"], ["unknown optimizer 'adamw'"]),
        (["--seed", "-3"], ["'--seed'"]),
    ],
)  # fmt: skip
def test_sweep_options_out_of_range(args: list[str], fragments: list[str]) -> None:
    result = invoke("sweep", *FAST, "--rounds", "1", *args, code=2)
    error_line(result, *fragments)
    assert result.stdout == ""


def test_a_config_file_is_checked_like_the_command_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "run.toml"
    config.write_text("lr = -1\n")
    error_line(invoke("train", *FAST, "--config", str(config), code=2), "'--lr'")
    config.write_text("lr = [\n")
    error_line(invoke("train", *FAST, "--config", str(config), code=2), "not valid TOML")
    config.write_text("learning_rate = 0.1\n")
    error_line(
        invoke("train", *FAST, "--config", str(config), code=2), "unknown option 'learning_rate'"
    )
