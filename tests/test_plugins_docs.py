"""Every hook has a docstring and a section in docs/plugins.md, with its real signature."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from minidl import hookspecs, registry

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def hooks() -> list[str]:
    names = [
        name
        for name, value in vars(hookspecs).items()
        if inspect.isfunction(value) and hasattr(value, "minidl_spec")
    ]
    assert names, "found no hookspecs: the marker attribute changed?"
    return names


def test_the_registry_knows_every_hook() -> None:
    assert sorted(registry.HOOKS) == sorted(hooks())


@pytest.mark.parametrize("name", hooks())
def test_hook_has_a_docstring(name: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, name))
    assert doc and len(doc.split()) >= 8, f"hookspecs.{name} needs a docstring that explains it"


@pytest.mark.parametrize("name", hooks())
def test_hook_is_documented_with_its_signature(name: str) -> None:
    arguments = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
    heading = f"### `{name}({arguments})`"
    text = DOC.read_text(encoding="utf-8")
    assert heading in text, f"docs/plugins.md has no section {heading!r}"
    section = text.split(heading, 1)[1].split("\n#", 1)[0]
    assert len(re.findall(r"\w+", section)) >= 15, f"the section for {name} says too little"
