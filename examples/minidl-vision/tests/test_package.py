"""The digits dataset, the plugin's registration, and the rule that the package computes
every gradient itself (no torch.nn, torch.optim or autograd in its code)."""

from __future__ import annotations

import ast
import builtins
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import minidl_vision
import pytest
import torch
from minidl_vision import BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, MaxPool2d, digits

import minidl

SOURCE = Path(minidl_vision.__file__).parent


def test_digits_shapes_types_and_range() -> None:
    train, test = digits()
    assert (len(train), len(test)) == (1437, 360)
    for data in (train, test):
        assert data.x.shape[1:] == (1, 8, 8) and data.x.dtype == torch.float32
        assert data.y.dtype == torch.int64 and data.y.dim() == 1
        assert float(data.x.min()) == 0.0 and float(data.x.max()) == 1.0
        assert set(data.y.tolist()) == set(range(10))
    # x * 16 gives back sklearn's integer pixels
    assert torch.equal(train.x * 16, (train.x * 16).round())


def test_digits_split_is_seeded_and_disjoint() -> None:
    from sklearn.datasets import load_digits

    images = torch.as_tensor(load_digits().images, dtype=torch.float32).div(16)
    a_train, a_test = digits(seed=4)
    b_train, b_test = digits(seed=4)
    c_train, _ = digits(seed=5)
    assert torch.equal(a_train.x, b_train.x) and torch.equal(a_test.y, b_test.y)
    assert not torch.equal(a_train.x, c_train.x)
    # every image once: the two sets are a partition of the 1,797
    together = torch.cat([a_train.x, a_test.x]).flatten(1)
    assert sorted(map(tuple, together.tolist())) == sorted(map(tuple, images.flatten(1).tolist()))


def test_digits_sizes() -> None:
    train, test = digits(n_train=1000)
    assert (len(train), len(test)) == (1000, 797)
    train, test = digits(n_test=97)
    assert (len(train), len(test)) == (1700, 97)
    small_train, small_test = digits(seed=2, n_train=100, n_test=360)
    _, default_test = digits(seed=2)
    assert len(small_train) == 100 and torch.equal(small_test.x, default_test.x)
    with pytest.raises(minidl.DataError, match="more than the 1797 images"):
        digits(n_train=1500, n_test=400)
    with pytest.raises(minidl.DataError, match="positive integer"):
        digits(n_train=0)


def test_digits_without_scikit_learn_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_sklearn(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "sklearn" or name.startswith("sklearn."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    for module in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.delitem(sys.modules, module)
    with pytest.raises(minidl.DataError, match=r"pip install minidl-vision\[digits\]"):
        digits()
    with pytest.raises(minidl.SpecError, match=r"pip install minidl-vision\[digits\]"):
        minidl.create("dataset", "digits", seed=0)


def test_the_plugin_is_installed_and_registers_its_classes() -> None:
    points = {e.name: e.value for e in entry_points(group="minidl")}
    assert points.get("vision") == "minidl_vision"
    expected = {
        "conv2d": Conv2d,
        "maxpool2d": MaxPool2d,
        "flatten": Flatten,
        "batchnorm1d": BatchNorm1d,
        "batchnorm2d": BatchNorm2d,
    }
    for name, cls in expected.items():
        assert minidl.registry.get("layer", name) is cls
        assert minidl.registry.name_of("layer", cls) == name
    assert minidl.registry.get("dataset", "digits") is digits
    # dropout moved into minidl's built-ins: the name is theirs, and the class the same
    assert minidl.registry.table("layer")["dropout"].plugin == "minidl.dropout"
    assert minidl.registry.get("layer", "dropout") is Dropout
    train, _ = minidl.create("dataset", "digits", seed=0, n_train=50)
    assert len(train) == 50


FORBIDDEN = ("torch.nn", "torch.optim", "torch.autograd", "torch.func")
FORBIDDEN_NAMES = {"requires_grad", "requires_grad_", "enable_grad", "grad_fn", "retain_grad"}


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


@pytest.mark.parametrize("path", sorted(SOURCE.glob("*.py")), ids=lambda p: p.name)
def test_the_package_never_uses_torch_nn_optim_or_autograd(path: Path) -> None:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Attribute):
            names = [_dotted(node)]
            if node.attr in FORBIDDEN_NAMES:
                found.append(f"line {node.lineno}: {node.attr}")
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES | {"F"}:
            found.append(f"line {node.lineno}: {node.id}")
        for name in names:
            if any(name == m or name.startswith(m + ".") for m in FORBIDDEN):
                found.append(f"line {node.lineno}: {name}")
    assert not found, f"{path.name} uses autograd or torch.nn/optim: {found}"


REPOSITORY = Path(__file__).resolve().parents[3]


@pytest.mark.skipif(
    not (REPOSITORY / "benchmarks" / "convnet.py").is_file(),
    reason="not in the minidl repository",
)
def test_the_benchmark_runs(tmp_path: Path) -> None:
    """``python -m benchmarks.convnet --quick``: a table and a JSON result; no timing is
    asserted (machines are shared and noisy)."""
    import json
    import subprocess

    out = tmp_path / "convnet.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.convnet", "--quick", "--json", str(out)],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "twin/minidl" in done.stdout
    result = json.loads(out.read_text())
    assert set(result["step_us"]) == {"twin", "minidl", "minidl fit step"}
    assert all(v > 0 for v in result["step_us"].values())
