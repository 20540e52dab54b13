"""The plugin's registration, and the rule that the package computes every gradient itself
(no torch.nn, torch.optim or autograd in its code)."""

from __future__ import annotations

import ast
from importlib.metadata import entry_points
from pathlib import Path

import minidl_text
import pytest

import minidl

SOURCE = Path(minidl_text.__file__).parent
FORBIDDEN = ("torch.nn", "torch.optim", "torch.autograd", "torch.func")
FORBIDDEN_NAMES = {"requires_grad", "requires_grad_", "enable_grad", "grad_fn", "retain_grad"}


def test_the_plugin_is_installed_and_registers_its_names() -> None:
    points = {e.name: e.value for e in entry_points(group="minidl")}
    assert points.get("text") == "minidl_text"
    assert minidl.registry.table("layer")["transformer_block"].plugin == "text"
    assert set(minidl.registry.table("dataset")) >= {"addition", "sort"}


@pytest.mark.parametrize("path", sorted(SOURCE.glob("*.py")), ids=lambda p: p.name)
def test_the_package_never_uses_torch_nn_optim_or_autograd(path: Path) -> None:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith(FORBIDDEN)]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(FORBIDDEN):
            found.append(node.module)
        elif isinstance(node, ast.Attribute):
            parts, n = [node.attr], node.value
            while isinstance(n, ast.Attribute):
                parts.append(n.attr)
                n = n.value
            if isinstance(n, ast.Name):
                dotted = ".".join([n.id, *reversed(parts)])
                if dotted.startswith(FORBIDDEN):
                    found.append(dotted)
            if node.attr in FORBIDDEN_NAMES:
                found.append(node.attr)
    assert not found, f"{path.name} uses {sorted(set(found))}"
