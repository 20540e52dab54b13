"""Bad data files, and data that does not fit the model, as `minidl-run` users meet them:
one line naming the file, the line and the cell (or the layer and the shapes), exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_hardening_common import FAST, error_line, fresh_registry, invoke, write_plugin  # noqa: F401

pytestmark = pytest.mark.usefixtures("fresh_registry")

GOOD_ROWS = "".join(f"{i / 10},{(i * 7 % 10) / 10},{i % 2}\n" for i in range(20))


def write(tmp_path: Path, text: str | bytes, name: str = "data.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def train_on(path: Path, *args: str, code: int = 2) -> str:
    result = invoke("train", "--data", str(path), "--epochs", "1", *args, code=code)
    return error_line(result) if code else result.stdout


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("", ["the file is empty"]),
        ("\n  \n# only a comment\n", ["no data rows, only blank lines and # comments"]),
        ("x,y,label\n", ["no data rows, only a header"]),
        ("x,y,label\n0.1,0.2,1\n0.3,oops,0\n", ["line 3", "cell 'oops' (column 2) is not a number", "'0.3,oops,0'"]),
        ("0.1,0.2x,1\n0.3,0.4,0\n", ["line 1", "cell '0.2x'", "'0.1,0.2x,1'"]),
        ("0.1,0.2,1\n0.3,0.4\n", ["line 2", "2 columns, expected 3 (as the first row)", "'0.3,0.4'"]),
        ("a,b,c\n0.1,0.2,1,5\n", ["line 2", "4 columns, expected 3 (as the header)"]),
        ("0.1,0.2,1\n0.3,nan,0\n", ["line 2", "NaN or infinite value", "'0.3,nan,0'"]),
        ("0.1,0.2,1\n-inf,0.4,0\n", ["line 2", "NaN or infinite value"]),
        ("0.1,0.2,1\n1e39,0.4,0\n", ["line 2", "a value too large for float32", "'1e39,0.4,0'"]),
        ("1\n2\n3\n", ["1 column(s); need at least one feature column and 1 target column(s)"]),
        ("0.1,0.2,1\n0.3,0.4,0\n", ["cannot split 2 point(s)", "--test-data"]),
    ],
)  # fmt: skip
def test_bad_csv_is_one_line_naming_file_line_and_cell(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    path = write(tmp_path, text)
    line = train_on(path)
    if "split" not in fragments[0]:
        assert line.startswith(f"Error: {path}")
    for fragment in fragments:
        assert fragment in line, (fragment, line)


def test_missing_unreadable_and_binary_files(tmp_path: Path) -> None:
    assert f"{tmp_path / 'nope.csv'}: no such file" in train_on(tmp_path / "nope.csv")
    binary = write(tmp_path, b"\xff\xfe\x00\x01garbage", "binary.csv")
    assert "not a UTF-8 text file" in train_on(binary)
    # The test file is checked the same way, and named.
    good = write(tmp_path, GOOD_ROWS, "good.csv")
    bad = write(tmp_path, "0.1,0.2,1\n0.3,zz,1\n", "bad_test.csv")
    assert f"{bad}, line 2" in train_on(good, "--test-data", str(bad))


def test_a_spreadsheet_bom_and_a_header_are_read(tmp_path: Path) -> None:
    plain = write(tmp_path, GOOD_ROWS, "plain.csv")
    bom = write(tmp_path, b"\xef\xbb\xbfx,y,label\n" + GOOD_ROWS.encode(), "bom.csv")
    a = json.loads(train_on(plain, "--json", code=0))
    b = json.loads(train_on(bom, "--json", code=0))
    assert a["history"] == b["history"] and a["train_points"] == 16


def test_targets_a_sigmoid_can_never_output_are_refused(tmp_path: Path) -> None:
    rows = "".join(f"{i / 10},{i % 3},{i % 7}\n" for i in range(20))  # targets 0..6
    path = write(tmp_path, rows)
    line = train_on(path)
    assert "the training targets range over [0, 6]" in line
    assert "layer 8 (sigmoid) outputs values in [0, 1]" in line
    assert "rescale the target column" in line
    # Without a bounded last layer the same file trains (regression with MSE).
    train_on(path, "--model", "linear(8), relu, linear(1)", code=0)


def test_output_size_that_does_not_match_the_targets(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_ROWS)
    line = train_on(path, "--model", "linear(8), relu, linear(3), sigmoid")
    assert "output of shape (16, 3) with targets of shape (16, 1)" in line


def test_features_that_do_not_match_the_model_name_the_layer_and_shapes(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_ROWS)  # 2 features
    line = train_on(path, "--model", "linear(in_features=3, out_features=8), relu, linear(1)")
    assert "'--model'" in line
    assert "layer 1 (linear(in_features=3, out_features=8))" in line
    assert "input of shape (16, 2)" in line and "takes 3 features per point" in line
    assert "the data gives 2" in line and "leave in_features out" in line
    # Deeper in the model: the layer before is named.
    line = train_on(path, "--model", "linear(8), relu, linear(in_features=5, out_features=1)")
    assert "layer 3 (linear(in_features=5, out_features=1))" in line
    assert "layer 2 (relu) gives 8" in line
    # Written the way the width is inferred, with the data's width given as well.
    line = train_on(path, "--model", "linear(3, 8), relu, linear(1)")
    assert "cannot build linear(2, 3, 8)" in line


def test_a_width_that_cannot_be_inferred_names_the_layer(tmp_path: Path) -> None:
    """`twice` doubles the width without saying so: the next layer's inferred input size
    is wrong, and the message says why and what to do."""
    plugin = write_plugin(tmp_path)
    path = write(tmp_path, GOOD_ROWS)
    result = invoke(
        "--layer-plugin", str(plugin), "train", "--data", str(path), "--epochs", "1",
        "--model", "linear(4), twice, linear(1)", code=2,
    )  # fmt: skip
    line = error_line(result, "layer 3 (linear(4, 1))", "input of shape (16, 8)")
    assert "layer 2 (twice) gives 8" in line and "give in_features= explicitly" in line


def test_predict_with_the_wrong_number_of_inputs(tmp_path: Path) -> None:
    invoke("train", *FAST, "--out", str(tmp_path / "m"))
    line = error_line(invoke("predict", str(tmp_path / "m"), "1", "2", "3", code=2))
    assert "got 3 numbers, but the model takes 2 inputs per point" in line
    wide = write(tmp_path, "1,2,3,4\n", "wide.csv")
    line = error_line(invoke("predict", str(tmp_path / "m"), "--data", str(wide), code=2))
    assert "4 columns, but the model takes 2 inputs" in line
    line = error_line(invoke("predict", str(tmp_path / "m"), "nan", "1", code=2))
    assert "nan is not a finite number" in line
    line = error_line(
        invoke("predict", str(tmp_path / "m"), "--data", str(tmp_path / "x.csv"), code=2)
    )
    assert "no such file" in line


def test_sweep_reads_the_same_data_checks(tmp_path: Path) -> None:
    path = write(tmp_path, "0.1,0.2,1\n0.3,oops,0\n")
    result = invoke("sweep", "--data", str(path), "--rounds", "1", "--epochs", "1", code=2)
    error_line(result, f"{path}, line 2", "'oops'")


STRICT_LOSS = """
import minidl
from minidl.plugins import MSE


