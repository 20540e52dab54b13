"""``minidl-run generate RUN_DIR PROMPT...``: greedy completion with a saved text model."""

from __future__ import annotations

from pathlib import Path

import click
import torch

import minidl
from minidl.spec import parse_one

from .datasets import TASKS


def complete(model: minidl.Module, prompt: list[int], length: int) -> list[int]:
    """``length`` tokens after ``prompt``, each the model's most likely next token."""
    ids = torch.tensor([prompt], dtype=torch.int64)
    for _ in range(length):
        logits = minidl.predict(model, ids)  # (1, T, vocabulary)
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True).to(ids.device)], 1)
    return [int(t) for t in ids[0, len(prompt) :].tolist()]


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.argument("prompts", nargs=-1, required=True, metavar="PROMPT...")
def generate(run_dir: str, prompts: tuple[str, ...]) -> None:
    """Complete each PROMPT with the model of RUN_DIR (saved by `minidl-run train --out
    RUN_DIR` on the addition or sort dataset), one greedy token at a time, in the
    dataset's own encoding: `12+34` (or `1234`) for addition, `201102` or "2 0 1 1 0 2" for
    sort."""
    model, metadata = minidl.load_model(run_dir)
    config = metadata.get("config")
    spec = config.get("dataset") if isinstance(config, dict) else None
    if not isinstance(spec, str):
        raise click.UsageError(f"{Path(run_dir)}: the saved run does not record its dataset")
    item = parse_one(spec, "dataset")
    task = TASKS.get(item.name)
    if task is None:
        raise click.UsageError(
            f"{Path(run_dir)} was trained on the dataset {item.name!r}; generate completes "
            f"prompts of {', '.join(sorted(TASKS))}"
        )
    for text in prompts:
        try:
            tokens = task.prompt(text, **item.kwargs)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="'PROMPT'") from None
        answer = complete(model, tokens, task.answer_length(**item.kwargs))
        click.echo(task.show(tokens, answer, **item.kwargs))
