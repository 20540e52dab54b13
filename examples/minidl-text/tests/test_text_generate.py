"""minidl-run generate: a saved model completes prompts greedily in its dataset's encoding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from minidl_text import PositionalEmbedding, TransformerBlock

import minidl
from minidl.cli import cli
from minidl.plugins import Embedding, LayerNorm, Linear


def saved_model(directory: Path, dataset: str, vocabulary: int, length: int) -> minidl.Sequential:
    torch.manual_seed(0)
    model = minidl.Sequential(
        Embedding(vocabulary, 8),
        PositionalEmbedding(8, length),
        TransformerBlock(8, 2),
        LayerNorm(8),
        Linear(8, vocabulary),
    )
    minidl.save_model(model, directory, metadata={"config": {"dataset": dataset}})
    return model


def greedy(model: minidl.Sequential, prompt: list[int], steps: int) -> list[int]:
    """The reference: the model's argmax token, appended, ``steps`` times."""
    tokens = list(prompt)
    for _ in range(steps):
        logits = model.eval().forward(torch.tensor([tokens]))
        tokens.append(int(logits[0, -1].argmax()))
    return tokens[len(prompt) :]


def generate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["generate", *args], prog_name="minidl-run")
    return result.exit_code, result.output


def test_generate_completes_additions(tmp_path: Path) -> None:
    model = saved_model(tmp_path, "addition", 10, 6)
    code, output = generate(str(tmp_path), "12+34", "7+5", "9999")
    assert code == 0, output
    lines = []
    for a, b, prompt in [(12, 34, [1, 2, 3, 4]), (7, 5, [0, 7, 0, 5]), (99, 99, [9, 9, 9, 9])]:
        answer = greedy(model, prompt, 3)
        lines.append(f"{a}+{b}={int(''.join(map(str, reversed(answer))))}")
    assert output.splitlines() == lines


def test_generate_completes_sorts_with_the_runs_settings(tmp_path: Path) -> None:
    model = saved_model(tmp_path, "sort(length=4, vocab=5)", 5, 7)
    code, output = generate(str(tmp_path), "4 1 3 0")
    assert code == 0, output
    assert output.strip() == f"4 1 3 0 -> {' '.join(map(str, greedy(model, [4, 1, 3, 0], 4)))}"


def test_generate_errors_name_the_problem(tmp_path: Path) -> None:
    saved_model(tmp_path / "add", "addition", 10, 6)
    code, output = generate(str(tmp_path / "add"), "123+4")
    assert code == 2 and "takes a prompt like '11+22'" in output
    saved_model(tmp_path / "disc", "disc", 10, 6)
    code, output = generate(str(tmp_path / "disc"), "1")
    assert (
        code == 2
        and "trained on the dataset 'disc'; generate completes prompts of addition, sort" in output
    )
    code, output = generate(str(tmp_path / "nothing"), "1")
    assert code != 0 and "no such directory" in output


@pytest.mark.parametrize("missing", [{}, {"config": {}}])
def test_generate_needs_the_runs_dataset(tmp_path: Path, missing: dict) -> None:
    model = minidl.Sequential(Embedding(10, 4), Linear(4, 10))
    minidl.save_model(model, tmp_path, metadata=missing)
    code, output = generate(str(tmp_path), "12+34")
    assert code == 2 and "does not record its dataset" in output
