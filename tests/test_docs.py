"""The docs run: README.md and docs/*.md, one test per file, and three completeness checks.

In each file, fenced ```python blocks run in order in one namespace, and in each
```console block every line starting with ``$ `` runs and must exit 0 (a trailing
backslash continues it); the other lines are sample output, not compared, except an
``exit code N`` line after a command ending in ``|| echo "exit code $?"``, which must be
the command's exit code. All blocks of a file run in document order in one fresh
temporary directory, so a command can use a file an earlier Python block wrote.
``python skip`` / ``console skip`` blocks are shown, not run.

A plain ``minidl-run ARGS`` command (optionally ``> FILE``, optionally
``|| echo "exit code $?"``) runs in this process, through click's test runner, on the
same click group the console script calls: a fresh process per command would cost a
second of ``import torch`` each, which is most of what the examples cost. Anything else
(pipes, ``;``, other programs, ``--nproc``, which starts processes of its own) runs in a
shell with the venv's bin first on PATH; ``NAME=value`` prefixes set the environment
either way. (The console script itself is tested in tests/test_cli_train.py.)

Registry, plugin commands, RNG, dtype, grad-mode and thread changes made by a file are
undone afterwards.

The completeness checks: every command and option flag that click knows appears in
docs/cli.md; every file a run, a sweep or a tuning writes into ``--out`` is a row of a
table there; every hook of ``minidl.hookspecs`` has a section in docs/plugins.md.
"""

from __future__ import annotations

import copy
import inspect
import os
import re
import shlex
import subprocess
import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
import torch

import minidl
from minidl.registry import PLUGINS_ENV

ROOT = Path(__file__).resolve().parents[1]
FILES = [p for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))] if p.is_file()]
OPEN = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")
CLI_DOC = ROOT / "docs" / "cli.md"
PLUGINS_DOC = ROOT / "docs" / "plugins.md"


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


IN_PROCESS = re.compile(
    r"^(?P<env>(?:[A-Z_][A-Z0-9_]*=[\w.,:-]* )*)"
    r"minidl-run (?P<args>[^;&|<>`$\\]*?)"
    r"(?: > (?P<out>[\w./-]+))?"
    r"(?P<echo> \|\| echo \"exit code \$\?\")?$"
)


ECHO = re.compile(r' \|\| echo "exit code \$\?"$')


def expected_code(block: Block, line: int) -> int | None:
    """The ``exit code N`` sample line right after the command on ``line``, if any."""
    following = block.code.splitlines()[line - block.line + 1 :]
    for text in following:
        if text.startswith("$ "):
            return None
        m = re.fullmatch(r"exit code (\d+)", text.strip())
        if m:
            return int(m[1])
    return None


@contextmanager
def as_a_new_process() -> Iterator[None]:
    """Within, the registry and ``minidl-run``'s commands are as a new process has them:
    no plugin loaded yet (the first lookup loads the installed ones), none blocked, none
    broken, so a command sees the plugins its own ``-p`` loads and no other. Afterwards,
    the very plugin objects the page had loaded are registered again (its classes stay
    the ones its models were built with), and the command's plugins are forgotten."""
    from minidl.cli import cli

    registry: Any = minidl.registry
    group: Any = cli
    plugins = list(registry.list_name_plugin())
    distinfo = list(registry._plugin_distinfo)
    stores = {k: copy.copy(getattr(registry, k)) for k in ("errors", "sources", "_warned")}
    loaded = registry._loaded
    commands = {k: copy.copy(getattr(group, k)) for k in ("commands", "_owners", "_hooked")}
    modules = {k: m for k, m in sys.modules.items() if k.startswith("minidl_plugin_")}

    def clear() -> None:
        registry.reset()
        for key in commands:
            getattr(group, key).clear()

    clear()
    try:
        yield
    finally:
        clear()
        for name, plugin in plugins:
            if plugin is not None:
                registry.register(plugin, name=name)
        for name, plugin in plugins:
            if plugin is None:
                registry.set_blocked(name)
        registry._plugin_distinfo.extend(distinfo)
        for key, value in stores.items():
            getattr(registry, key).update(value)
        registry._loaded = loaded
        for key, value in commands.items():
            getattr(group, key).update(value)
        for name in [k for k in sys.modules if k.startswith("minidl_plugin_")]:
            del sys.modules[name]
        sys.modules.update(modules)


