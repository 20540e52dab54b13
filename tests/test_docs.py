"""The docs run: README.md and docs/*.md, one test per file.

In each file, fenced ```python blocks run in order in one namespace, and in each
```console block every line starting with ``$ `` runs as a shell command (the venv's bin
first on PATH) and must exit 0; other console lines are sample output, not compared. All
blocks of a file run in document order in one fresh temporary directory, so a command can
use a file an earlier Python block wrote. ``python skip`` / ``console skip`` blocks are
shown, not run. Registry, RNG and dtype changes made by a file are undone afterwards.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from test_registry import registry_state

ROOT = Path(__file__).resolve().parents[1]
FILES = [p for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))] if p.is_file()]
OPEN = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")


@dataclass
class Block:
    language: str
    skip: bool
    code: str
    line: int  # line number of the block's first content line in its file


def blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text (CommonMark fences, ``` or ~~~)."""
    found = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        fence, words = m["fence"], m["info"].split()
        close = re.compile(rf"^ {{0,3}}{fence[0]}{{{len(fence)},}}\s*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        indent = len(m["indent"])
        body = [line[indent:] if line[:indent].isspace() else line for line in lines[i + 1 : j]]
        found.append(
            Block(words[0] if words else "", "skip" in words[1:], "\n".join(body) + "\n", i + 2)
        )
        i = j + 1
    return found


def runnable(block: Block) -> bool:
    return block.language in ("python", "console") and not block.skip


def commands(block: Block) -> list[tuple[int, str]]:
    """(line, command) for each ``$ `` line; a trailing backslash continues a command."""
    result: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for offset, line in enumerate(block.code.splitlines()):
        if pending:
            pending.append(line)
        elif line.startswith("$ "):
            start, pending = block.line + offset, [line[2:]]
        else:
            continue
        if not line.endswith("\\"):
            result.append((start, "\n".join(pending)))
            pending = []
    if pending:
        result.append((start, "\n".join(pending)))
    return result


def run_file(path: Path, cwd: Path) -> None:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for block in blocks(path.read_text(encoding="utf-8")):
        if not runnable(block):
            continue
        if block.language == "python":
            # Padding keeps line numbers: a traceback points at the line in the .md file.
            code = compile("\n" * (block.line - 1) + block.code, str(path), "exec")
            exec(code, namespace)
            continue
        for line, command in commands(block):
            out = subprocess.run(
                command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=600
            )
            assert out.returncode == 0, (
                f"{path.name}:{line}: `{command}` exited {out.returncode}\n"
                f"stdout:\n{out.stdout[-3000:]}\nstderr:\n{out.stderr[-3000:]}"
            )


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)
    rng, dtype, grad = torch.get_rng_state(), torch.get_default_dtype(), torch.is_grad_enabled()
    with registry_state():
        yield tmp_path
    torch.set_rng_state(rng)
    torch.set_default_dtype(dtype)
    torch.set_grad_enabled(grad)


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_doc_examples_run(path: Path, isolated: Path) -> None:
    if not any(runnable(b) for b in blocks(path.read_text(encoding="utf-8"))):
        pytest.skip(f"{path.name} has no runnable blocks")
    run_file(path, isolated)


def test_the_core_docs_exist_and_run_something() -> None:
    for name in ("architecture.md", "api.md"):
        found = blocks((ROOT / "docs" / name).read_text(encoding="utf-8"))
        assert any(b.language == "python" and not b.skip for b in found), name


# ---------------------------------------------------------------------------- the runner itself

SAMPLE = """\
Text.

```python
x = 1
```

~~~console
$ echo one
one
$ echo two \\
  three
~~~

```python skip
raise SystemExit("never run")
```

  ```bash
  exit 1
  ```

````python
y = x + 1  # ``` inside a longer fence
````
"""


def test_blocks_are_found_with_languages_lines_and_skips() -> None:
    found = blocks(SAMPLE)
    assert [(b.language, b.skip, b.line) for b in found] == [
        ("python", False, 4),
        ("console", False, 8),
        ("python", True, 15),
        ("bash", False, 19),
        ("python", False, 23),
    ]
    assert found[3].code == "exit 1\n"
    assert [runnable(b) for b in found] == [True, True, False, False, True]
    assert commands(found[1]) == [(8, "echo one"), (10, "echo two \\\n  three")]


def test_runner_runs_blocks_and_reports_failures_at_their_line(tmp_path: Path) -> None:
    good = tmp_path / "good.md"
    good.write_text(
        SAMPLE + "\n```python\nassert y == 2\n```\n\n```console\n$ test -f made.txt\n```\n"
    )
    (tmp_path / "made.txt").write_text("")
    run_file(good, tmp_path)

    bad_python = tmp_path / "bad.md"
    bad_python.write_text("# t\n\n```python\na = 1\nraise ValueError('from the doc')\n```\n")
    with pytest.raises(ValueError, match="from the doc") as info:
        run_file(bad_python, tmp_path)
    assert info.traceback[-1].lineno + 1 == 5  # the raise is on line 5 of bad.md

    bad_console = tmp_path / "badc.md"
    bad_console.write_text("```console\n$ true\n$ false\n```\n")
    with pytest.raises(AssertionError, match="badc.md:3: `false` exited 1"):
        run_file(bad_console, tmp_path)
