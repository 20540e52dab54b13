"""minidl computes gradients by hand and leaves torch as it found it.

Statically, no source file under core/, plugins/ or cli/ imports or names torch.nn,
torch.optim, torch.autograd or torch.func, or asks for gradients (requires_grad,
enable_grad, set_grad_enabled(True), grad_fn, retain_grad). A call to a torch tensor's
``.backward()`` cannot be told apart statically from a layer's own ``backward``, so a fit
runs with torch's backward entry points booby-trapped. And ``import minidl`` changes no
global state: grad mode, threads and plugins are as they were, and ordinary torch code in
the same process still trains.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

import minidl
from minidl import ModuleBase, Sequential
from minidl.plugins import MSE, SGD, Adam, Linear, Sigmoid, Tanh

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ["core", "plugins", "cli"]
FORBIDDEN_MODULES = ("torch.nn", "torch.optim", "torch.autograd", "torch.func")
FORBIDDEN_NAMES = {"requires_grad", "requires_grad_", "enable_grad", "grad_fn", "retain_grad"}


def _forbidden_module(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in FORBIDDEN_MODULES)


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def violations(source: str, filename: str = "<source>") -> list[str]:
    """Every use of autograd or of torch.nn/optim/autograd in ``source``, as 'file:line: what'."""
    tree = ast.parse(source, filename)
    torch_names = {"torch"}  # names bound to the torch module (import torch as t)
    found = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _forbidden_module(alias.name):
                    report(node, f"import {alias.name}")
                if alias.name == "torch" and alias.asname:
                    torch_names.add(alias.asname)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if _forbidden_module(node.module) or _forbidden_module(full):
                    report(node, f"from {node.module} import {alias.name}")
                if alias.name in FORBIDDEN_NAMES:
                    report(node, f"from {node.module} import {alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if dotted is not None:
                head, _, rest = dotted.partition(".")
                if head in torch_names and _forbidden_module(f"torch.{rest}"):
                    report(node, dotted)
            if node.attr in FORBIDDEN_NAMES:
                report(node, f".{node.attr}")
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            report(node, node.id)
        elif isinstance(node, ast.keyword) and node.arg in FORBIDDEN_NAMES:
            report(node, f"{node.arg}=")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _forbidden_module(node.value):  # importlib.import_module("torch.nn")
                report(node, repr(node.value))
        elif isinstance(node, ast.Call) and (_dotted(node.func) or "").endswith("set_grad_enabled"):
            args = [*node.args, *(k.value for k in node.keywords)]
            if not (
                len(args) == 1 and isinstance(args[0], ast.Constant) and args[0].value is False
            ):
                report(node, "set_grad_enabled(...) with anything but False")
    # Duplicate reports of one chain (torch.nn and torch.nn.functional) are fine: any fails.
    return sorted(set(found))


def library_files() -> list[Path]:
    files = sorted(p for d in LIBRARY for p in (ROOT / d).rglob("*.py"))
    assert len(files) >= 15, files  # the scan sees the real tree
    assert ROOT / "core" / "train.py" in files and ROOT / "plugins" / "layers.py" in files
    return files


def test_library_sources_never_use_autograd_or_torch_nn() -> None:
    problems = [
        v
        for path in library_files()
        for v in violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]
    assert problems == []


@pytest.mark.parametrize(
    "snippet",
    [
        "import torch.nn",
        "import torch.nn.functional as F",
        "import torch.optim as optim",
        "from torch import nn",
        "from torch import autograd",
        "from torch.autograd import grad",
        "from torch.nn.functional import relu",
        "import torch as T\ny = T.nn.functional.relu(x)",
        "import torch\nopt = torch.optim.SGD(p, lr=1)",
        "import torch\ng = torch.autograd.grad(y, x)",
        "import torch\nfrom torch.func import grad",
        "x.requires_grad_()",
        "x = torch.zeros(3, requires_grad=True)",
        "if x.requires_grad: pass",
        "with torch.enable_grad(): pass",
        "torch.set_grad_enabled(True)",
        "torch.set_grad_enabled(mode)",
        "importlib.import_module('torch.optim')",
        "y.grad_fn",
    ],
)
def test_the_scanner_catches(snippet: str) -> None:
    assert violations(snippet) != []


@pytest.mark.parametrize(
    "snippet",
    [
        "import torch\ny = torch.tanh(x)",
        "torch.set_grad_enabled(False)",
        "def backward(self, grad_output):\n    return self.layer.backward(grad_output)",
        "from torch import Tensor",
        "p.grad.zero_()",
        "import torch.nnx",  # not torch.nn
    ],
)
def test_the_scanner_allows(snippet: str) -> None:
    assert violations(snippet) == []


# ---------------------------------------------------------------------------- at run time


def fit_once(activation: type, optimizer: str) -> tuple[list[dict[str, Any]], Sequential]:
    torch.manual_seed(0)
    model = Sequential(Linear(2, 8), activation(), Linear(8, 1), Sigmoid())
    train, test = minidl.registry.get("dataset", "disc")(seed=0, n_train=100, n_test=50)
    opt = (
        SGD(model.parameters(), lr=0.5) if optimizer == "sgd" else Adam(model.parameters(), lr=0.01)
    )
    history = minidl.fit(model, MSE(), opt, train, test, epochs=2, batch_size=25)
    return history, model


@pytest.mark.parametrize("activation,optimizer", [(Tanh, "sgd"), (minidl.plugins.ReLU, "adam")])
def test_a_fit_runs_with_autograds_entry_points_booby_trapped(
    monkeypatch: pytest.MonkeyPatch, activation: type, optimizer: str
) -> None:
    expected, _ = fit_once(activation, optimizer)

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("library code used autograd")

    monkeypatch.setattr(torch.Tensor, "backward", forbidden)
    monkeypatch.setattr(torch.Tensor, "requires_grad_", forbidden)
    monkeypatch.setattr(torch.autograd, "backward", forbidden)
    monkeypatch.setattr(torch.autograd, "grad", forbidden)
    with pytest.raises(AssertionError, match="used autograd"):  # the trap is armed
        torch.zeros(1).backward()
    with torch.enable_grad():
        history, model = fit_once(activation, optimizer)
        prediction = minidl.predict(model, torch.rand(4, 2))
    assert history == expected  # the trapped run trained, it did not just start
    assert prediction.grad_fn is None and not prediction.requires_grad
    assert all(not p.data.requires_grad for p in model.parameters())


FRESH = textwrap.dedent(
    """
    import json, sys
    import torch

    torch.set_num_threads(1)
    before = {"grad": torch.is_grad_enabled(), "threads": torch.get_num_threads(),
              "dtype": str(torch.get_default_dtype()),
              "deterministic": torch.are_deterministic_algorithms_enabled()}
    import minidl

    after_import = {"grad": torch.is_grad_enabled(), "threads": torch.get_num_threads(),
                    "dtype": str(torch.get_default_dtype()),
                    "deterministic": torch.are_deterministic_algorithms_enabled()}
    lazy = {"plugins_loaded": minidl.registry._loaded,
            "plugins_imported": "minidl.plugins" in sys.modules}
    minidl.registry.load_plugins()
    import minidl.cli
    after_plugins = {"grad": torch.is_grad_enabled(), "threads": torch.get_num_threads()}
    print(json.dumps([before, after_import, lazy, after_plugins]))
    """
)


def test_import_minidl_changes_no_global_state_of_torch(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", FRESH], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert out.returncode == 0, out.stderr
    before, after_import, lazy, after_plugins = json.loads(out.stdout)
    assert before == {"grad": True, "threads": 1, "dtype": "torch.float32", "deterministic": False}
    assert after_import == before
    assert lazy == {"plugins_loaded": False, "plugins_imported": False}  # plugins load lazily
    assert after_plugins == {"grad": True, "threads": 1}


def test_torch_nn_and_autograd_still_train_after_minidl_fit() -> None:
    torch.set_grad_enabled(True)
    fit_once(Tanh, "adam")
    assert torch.is_grad_enabled()
    torch.manual_seed(0)
    x = torch.rand(64, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    assert losses[-1] < 0.5 * losses[0]


class GradModeProbe(ModuleBase):
    """Records whether torch records gradients at each forward and backward."""

    def __init__(self) -> None:
        self.seen: list[bool] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(torch.is_grad_enabled())
        return x

    def backward(self, grad_output: Tensor) -> Tensor:
        self.seen.append(torch.is_grad_enabled())
        return grad_output


@pytest.mark.parametrize("caller_mode", [True, False])
def test_fit_evaluate_predict_record_no_graph_and_restore_the_callers_mode(
    caller_mode: bool,
) -> None:
    torch.manual_seed(0)
    probe = GradModeProbe()
    model = Sequential(Linear(2, 4), probe, Tanh(), Linear(4, 1))
    train, _ = minidl.registry.get("dataset", "disc")(seed=0, n_train=20, n_test=1)
    with torch.set_grad_enabled(caller_mode):
        minidl.fit(model, MSE(), SGD(model.parameters(), lr=0.1), train, epochs=1, batch_size=10)
        assert torch.is_grad_enabled() is caller_mode
        minidl.evaluate(model, MSE(), train)
        assert torch.is_grad_enabled() is caller_mode
        out = minidl.predict(model, train.x)
        assert torch.is_grad_enabled() is caller_mode
        with pytest.raises(minidl.DivergenceError):
            minidl.fit(model, MSE(), SGD(model.parameters(), lr=1e30), train, epochs=3)
        assert torch.is_grad_enabled() is caller_mode  # restored after an error too
    assert len(probe.seen) >= 6 and not any(probe.seen)
    assert out.grad_fn is None


def test_load_model_records_no_graph_and_restores_the_mode(tmp_path: Path) -> None:
    model = minidl.build("linear(3), tanh, linear(1)", (2,))
    minidl.save_model(model, tmp_path)
    with torch.enable_grad():
        loaded, _ = minidl.load_model(tmp_path)
        assert torch.is_grad_enabled()
    assert all(not p.data.requires_grad for p in loaded.parameters())