class Labels(MSE):
    \"\"\"MSE for 0/1 labels only.\"\"\"

    def check_target(self, target):
        bad = target[(target != 0) & (target != 1)]
        if len(bad):
            raise ValueError(f"targets must be 0 or 1, got {float(bad[0]):g}")


@minidl.hookimpl
def register_losses(register):
    register("labels", Labels)
"""


def test_a_loss_rejects_targets_it_cannot_use(tmp_path: Path) -> None:
    plugin = tmp_path / "labels_loss.py"
    plugin.write_text(STRICT_LOSS)
    soft = write(tmp_path, "".join(f"{i / 10},{i % 3},{(i % 4) / 4}\n" for i in range(20)))
    result = invoke("--layer-plugin", str(plugin), "train", "--data", str(soft), "--epochs", "1", "--loss", "labels", code=2)  # fmt: skip
    error_line(
        result, "the training targets do not suit the loss", "targets must be 0 or 1, got 0.25"
    )
    # The same loss takes 0/1 labels, and MSE takes the soft targets.
    labels = write(tmp_path, GOOD_ROWS, "labels.csv")
    invoke("--layer-plugin", str(plugin), "train", "--data", str(labels), "--epochs", "1", "--loss", "labels")  # fmt: skip
    invoke("train", "--data", str(soft), "--epochs", "1")
