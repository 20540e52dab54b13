"""Datasets (inputs of any rank, float or class-index targets), batches and splits; CSV
files, whose every error names the file, the line and the cell; data that does not fit the
model, named with the layer and the shapes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import minidl
from minidl import DataError, Dataset, Sequential, load_csv
from minidl.plugins import MSE, SGD, Linear, ReLU, Standardize

F64 = torch.float64
GOOD_ROWS = "".join(f"{i / 10},{(i * 7 % 10) / 10},{i % 2}\n" for i in range(20))


def write(tmp_path: Path, text: str | bytes, name: str = "data.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


# ---------------------------------------------------------------------------- Dataset


@pytest.mark.parametrize("x_shape", [(6,), (6, 3), (6, 3, 4, 4)])
@pytest.mark.parametrize("target", ["columns", "classes"])
def test_inputs_of_any_rank_and_either_kind_of_target(
    x_shape: tuple[int, ...], target: str
) -> None:
    y = torch.zeros(6, 2) if target == "columns" else torch.tensor([0, 1, 2, 0, 1, 2])
    data = Dataset(torch.zeros(*x_shape), y)
    assert len(data) == 6 and data.features == x_shape[-1]
    batches = list(data.batches(4))
    assert [tuple(b[0].shape) for b in batches] == [(4, *x_shape[1:]), (2, *x_shape[1:])]
    assert [tuple(b[1].shape) for b in batches] == [(4, *y.shape[1:]), (2, *y.shape[1:])]


@pytest.mark.parametrize(
    "x,y,message",
    [
        (torch.zeros(3, 2), torch.zeros(3), r"targets of shape \(3,\) are class indices and must be int64, got torch.float32; give float targets as \(N, k\)"),
        (torch.zeros(3, 2), torch.zeros(4, 1), "3 inputs but 4 targets"),
        (torch.zeros(3, 2), torch.zeros(3, 1, 1), r"inputs of shape \(N, ...\) and targets of shape \(N, k\) or \(N,\), got \(3, 2\) and \(3, 1, 1\)"),
        (torch.zeros(()), torch.zeros(3, 1), r"got \(\) and \(3, 1\)"),
        (torch.zeros(3, 2), torch.zeros((), dtype=torch.int64), r"got \(3, 2\) and \(\)"),
    ],
)  # fmt: skip
def test_bad_shapes_are_data_errors(x: torch.Tensor, y: torch.Tensor, message: str) -> None:
    with pytest.raises(DataError, match=message):
        Dataset(x, y)


def test_to_casts_floats_and_keeps_class_indices_int64() -> None:
    classes = Dataset(torch.rand(4, 2), torch.tensor([0, 1, 1, 0]))
    moved = classes.to(dtype=F64)
    assert moved.x.dtype == F64 and moved.y.dtype == torch.int64
    assert torch.equal(moved.y, classes.y) and torch.equal(moved.x, classes.x.to(F64))
    columns = Dataset(torch.rand(4, 2), torch.rand(4, 1)).to("cpu", F64)
    assert columns.x.dtype == columns.y.dtype == F64
    assert classes.x.dtype == torch.float32  # a new dataset; the old one is unchanged
    with pytest.raises(dataclasses.FrozenInstanceError):
        classes.x = torch.zeros(1)  # type: ignore[misc]


def test_batches_cover_every_row_once_in_a_seeded_random_order() -> None:
    data = Dataset(torch.arange(10.0).unsqueeze(1), torch.arange(10).remainder(3))
    in_order = torch.cat([x for x, _ in data.batches(3)])
    assert in_order.flatten().tolist() == list(range(10))
    shuffled = [
        (x.clone(), y.clone()) for x, y in data.batches(4, torch.Generator().manual_seed(1))
    ]
    assert [len(x) for x, _ in shuffled] == [4, 4, 2]
    rows = torch.cat([x for x, _ in shuffled]).flatten()
    assert sorted(rows.tolist()) == list(range(10)) and rows.tolist() != list(range(10))
    # The targets travel with their inputs.
    for x, y in shuffled:
        assert torch.equal(y, x.flatten().long().remainder(3))
    again = [x for x, _ in data.batches(4, torch.Generator().manual_seed(1))]
    assert all(torch.equal(a, b) for a, (b, _) in zip(again, shuffled, strict=True))
    expected = torch.randperm(10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(rows.long(), expected)  # the documented draw: one randperm per epoch


def test_split_is_random_disjoint_and_complete() -> None:
    data = Dataset(torch.arange(20.0).unsqueeze(1), torch.arange(20).remainder(2))
    a, b = data.split(0.75, torch.Generator().manual_seed(0))
    assert (len(a), len(b)) == (15, 5)
    rows = torch.cat([a.x, b.x]).flatten().tolist()
    assert sorted(rows) == list(range(20)) and rows[:15] != list(range(15))
    assert torch.equal(a.y, a.x.flatten().long().remainder(2))
    c, _ = data.split(0.75, torch.Generator().manual_seed(0))
    assert torch.equal(a.x, c.x)
    assert len(Dataset(torch.zeros(2, 1), torch.zeros(2, 1)).split(0.5)[0]) == 1
    with pytest.raises(ValueError, match=r"split fraction must be in \(0, 1\), got 1.5"):
        data.split(1.5)
    with pytest.raises(
        DataError,
        match="cannot split 2 example.s. into parts of 90% and 10% with at least one in each",
    ):
        Dataset(torch.zeros(2, 1), torch.zeros(2, 1)).split(0.9)


# ---------------------------------------------------------------------------- load_csv


def test_load_csv_reads_numbers_with_the_target_last(tmp_path: Path) -> None:
    data = load_csv(write(tmp_path, "# a comment\n1,2,0.5\n\n3, 4 ,1.5\n"))
    assert data.x.tolist() == [[1.0, 2.0], [3.0, 4.0]] and data.y.tolist() == [[0.5], [1.5]]
    assert data.x.dtype == data.y.dtype == torch.get_default_dtype()
    two = load_csv(write(tmp_path, "1,2,3,4\n5,6,7,8\n", "two.csv"), targets=2)
    assert two.x.tolist() == [[1.0, 2.0], [5.0, 6.0]] and two.y.tolist() == [[3.0, 4.0], [7.0, 8.0]]


def test_a_spreadsheet_bom_and_a_header_are_read(tmp_path: Path) -> None:
    plain = load_csv(write(tmp_path, GOOD_ROWS, "plain.csv"))
    bom = load_csv(write(tmp_path, b"\xef\xbb\xbfx,y,label\n" + GOOD_ROWS.encode(), "bom.csv"))
    assert torch.equal(plain.x, bom.x) and torch.equal(plain.y, bom.y) and len(bom) == 20


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
        ("1,2,3\n" + "x" * 200 + ",1,2\n", ["line 2", "'" + "x" * 77 + "...'"]),
    ],
)  # fmt: skip
def test_bad_csv_names_file_line_and_cell(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DataError) as info:
        load_csv(path)
    message = str(info.value)
    assert message.startswith(f"{path}") and "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert info.value.exit_code == 2


def test_missing_unreadable_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"{tmp_path / 'nope.csv'}: no such file"):
        load_csv(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="binary.csv: not a UTF-8 text file"):
        load_csv(write(tmp_path, b"\xff\xfe\x00\x01garbage", "binary.csv"))
    with pytest.raises(DataError, match=f"{tmp_path}: cannot read"):
        load_csv(tmp_path)  # a directory
    with pytest.raises(DataError, match="need at least one feature column and 2 target"):
        load_csv(write(tmp_path, "1,2\n", "narrow.csv"), targets=2)


@pytest.mark.parametrize(
    "rows,classes,targets,expected",
    [
        ("0.1,0.2,0\n0.3,0.4,2\n0.5,0.6,1\n", True, 1, "classes"),
        ("0.1,0.2,0\n0.3,0.4,1\n", False, 1, "floats"),  # only when asked
        ("0.1,0.2,0\n0.3,0.4,1.5\n", True, 1, "floats"),  # not integers
        ("0.1,0.2,0\n0.3,0.4,-1\n", True, 1, "floats"),  # negative
        ("0.1,0,1\n0.3,1,0\n", True, 2, "floats"),  # several target columns
        ("0.1,0.2,0.0\n0.3,0.4,1.0\n", True, 1, "classes"),  # 1.0 is the integer 1
    ],
)
def test_the_class_label_rule(
    tmp_path: Path, rows: str, classes: bool, targets: int, expected: str
) -> None:
    data = load_csv(write(tmp_path, rows), targets=targets, classes=classes)
    if expected == "classes":
        assert data.y.dtype == torch.int64 and data.y.dim() == 1
        assert data.y.tolist() == [int(r.split(",")[-1].split(".")[0]) for r in rows.split()]
    else:
        assert data.y.is_floating_point() and data.y.shape == (len(data), targets)
    assert data.x.shape == (len(data), 3 - targets)


# ---------------------------------------------------------------------------- data and model


def fit_one(model: Sequential, data: Dataset, loss: object = None) -> None:
    minidl.fit(model, loss or MSE(), SGD(model.parameters(), lr=0.1), data, epochs=1, batch_size=16)


def test_targets_a_sigmoid_can_never_output_are_refused() -> None:
    x = torch.rand(20, 2)
    data = Dataset(x, torch.arange(20.0).remainder(7).unsqueeze(1))  # targets 0..6
    with pytest.raises(DataError) as info:
        fit_one(minidl.build("linear(8), relu, linear(1), sigmoid", (2,)), data)
    assert str(info.value).startswith(
        "the training targets range over [0, 6], but the model's last layer 4 (sigmoid) "
        "outputs values in [0, 1]: rescale the target column, or end the model with another "
        "layer"
    )
    fit_one(minidl.build("linear(8), relu, linear(1)", (2,)), data)  # regression: fine
    test = Dataset(x, torch.full((20, 1), 2.0))
    model = minidl.build("linear(1), sigmoid", (2,))
    with pytest.raises(DataError, match="the test targets range over"):
        minidl.fit(model, MSE(), SGD(model.parameters(), lr=0.1), Dataset(x, x[:, :1]), test)


def test_an_output_size_that_does_not_match_the_targets() -> None:
    data = Dataset(torch.rand(16, 2), torch.ones(16, 1))
    with pytest.raises(
        DataError,
        match=r"loss MSE\(\) cannot compare the model's output of shape \(16, 3\) with targets of shape \(16, 1\)",
    ):
        fit_one(minidl.build("linear(8), relu, linear(3), sigmoid", (2,)), data)


def test_features_that_do_not_match_the_model_name_the_layer_and_shapes() -> None:
    data = Dataset(torch.rand(16, 2), torch.ones(16, 1))
    with pytest.raises(minidl.SpecError) as info:
        fit_one(Sequential(Linear(3, 8), ReLU(), Linear(8, 1)), data)
    assert str(info.value) == (
        "model layer 1 (linear) cannot take an input of shape (16, 2): it takes 3 features per "
        "example, but the data gives 2 (leave in_features out: it is inferred from the data)"
    )
    with pytest.raises(minidl.SpecError) as info:
        fit_one(Sequential(Linear(2, 8), ReLU(), Linear(5, 1)), data)
    assert "layer 3 (linear) cannot take an input of shape (16, 8)" in str(info.value)
    assert "layer 2 (relu) gives 8" in str(info.value)
    assert "give in_features= explicitly" in str(info.value)
    with pytest.raises(
        minidl.SpecError,
        match=r"layer 2 \(standardize\) cannot take an input of shape \(16, 4\): RuntimeError",
    ):
        fit_one(Sequential(Linear(2, 4), Standardize([0.0] * 8, [1.0] * 8), Linear(4, 1)), data)


def test_a_loss_rejects_targets_it_cannot_use() -> None:
    class Labels(MSE):
        """MSE for 0/1 labels only."""

        def check_target(self, target: torch.Tensor) -> None:
            bad = target[(target != 0) & (target != 1)]
            if len(bad):
                raise ValueError(f"targets must be 0 or 1, got {float(bad[0]):g}")

    x = torch.rand(20, 2)
    soft = Dataset(x, torch.arange(20.0).remainder(4).unsqueeze(1) / 4)
    model = minidl.build("linear(4), relu, linear(1), sigmoid", (2,))
    with pytest.raises(
        DataError,
        match="the training targets do not suit the loss MSE.*targets must be 0 or 1, got 0.25",
    ):
        fit_one(model, soft, Labels())
    fit_one(model, Dataset(x, (soft.y > 0.5).float()), Labels())  # 0/1 labels: fine
    fit_one(model, soft)  # and MSE takes the soft targets
