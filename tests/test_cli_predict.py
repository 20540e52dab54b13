"""`minidl-run predict` on models saved by `train --out`: numbers, CSV files with and
without targets, JSON, class-label models, errors, and the same predictions every time
from a model with dropout-like randomness."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from test_cli_errors import error_line, fresh_cli  # noqa: F401 (a fixture)

import minidl
from minidl.cli import TrainConfig
from minidl.cli import plots as cli_plots
from minidl.cli.commands.train import execute
from minidl.cli.experiment import load_data
from minidl.plugins.datasets import disc_dataset


def save(directory: Path, config: TrainConfig) -> Path:
    """A model trained as ``train --out DIRECTORY`` trains it (no plots: they take time)."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(cli_plots, "available", lambda: False)
        execute(config, out=str(directory))
    return directory


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = TrainConfig(epochs=3, n_train=200, n_test=100, dtype="float64", lr=0.01)
    return save(tmp_path_factory.mktemp("model"), config)


def reference(model_dir: Path, x: torch.Tensor) -> torch.Tensor:
    model, _ = minidl.load_model(model_dir)
    return model.forward(x.to(torch.float64))


def test_predict_examples_given_as_numbers(model_dir: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    # Negative numbers are inputs, not options; several examples one after the other.
    result = invoke("predict", str(model_dir), "0.5", "0.5", "-0.1", "0.9", "--json")
    document = json.loads(result.stdout)
    expected = reference(model_dir, torch.tensor([[0.5, 0.5], [-0.1, 0.9]], dtype=torch.float64))
    assert document["model"] == str(model_dir)
    assert [p["input"] for p in document["predictions"]] == [[0.5, 0.5], [-0.1, 0.9]]
    for p, e in zip(document["predictions"], expected, strict=True):
        assert p["output"] == e.tolist()
        assert p["label"] == int(e[0] > 0.5)
        assert "actual" not in p
    text = invoke("predict", str(model_dir), "0.5", "0.5", "-0.1", "0.9").stdout.splitlines()
    assert text == [
        f"(0.5, 0.5) -> {float(expected[0, 0]):.4f}  label {int(expected[0, 0] > 0.5)}",
        f"(-0.1, 0.9) -> {float(expected[1, 0]):.4f}  label {int(expected[1, 0] > 0.5)}",
    ]


def test_predict_a_csv_with_and_without_targets(model_dir: Path, tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
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
    assert document["accuracy"] == minidl.accuracy(expected, test.y.double())
    assert [p["actual"] for p in document["predictions"]] == [int(t) for t in test.y[:, 0]]
    assert [p["label"] for p in document["predictions"]] == minidl.labels(expected).tolist()
    text = invoke("predict", str(model_dir), "--data", str(labelled)).stdout.splitlines()
    correct = sum(p["label"] == p["actual"] for p in document["predictions"])
    assert text[-1] == f"accuracy {100 * document['accuracy']:.2f}% ({correct} of 40)"
    assert len(text) == 41 and text[0].endswith(f"actual {int(test.y[0, 0])}")

    inputs = tmp_path / "inputs.csv"
    inputs.write_text("\n".join(r.rsplit(",", 1)[0] for r in rows) + "\n")
    document = json.loads(invoke("predict", str(model_dir), "--data", str(inputs), "--json").stdout)
    assert "accuracy" not in document and len(document["predictions"]) == 40
    got = torch.tensor([p["output"] for p in document["predictions"]], dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_predict_with_a_class_label_model(tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(150) % 3
    x = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])[labels] + 0.5 * torch.randn(
        150, 2, generator=g
    )
    data = tmp_path / "three.csv"
    data.write_text(
        "".join(
            f"{a},{b},{int(t)}\n" for (a, b), t in zip(x.tolist(), labels.tolist(), strict=True)
        )
    )
    out = save(
        tmp_path / "model", TrainConfig(data=str(data), loss="cross_entropy", epochs=30, lr=0.02)
    )
    metadata = json.loads((out / "model.json").read_text())["metadata"]
    assert metadata["outputs"] == 3
    _, _, test = load_data(TrainConfig(data=str(data), loss="cross_entropy"))
    document = json.loads(invoke("predict", str(out), "--data", str(data), "--json").stdout)
    model, _ = minidl.load_model(out)
    expected = minidl.predict(model, x)
    assert [p["label"] for p in document["predictions"]] == expected.argmax(1).tolist()
    assert [p["actual"] for p in document["predictions"]] == labels.tolist()
    assert document["accuracy"] == minidl.accuracy(expected, labels) > 0.9
    assert all(len(p["output"]) == 3 for p in document["predictions"])
    # Inputs only, as numbers: three outputs each, the label the largest.
    numbers = [str(v) for v in test.x[:2].flatten().tolist()]
    document = json.loads(invoke("predict", str(out), *numbers, "--json").stdout)
    assert [p["label"] for p in document["predictions"]] == minidl.predict(
        model, test.x[:2]
    ).argmax(1).tolist()


def test_predict_errors(model_dir: Path, tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "nowhere"
    error_line(invoke("predict", str(missing), "1", "2", code=2), f"{missing}: no such directory")
    error_line(
        invoke("predict", str(tmp_path), "1", "2", code=2),
        str(tmp_path),
        "not a saved model (no model.json)",
    )
    error_line(
        invoke("predict", str(model_dir), "1", "2", "3", code=2),
        "Invalid value for 'X Y ...'", "got 3 numbers, but the model takes 2 inputs per example",
    )  # fmt: skip
    error_line(
        invoke("predict", str(model_dir), code=2),
        "give the inputs of an example (2 numbers) or --data CSV",
    )
    error_line(invoke("predict", str(model_dir), "1", "nan", code=2), "nan is not a finite number")
    wide = tmp_path / "wide.csv"
    wide.write_text("1,2,3,4\n")
    error_line(
        invoke("predict", str(model_dir), "--data", str(wide), code=2),
        str(wide), "4 columns, but the model takes 2 inputs (2 columns, or 3 with the targets last)",
    )  # fmt: skip
    error_line(invoke("predict", str(model_dir), "1", "2", "--data", str(wide), code=2), "not both")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text((model_dir / "model.json").read_text())
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    error_line(
        invoke("predict", str(broken), "1", "2", code=2),
        "model.safetensors: not a valid safetensors file",
    )
    (broken / "model.json").write_text("{")
    error_line(invoke("predict", str(broken), "1", "2", code=2), "model.json: not valid JSON")


def test_predict_never_prints_a_non_finite_output(tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    out = save(tmp_path, TrainConfig(epochs=1, n_train=50, n_test=20, model="linear(1)"))
    result = invoke("predict", str(out), "1e39", "1", code=1)
    error_line(result, "the model's output for example 1 is not finite", "overflow")
    assert result.stdout == ""


NOISY = textwrap.dedent(
    '''
    import torch
    import minidl

    class Noisy(minidl.ModuleBase):
        """Dropout: in training, zero each unit with probability p (drawn from torch's global
        generator) and scale the others; in eval mode, the identity."""

        def __init__(self, p=0.5):
            self.p = p

        def forward(self, x):
            if not self.training:
                return x
            self.mask = (torch.rand(x.shape) >= self.p).to(x.dtype) / (1 - self.p)
            return x * self.mask

        def backward(self, grad):
            return grad * self.mask if self.training else grad

    @minidl.hookimpl
    def register_layers(register):
        register("noisy", Noisy)
    '''
)


@pytest.mark.usefixtures("fresh_cli")
def test_predictions_of_a_model_with_randomness_are_the_same_every_time(
    tmp_path: Path, invoke
) -> None:  # type: ignore[no-untyped-def]
    plugin = tmp_path / "noisy.py"
    plugin.write_text(NOISY)
    out = tmp_path / "model"
    model = "linear(16), relu, noisy(0.5), linear(1), sigmoid"
    invoke(
        "-p",
        str(plugin),
        "train",
        "--model",
        model,
        "--epochs",
        "3",
        "--n-train",
        "200",
        "--n-test",
        "50",
        "--out",
        str(out),
        "--no-diagnostics",
    )
    points = ["0.5", "0.5", "0.1", "0.9", "0.3", "0.2"]
    outputs = [
        json.loads(invoke("-p", str(plugin), "predict", str(out), *points, "--json").stdout)
        for _ in range(3)
    ]
    assert outputs[0] == outputs[1] == outputs[2]
    # They are the model's in eval mode: the dropout layer passes everything through.
    loaded, _ = minidl.load_model(out)
    assert loaded.layers[2].training is False
    x = torch.tensor([float(v) for v in points]).reshape(3, 2)
    layers = [layer for i, layer in enumerate(loaded.layers) if i != 2]  # without the dropout
    expected = minidl.Sequential(*layers).forward(x)
    assert [p["output"] for p in outputs[0]["predictions"]] == expected.tolist()
    # In training mode the same model does draw: the test would notice the randomness.
    loaded.train()
    assert not torch.equal(loaded.forward(x), loaded.forward(x))