def run_in_process(match: re.Match[str], cwd: Path) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from minidl.cli import cli

    with as_a_new_process(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = dict(item.split("=", 1) for item in match["env"].split())
        result = CliRunner().invoke(
            cli, shlex.split(match["args"]), prog_name="minidl-run", env=env
        )
    # As the console script shows them (minidl.cli.main): one line each, on stderr.
    stderr = "".join(f"Warning: {w.message}\n" for w in caught) + result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        trace = traceback.format_exception(result.exception)
        stderr += "".join(trace)
    if match["out"]:
        (cwd / match["out"]).write_text(result.stdout, encoding="utf-8")
    return result.exit_code, result.stdout, stderr


def run_in_shell(command: str, cwd: Path) -> tuple[int, str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")  # tiny matrices; kinder to a machine running -n 2
    out = subprocess.run(
        command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    return out.returncode, out.stdout, out.stderr


def run_file(path: Path, cwd: Path) -> None:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    for block in blocks(path.read_text(encoding="utf-8")):
        if not runnable(block):
            continue
        if block.language == "python":
            # Padding keeps line numbers: a traceback points at the line in the .md file.
            compiled = compile("\n" * (block.line - 1) + block.code, str(path), "exec")
            exec(compiled, namespace)
            continue
        for line, command in commands(block):
            flat = command.replace("\\\n", " ")
            match = IN_PROCESS.match(" ".join(flat.split())) if "--nproc" not in flat else None
            code, stdout, stderr = (
                run_in_process(match, cwd) if match else run_in_shell(command, cwd)
            )
            where = f"{path.name}:{line}: `{command}`"
            details = f"\nstdout:\n{stdout[-3000:]}\nstderr:\n{stderr[-3000:]}"
            wanted = expected_code(block, line) if ECHO.search(flat) else None
            if match and match["echo"]:  # in this process: the code the shell would echo
                assert wanted in (None, code), f"{where} exited {code}, not {wanted}{details}"
                continue
            assert code == 0, f"{where} exited {code}{details}"
            echoed = re.findall(r"^exit code (\d+)$", stdout, re.M)
            assert wanted is None or echoed[-1:] == [str(wanted)], (
                f"{where} echoed {echoed}, not exit code {wanted}{details}"
            )


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugin: Any) -> Iterator[Path]:
    """A fresh directory and a registry as a new process has it; afterwards the registry
    (the ``plugin`` fixture resets it), the commands plugins added to ``minidl-run``, the
    modules of one-file plugins, the global RNG, the default dtype, grad mode and thread
    count are as they were."""
    from minidl.cli import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # a page may import a module it wrote
    monkeypatch.delenv(PLUGINS_ENV, raising=False)
    group: Any = cli
    saved = dict(group.commands), dict(group._owners), set(group._hooked)
    modules = set(sys.modules)
    rng, dtype, grad = torch.get_rng_state(), torch.get_default_dtype(), torch.is_grad_enabled()
    threads = torch.get_num_threads()
    minidl.registry.reset()
    try:
        yield tmp_path
    finally:
        torch.set_rng_state(rng)
        torch.set_default_dtype(dtype)
        torch.set_grad_enabled(grad)
        torch.set_num_threads(threads)
        for attribute, value in zip(("commands", "_owners", "_hooked"), saved, strict=True):
            getattr(group, attribute).clear()
            getattr(group, attribute).update(value)
        for name in set(sys.modules) - modules:
            if name.startswith("minidl_plugin_"):
                del sys.modules[name]


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_doc_examples_run(path: Path, isolated: Path) -> None:
    if not any(runnable(b) for b in blocks(path.read_text(encoding="utf-8"))):
        pytest.skip(f"{path.name} has no runnable blocks")
    run_file(path, isolated)


def test_the_core_docs_exist_and_run_something() -> None:
    for name in ("architecture.md", "api.md", "cli.md", "plugins.md"):
        found = blocks((ROOT / "docs" / name).read_text(encoding="utf-8"))
        assert any(runnable(b) for b in found), name


# ------------------------------------------------------------------------- completeness


def mentions(text: str, word: str) -> bool:
    """``word`` as a whole token: ``--out`` is not found inside ``--output``."""
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def flags(command: click.Command, ctx: click.Context) -> list[str]:
    found = []
    for param in command.get_params(ctx):  # the help option included
        if isinstance(param, click.Option):
            found += [*param.opts, *param.secondary_opts]
    return found


def test_every_command_and_option_is_in_cli_md() -> None:
    from minidl.cli import cli
    from minidl.cli.app import COMMANDS

    text = CLI_DOC.read_text(encoding="utf-8")
    ctx = click.Context(cli, info_name="minidl-run")
    assert set(COMMANDS) <= set(cli.list_commands(ctx))
    missing = [f"minidl-run {flag}" for flag in flags(cli, ctx) if not mentions(text, flag)]
    for name in COMMANDS:  # the built-in ones: an installed plugin's are its own to document
        command = cli.get_command(ctx, name)
        assert command is not None, name
        if not re.search(rf"minidl-run {name}\b|`{name}`", text):
            missing.append(name)
        sub = click.Context(command, info_name=name, parent=ctx)
        missing += [f"{name} {flag}" for flag in flags(command, sub) if not mentions(text, flag)]
        for argument in (p for p in command.params if isinstance(p, click.Argument)):
            if not mentions(text, argument.make_metavar(sub).split()[0].strip("[].")):
                missing.append(f"{name} {argument.name}")
    assert not missing, f"docs/cli.md does not mention: {', '.join(missing)}"


def table_names(text: str) -> set[str]:
    """The backticked names in the first cell of each Markdown table row."""
    names = set()
    for line in text.splitlines():
        if line.startswith("|"):
            first = line.strip("|").split("|")[0]
            names.update(re.findall(r"`([^`]+)`", first))
    return names


def out_files() -> set[str]:
    """Every file name ``train``, ``sweep`` and ``tune`` write into ``--out``: the FILES
    tables of the code, and the names its writers spell out (``diagnostics-ROW.png`` for
    the per-row plots whose name holds the row's label)."""
    from minidl.cli import checkpoint, results

    names = set(results.FILES) | {checkpoint.CHECKPOINT}
    for module_name in ("minidl.cli.tables", "minidl.cli.sweep", "minidl.cli.tune"):
        try:
            module = __import__(module_name, fromlist=["_"])
        except ImportError:
            continue
        names |= set(getattr(module, "FILES", {}))
        source = inspect.getsource(module)
        names |= set(re.findall(r"[\"']([a-z_]+\.(?:json|csv|md|png|safetensors))[\"']", source))
        if re.search(r"f[\"']diagnostics-\{", source):
            names.add("diagnostics-ROW.png")
    return names


def test_every_out_file_is_in_the_cli_md_tables() -> None:
    documented = table_names(CLI_DOC.read_text(encoding="utf-8"))
    missing = sorted(out_files() - documented)
    assert not missing, f"docs/cli.md's --out tables lack: {', '.join(missing)}"


def test_every_hook_is_documented_in_plugins_md() -> None:
    from minidl import hookspecs

    text = PLUGINS_DOC.read_text(encoding="utf-8")
    hooks = [
        name
        for name, f in vars(hookspecs).items()
        if callable(f) and hasattr(f, "minidl_spec")  # marked with @hookspec
    ]
    assert hooks, "no hooks found in minidl.hookspecs"
    missing = [h for h in hooks if not re.search(rf"^#+ .*`{h}\(", text, re.M)]
    assert not missing, f"docs/plugins.md has no section for: {', '.join(missing)}"


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


def test_minidl_run_lines_run_in_process_as_a_new_process_would(
    tmp_path: Path, isolated: Path
) -> None:
    assert IN_PROCESS.match('minidl-run train --model "linear(2), relu" > out.json')
    assert IN_PROCESS.match('minidl-run train --lr -1 || echo "exit code $?"')
    assert IN_PROCESS.match("MINIDL_PLUGINS= minidl-run plugins --json > none.json")
    for shell in ("minidl-run plugins | head", "minidl-run train; ls", "ls"):
        assert not IN_PROCESS.match(shell), shell

    (tmp_path / "mine.py").write_text(
        "def register_schedules(register):\n    register('mine', None)\n"
    )
    page = tmp_path / "page.md"
    page.write_text(
        "```console\n"
        "$ minidl-run plugins --json > plugins.json\n"
        '$ minidl-run train --lr -1 || echo "exit code $?"\n'
        "Error: ...\n"
        "exit code 2\n"
        '$ minidl-run -p mine.py plugins || echo "exit code $?"\n'
        "$ MINIDL_PLUGINS= minidl-run plugins --json > none.json\n"
        "```\n"
    )
    run_file(page, tmp_path)
    assert '"plugins"' in (tmp_path / "plugins.json").read_text()
    assert '"vision"' not in (tmp_path / "none.json").read_text()  # no installed plugin loaded
    # A command's own plugins do not outlive it, and a broken one left no error behind.
    assert not any("mine.py" in name for name, _ in minidl.registry.list_name_plugin())
    assert minidl.registry.errors == {}

    page.write_text(
        '```console\n$ minidl-run train --lr -1 || echo "exit code $?"\nexit code 1\n```\n'
    )
    with pytest.raises(AssertionError, match="page.md:2: .* exited 2, not 1"):
        run_file(page, tmp_path)


def test_the_completeness_checks_find_what_is_missing() -> None:
    assert mentions("use --out DIR", "--out") and not mentions("use --output", "--out")
    assert table_names("| `a.json`, `b.csv` | x |\n|---|---|\n| c | `d.png` |") == {
        "a.json",
        "b.csv",
    }
