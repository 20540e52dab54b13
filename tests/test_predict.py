"""`minidl-run predict` on models saved by `train --out`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import Result
from clitools import invoke, one_thread  # noqa: F401 (one_thread: an autouse fixture)

import minidl
from minidl.plugins.datasets import disc_dataset


def one_line_error(result: Result, *fragments: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model")
    invoke(
        "train",
        "--epochs",
        "3",
        "--n-train",
        "200",
        "--n-test",
        "100",
        "--dtype",
        "float64",
        "--out",
        str(out),
    )
    return out


def reference(model_dir: Path, x: torch.Tensor) -> torch.Tensor:
    model, _ = minidl.load_model(model_dir)
    return model.forward(x.to(torch.float64))


def test_predict_points_from_arguments(model_dir: Path) -> None:
    # Negative numbers are inputs, not options; several points one after the other.
    result = invoke("predict", str(model_dir), "0.5", "0.5", "-0.1", "0.9", "--json")
    document = json.loads(result.stdout)
    expected = reference(model_dir, torch.tensor([[0.5, 0.5], [-0.1, 0.9]], dtype=torch.float64))
    assert [p["input"] for p in document["predictions"]] == [[0.5, 0.5], [-0.1, 0.9]]
    for p, e in zip(document["predictions"], expected, strict=True):
        assert p["output"] == pytest.approx(e.tolist(), rel=1e-12)
        assert p["label"] == int(e[0] > 0.5)
    text = invoke("predict", str(model_dir), "0.5", "0.5").stdout
    assert text.startswith(
        f"(0.5, 0.5) -> {float(expected[0, 0]):.4f}  label {int(expected[0, 0] > 0.5)}"
    )


def test_predict_csv_with_and_without_targets(model_dir: Path, tmp_path: Path) -> None:
    _, test = disc_dataset(seed=9, n_train=1, n_test=40)
    rows = [
        f"{a},{b},{int(t)}" for (a, b), (t,) in zip(test.x.tolist(), test.y.tolist(), strict=True)
    ]
    labelled = tmp_path / "labelled.csv"
    labelled.write_text("x,y,label\n" + "\n".join(rows) + "\n")
    document = json.loads(
        invoke("predict", str(model_dir), "--data", str(labelled), "--json").stdout
    )
    expected = reference(model_dir, test.x)
    assert document["accuracy"] == pytest.approx(minidl.accuracy(expected, test.y.double()))
    assert [p["actual"] for p in document["predictions"]] == [int(t) for t in test.y[:, 0]]
    text = invoke("predict", str(model_dir), "--data", str(labelled)).stdout
    assert text.strip().splitlines()[-1].startswith(f"accuracy {100 * document['accuracy']:.2f}%")

    inputs = tmp_path / "inputs.csv"
    inputs.write_text("\n".join(r.rsplit(",", 1)[0] for r in rows) + "\n")
    document = json.loads(invoke("predict", str(model_dir), "--data", str(inputs), "--json").stdout)
    assert "accuracy" not in document and len(document["predictions"]) == 40
    got = torch.tensor([p["output"] for p in document["predictions"]], dtype=torch.float64)
    torch.testing.assert_close(got, expected)


def test_predict_errors(model_dir: Path, tmp_path: Path) -> None:
    one_line_error(
        invoke("predict", str(tmp_path), "1", "2", code=2), str(tmp_path), "not a saved model"
    )
    one_line_error(
        invoke("predict", str(model_dir), "1", "2", "3", code=2), "3 numbers", "2 inputs"
    )
    one_line_error(invoke("predict", str(model_dir), code=2), "--data")
    wide = tmp_path / "wide.csv"
    wide.write_text("1,2,3,4\n")
    one_line_error(
        invoke("predict", str(model_dir), "--data", str(wide), code=2),
        str(wide),
        "4 columns",
        "2 inputs",
    )
    one_line_error(
        invoke("predict", str(model_dir), "1", "2", "--data", str(wide), code=2), "not both"
    )
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text((model_dir / "model.json").read_text())
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    one_line_error(invoke("predict", str(broken), "1", "2", code=2), "model.safetensors")
