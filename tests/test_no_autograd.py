"""THE RULE: library code computes gradients by hand; autograd stays off.

Statically, no source file under core/, plugins/ or cli/ imports or names torch.nn,
torch.optim, torch.autograd or torch.func, or asks for gradients (requires_grad,
enable_grad, set_grad_enabled(True), grad_fn, retain_grad). A call to a torch tensor's
``.backward()`` cannot be told apart statically from a layer's own ``backward``, so a run
in a fresh interpreter replaces torch's backward entry points with ones that fail.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import minidl

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


CHANGES = [{}, {"activation": "tanh", "optimizer": "sgd", "lr": 0.1, "standardize": True}]
RUN = f"CHANGES = {CHANGES!r}\n" + textwrap.dedent(
    """
    import json
    import torch

    def forbidden(*args, **kwargs):
        raise AssertionError("library code used autograd")

    torch.Tensor.backward = forbidden
    torch.Tensor.requires_grad_ = forbidden
    torch.autograd.backward = forbidden
    torch.autograd.grad = forbidden

    assert torch.is_grad_enabled()
    import minidl
    assert not torch.is_grad_enabled(), "import minidl must switch autograd off"
    results = []
    for changes in CHANGES:
        r = minidl.run(epochs=2, n_train=100, n_test=100, **changes)
        assert not torch.is_grad_enabled()
        prediction = r.model(r.test.x)
        assert prediction.grad_fn is None and not prediction.requires_grad
        assert all(not p.data.requires_grad for p in r.model.parameters())
        results.append(r.history)
    print(json.dumps(results))
    """
)


def test_training_runs_with_autograd_switched_off(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", RUN],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    histories = json.loads(out.stdout)
    # The same numbers as a run in this process: the patched run trained, it did not just start.
    for changes, history in zip(CHANGES, histories, strict=True):
        expected = minidl.run(epochs=2, n_train=100, n_test=100, **changes).history
        assert history == expected  # JSON round-trips floats exactly
