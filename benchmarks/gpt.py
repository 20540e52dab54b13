"""One training step of a GPT: minidl (with the minidl-text plugin) against its torch.nn +
autograd + torch.optim twin, eager and ``torch.compile``-d, side by side in one process.

    python -m benchmarks.gpt                 # both sizes (about a minute)
    python -m benchmarks.gpt --size nano     # minGPT's gpt-nano on 2-digit additions
    python -m benchmarks.gpt --quick         # a smoke run (seconds; no compiled twin)
    python -m benchmarks.gpt --no-compile    # the eager twin only

Two sizes (:data:`SIZES`): minGPT's "gpt-nano" (3 layers, 3 heads, 48 wide) on the
addition task's 6 tokens of 10 digits, batch 64; and a larger one (4 layers, 4 heads, 256
wide, 128 tokens of 64, batch 16). The twin is written as a torch user writes a GPT
(:class:`TwinGPT`: ``nn.Embedding``, a learned position ``nn.Parameter``, pre-norm blocks of
``nn.LayerNorm``, ``nn.MultiheadAttention(batch_first=True)`` with a causal mask and an MLP
of ``nn.Linear``/``nn.GELU``, a final ``nn.LayerNorm`` and ``nn.Linear``), trained with
``F.cross_entropy`` and ``torch.optim.AdamW``, and loads minidl's ``state_dict``, so both
start from the same weights and train on the same batch. A step is zero_grad, forward,
loss, backward and the optimizer's step, on one thread, in float32. The contenders run in
interleaved rounds (benchmarks/contenders.py's :func:`interleave`); the table gives each
one's median time per step and the median over rounds of the per-round ratio twin/minidl.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

if __package__ in (None, ""):  # run as `python benchmarks/gpt.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"  # noqa: A001

import minidl  # noqa: E402

from .contenders import (  # noqa: E402
    Contender,
    interleave,
    step_contender,
    twin_contender,
)

LR = 3e-4
WEIGHT_DECAY = 0.01
LAYERS = ("embedding", "positional_embedding", "transformer_block", "layernorm")


@dataclass(frozen=True)
class GPTSize:
    name: str
    layers: int
    heads: int
    width: int
    seq: int
    vocab: int
    batch: int
    #: The target: the eager twin's step takes at least this many times minidl's.
    target: float
    #: Steps per round of ``python -m benchmarks.gpt``.
    steps: int

    def spec(self) -> str:
        blocks = ", ".join([f"transformer_block({self.heads})"] * self.layers)
        return (
            f"embedding({self.vocab}, {self.width}), positional_embedding({self.seq}), "
            f"{blocks}, layernorm, linear({self.vocab})"
        )

    def label(self, batch: int | None = None) -> str:
        return (
            f"gpt {self.name} {self.layers}x{self.width} T={self.seq} "
            f"b={self.batch if batch is None else batch} adamw"
        )


NANO = GPTSize("nano", 3, 3, 48, 6, 10, 64, target=1.5, steps=50)
LARGE = GPTSize("large", 4, 4, 256, 128, 64, 16, target=1.0, steps=3)
SIZES = {"nano": NANO, "large": LARGE}


def unavailable() -> str | None:
    """Why the GPT cannot be built here (the text plugin is not installed), or None."""
    registered = minidl.registry.table("layer")
    missing = [name for name in LAYERS if name not in registered]
    if not missing:
        return None
    return (
        f"skipped: the GPT needs the minidl-text plugin, whose layers ({', '.join(missing)}) "
        "are not registered here (pip install -e examples/minidl-text)"
    )


# --- the twin, as a torch user writes it --------------------------------------------------


class Block(nn.Module):
    """minGPT's pre-norm block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False, is_causal=True)[0]
        return x + self.mlp(self.ln_2(x))


