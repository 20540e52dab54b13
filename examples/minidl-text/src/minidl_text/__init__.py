"""minidl-text: token sequences and a small transformer for minidl.

Layers ``causal_self_attention``, ``positional_embedding`` and ``transformer_block``
(minGPT's block, from minidl's built-in ``residual``, ``layernorm``, ``linear`` and
``gelu``), minGPT's ``addition`` and ``sort`` datasets of int64 tokens, and the
``minidl-run generate`` command. minidl imports this module through the entry point in
pyproject.toml and calls the hooks below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from minidl import hookimpl

from .attention import CausalSelfAttention
from .block import TransformerBlock
from .datasets import TASKS, addition, sort
from .positional import PositionalEmbedding

__version__ = "0.1.0"
__all__ = [
    "TASKS",
    "CausalSelfAttention",
    "PositionalEmbedding",
    "TransformerBlock",
    "addition",
    "sort",
]


@hookimpl
def register_layers(register: Callable[[str, Any], None]) -> None:
    register("causal_self_attention", CausalSelfAttention)
    register("positional_embedding", PositionalEmbedding)
    register("transformer_block", TransformerBlock)


@hookimpl
def register_datasets(register: Callable[[str, Any], None]) -> None:
    register("addition", addition)
    register("sort", sort)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .generate import generate  # the command's imports only when minidl-run starts

    cli.add_command(generate)