class TwinGPT(nn.Module):
    def __init__(self, size: GPTSize) -> None:
        super().__init__()
        self.tok = nn.Embedding(size.vocab, size.width)
        self.pos = nn.Parameter(torch.zeros(size.seq, size.width))
        self.blocks = nn.ModuleList(Block(size.width, size.heads) for _ in range(size.layers))
        self.ln_f = nn.LayerNorm(size.width)
        self.head = nn.Linear(size.width, size.vocab)
        mask = torch.full((size.seq, size.seq), float("-inf")).triu(1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, ids: Tensor) -> Tensor:
        t = ids.shape[1]
        x = self.tok(ids) + self.pos[:t]
        mask = self.mask[:t, :t]
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.ln_f(x))


def twin_key(size: GPTSize, key: str) -> str:
    """The twin's name of a minidl state_dict key (the spec's: ``2.0.1.in_proj_weight``)."""
    index, _, rest = key.partition(".")
    i = int(index)
    if i == 0:
        return f"tok.{rest}"
    if i == 1:
        return "pos"
    if i == size.layers + 2:
        return f"ln_f.{rest}"
    if i == size.layers + 3:
        return f"head.{rest}"
    inner = {"0.0": "ln_1", "0.1": "attn", "1.0": "ln_2", "1.1": "mlp.0", "1.3": "mlp.2"}
    where, name = rest[:3], rest[4:]
    return f"blocks.{i - 2}.{inner[where]}.{name}"


def twin_state(size: GPTSize, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """minidl's state_dict under the twin's keys, in minidl's order."""
    return {twin_key(size, k): v.clone() for k, v in state.items()}


def sequence_loss(logits: Tensor, target: Tensor) -> Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


def make_models(
    size: GPTSize, batch: int, dtype: torch.dtype = torch.float32, seed: int = 0
) -> tuple[Any, TwinGPT, Tensor, Tensor]:
    """minidl's GPT and the twin holding the same weights, and one batch of (ids, targets)."""
    reason = unavailable()
    if reason:
        raise RuntimeError(reason)
    torch.manual_seed(seed)
    model = minidl.build(size.spec(), (size.seq,), torch.int64).to(dtype=dtype).train()
    twin = TwinGPT(size).to(dtype=dtype)
    twin.load_state_dict(twin_state(size, model.state_dict()))
    generator = torch.Generator().manual_seed(seed + 1)
    x = torch.randint(0, size.vocab, (batch, size.seq), generator=generator)
    y = torch.randint(0, size.vocab, (batch, size.seq), generator=generator)
    return model, twin.train(), x, y


def make_contenders(
    size: GPTSize,
    batch: int | None = None,
    dtype: torch.dtype = torch.float32,
    *,
    compiled: bool = True,
    only: set[str] | None = None,
) -> dict[str, Contender]:
    """minidl, the eager twin and (``compiled``) ``torch.compile(twin)``, from the same
    weights on the same batch; ``only`` these names, when given."""
    wanted = only if only is not None else {"minidl", "twin", "compiled twin"}
    model, twin, x, y = make_models(size, batch or size.batch, dtype)
    keys = list(twin_state(size, model.state_dict()))

    def in_minidl_order(net: nn.Module) -> Any:
        # The twin's parameters in minidl's order (its own order puts ``pos`` first).
        return lambda: torch.cat([net.state_dict()[k].flatten() for k in keys])

    contenders = {}
    if "twin" in wanted:
        optimizer = torch.optim.AdamW(twin.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
        contenders["twin"] = twin_contender(twin, optimizer, sequence_loss, x, y)
        contenders["twin"].weights = in_minidl_order(twin)
    if compiled and "compiled twin" in wanted:
        other = TwinGPT(size).to(dtype=dtype).train()
        other.load_state_dict(twin.state_dict())
        optimizer = torch.optim.AdamW(other.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
        net = torch.compile(other)
        contenders["compiled twin"] = twin_contender(net, optimizer, sequence_loss, x, y)  # type: ignore[arg-type]
        contenders["compiled twin"].weights = in_minidl_order(other)
    if "minidl" in wanted:
        optimizer = minidl.create(
            "optimizer", "adamw", model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY
        )
        loss = minidl.create("loss", "cross_entropy")
        contenders["minidl"] = step_contender(model, loss, optimizer, x, y)
    return contenders


def measure(args: argparse.Namespace, size: GPTSize) -> dict[str, Any]:
    torch.set_num_threads(1)
    batch = args.batch or size.batch
    contenders = make_contenders(size, batch, compiled=not args.no_compile)
    runners = {name: c.run for name, c in contenders.items()}
    steps = args.steps or size.steps
    warmup: dict[str, float] = {}
    for name, run in runners.items():
        start = time.perf_counter()
        try:
            run(args.warmup or steps)
        except Exception as error:  # noqa: BLE001  # a compiler that fails here is a result
            print(f"gpt {size.name}: {name} failed: {type(error).__name__}: {error}")
            warmup[name] = float("nan")
            continue
        warmup[name] = time.perf_counter() - start
    runners = {name: run for name, run in runners.items() if warmup[name] == warmup[name]}
    now = time.thread_time if args.clock == "cpu" else time.perf_counter
    times = interleave(runners, steps, args.rounds, now)
    per_round = {
        name: [t / m for t, m in zip(times[name], times["minidl"], strict=True)]
        for name in runners
        if name != "minidl"
    }
    ratios = {name: statistics.median(r) for name, r in per_round.items()}
    spread = {
        name: [min(r), *statistics.quantiles(r, n=4), max(r)] if len(r) > 1 else r * 5
        for name, r in per_round.items()
    }
    return {
        "size": size.name,
        "spec": size.spec(),
        "seq": size.seq,
        "batch": batch,
        "dtype": "float32",
        "clock": args.clock,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "steps_per_round": steps,
        "warmup_s": warmup,
        "step_us": {name: statistics.median(v) * 1e6 for name, v in times.items()},
        "over_minidl": ratios,
        "over_minidl_spread": spread,
        "target": size.target,
        "pass": ratios.get("twin", 0.0) >= size.target,
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"gpt {result['size']} step ({result['spec']}), batch {result['batch']}, "
        f"{result['dtype']}, 1 thread, {result['rounds']} rounds x "
        f"{result['steps_per_round']} steps, {result['clock']} clock",
        "",
        f"| {'contender':<14} | {'step (us)':>10} | {'this/minidl':>11} | "
        f"{'per round: min, quartiles, max':<30} | {'warm-up (s)':>11} |",
        f"|{'-' * 16}|{'-' * 12}|{'-' * 13}|{'-' * 32}|{'-' * 13}|",
    ]
    for name, us in result["step_us"].items():
        ratio = spread = ""
        if name != "minidl":
            ratio = f"{result['over_minidl'][name]:.2f}x"
            spread = ", ".join(f"{v:.2f}" for v in result["over_minidl_spread"][name])
        warm = result["warmup_s"][name]
        lines.append(f"| {name:<14} | {us:>10.1f} | {ratio:>11} | {spread:<30} | {warm:>11.1f} |")
    for name, warm in result["warmup_s"].items():
        if warm != warm:
            lines.append(f"| {name:<14} | failed: see above |")
    verdict = "meets" if result["pass"] else "MISSES"
    lines += [
        "",
        f"twin/minidl = {result['over_minidl'].get('twin', 0):.2f}: {verdict} the target "
        f">= {result['target']:g}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=(*SIZES, "all"), default="all")
    parser.add_argument("--batch", type=int, help="default: the size's (64, 16)")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--steps", type=int, help="steps per round (default: 50, 3)")
    parser.add_argument("--warmup", type=int, help="steps (default: as many as a round)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--no-compile", action="store_true", help="no torch.compile twin")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 3 rounds of 2 steps, no compile"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when a target is missed"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup, args.no_compile = 3, 2, 1, True
    reason = unavailable()
    if reason:
        print(f"gpt: {reason}")
        return 0
    sizes = list(SIZES.values()) if args.size == "all" else [SIZES[args.size]]
    results = []
    for size in sizes:
        results.append(measure(args, size))
        print(table(results[-1]) + "\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps({r["size"]: r for r in results}, indent=2) + "\n")
    return 1 if args.check and not all(r["pass"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
