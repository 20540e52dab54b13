"""Cost per training step as the network grows: minidl against its eager torch twin and
the twin under ``torch.compile``, for the MLP (width, batch), a convnet (image size,
channels) and the GPT (sequence length, width).

    python -m benchmarks.sizes                 # every family, eager and compiled twins
    python -m benchmarks.sizes --quick         # small sizes, no compiling (seconds)
    python -m benchmarks.sizes --family gpt    # one family
    python -m benchmarks.sizes --no-compile    # the eager twin only

One thread, float32, the thread's CPU time, the contenders in interleaved rounds
(benchmarks/contenders.py's :func:`interleave`), each cell the median over rounds. A step
is zero_grad, forward, loss, backward and the optimizer's step (Adam for the MLP and the
convnet, AdamW for the GPT). The ratio columns are the twin's time over minidl's (above 1:
minidl is faster). Each row names what bounds a step at that size, judged from the
per-step arithmetic (:func:`regime`): the fixed cost of the Python calls and small kernels
while the arithmetic is small, the matrix products once they dominate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as `python benchmarks/sizes.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"  # noqa: A001

import minidl  # noqa: E402
from minidl.plugins.datasets import disc  # noqa: E402

from . import convnet, gpt  # noqa: E402
from .contenders import (  # noqa: E402
    Contender,
    Net,
    Training,
    interleave,
    make_minidl,
    make_twin,
    twin_contender,
    twin_model,
    twin_optimizer,
)
from .twin import LOSSES, torch_optimizer, torch_twin  # noqa: E402

#: name -> builder of its contenders (minidl, twin, maybe "compiled twin")
Build = Callable[[bool], dict[str, Contender]]


@dataclass(frozen=True)
class Size:
    family: str
    label: str
    #: Multiply-adds of one forward pass (a step does about three times as many).
    macs: float
    build: Build


def regime(macs: float) -> str:
    """What bounds a step, from its arithmetic: under ~1 M multiply-adds a forward pass,
    the per-call cost (Python, dispatch, small kernels); beyond ~100 M, the matrix products
    (and the convolutions' im2col); in between, both, with the element-wise passes over
    memory (activations, normalisations, the optimizer) a visible share."""
    if macs < 1e6:
        return "Python/dispatch overhead"
    if macs < 1e8:
        return "mixed: overhead + memory-bound element-wise"
    return "matrix products"


def mlp_size(width: int, batch: int) -> Size:
    net = Net((2, width, width, width, 1))
    training = Training(net, "adam", 1e-3)

    def build(compiled: bool) -> dict[str, Contender]:
        data = disc(batch, torch.Generator().manual_seed(1))
        x, y = data.x, data.y
        out = {"minidl": make_minidl(training, x, y), "twin": make_twin(training, x, y)}
        if compiled:
            twin = twin_model(training)
            out["compiled twin"] = twin_contender(
                torch.compile(twin),  # type: ignore[arg-type]
                twin_optimizer(training, twin),
                LOSSES[type(minidl.create("loss", "mse"))],
                x,
                y,
            )
        return out

    macs = batch * (2 * width + 2 * width * width + width)
    return Size("mlp", f"mlp 2-{width}x3-1 b={batch}", macs, build)


def convnet_size(image: int, channels: int, batch: int) -> Size:
    spec = (
        f"conv2d({channels}, 3, padding=1), relu, maxpool2d(2), "
        f"conv2d({2 * channels}, 3, padding=1), relu, maxpool2d(2), flatten, linear(10)"
    )
    net = convnet.ConvNet(
        f"convnet {image}px c={channels}",
        spec,
        (3, image, image),
        batch,
        ("conv2d", "maxpool2d", "flatten"),
    )

    def build(compiled: bool) -> dict[str, Contender]:
        out = convnet.make_contenders(batch, net=net, only={"twin", "minidl"})
        if compiled:
            torch.manual_seed(0)  # make_contenders' weights and batch, again
            model = minidl.build(spec, net.input).train()
            generator = torch.Generator().manual_seed(1)
            x = torch.rand(batch, *net.input, generator=generator)
            y = torch.randint(0, convnet.CLASSES, (batch,), generator=generator)
            twin = torch_twin(model).train()
            optimizer = torch_optimizer("adam", twin.parameters(), convnet.LR)
            out["compiled twin"] = twin_contender(
                torch.compile(twin),  # type: ignore[arg-type]
                optimizer,
                LOSSES[type(minidl.create("loss", "cross_entropy"))],
                x,
                y,
            )
        return out

    pixels = image * image
    macs = batch * (pixels * 27 * channels + pixels / 4 * 9 * channels * 2 * channels)
    return Size("convnet", f"{net.name} b={batch}", macs, build)


def gpt_size(seq: int, width: int, batch: int) -> Size:
    heads = max(1, width // 64)
    size = gpt.GPTSize(f"T={seq} C={width}", 4, heads, width, seq, 64, batch, 1.0, 1)

    def build(compiled: bool) -> dict[str, Contender]:
        return gpt.make_contenders(size, batch, compiled=compiled)

    rows = batch * seq
    macs = 4 * (rows * 12 * width * width + 2 * batch * seq * seq * width) + rows * width * 64
    return Size("gpt", f"gpt 4x{width} T={seq} b={batch}", macs, build)


def sizes(family: str, quick: bool) -> list[Size]:
    if family == "mlp":
        if quick:
            return [mlp_size(16, 10), mlp_size(64, 100)]
        return [mlp_size(w, b) for w, b in ((25, 100), (128, 100), (256, 1000), (1024, 1000))]
    if family == "convnet":
        if quick:
            return [convnet_size(8, 8, 8)]
        return [convnet_size(s, c, 32) for s, c in ((8, 8), (16, 16), (32, 32))]
    if quick:
        return [gpt_size(8, 32, 4)]
    return [gpt_size(t, c, 16) for t, c in ((16, 64), (64, 128), (128, 256))]


def measure(size: Size, args: argparse.Namespace) -> dict[str, Any]:
    contenders = size.build(not args.no_compile)
    runners = {name: c.run for name, c in contenders.items()}
    warm: dict[str, float] = {}
    for name in list(runners):
        start = time.perf_counter()
        try:
            runners[name](2)
        except Exception as error:  # noqa: BLE001  # a compiler that fails is a result
            print(f"  {size.label}: {name} failed: {type(error).__name__}: {error}")
            del runners[name]
            continue
        warm[name] = time.perf_counter() - start
    # About --block seconds of minidl per round.
    start = time.thread_time()
    runners["minidl"](1)
    per_step = max(time.thread_time() - start, 1e-6)
    steps = max(1, round(args.block / per_step))
    times = interleave(runners, steps, args.rounds, time.thread_time)
    ratios = {
        name: statistics.median(t / m for t, m in zip(times[name], times["minidl"], strict=True))
        for name in times
        if name != "minidl"
    }
    return {
        "family": size.family,
        "size": size.label,
        "macs": size.macs,
        "regime": regime(size.macs),
        "step_us": {name: statistics.median(v) * 1e6 for name, v in times.items()},
        "over_minidl": ratios,
        "compile_s": warm.get("compiled twin"),
    }


def table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| size | forward MACs | minidl µs | twin µs | twin/minidl | compiled µs "
        "| compiled/minidl | bound by |",
        "|" + " --- |" * 8,
    ]
    for r in results:
        us, ratio = r["step_us"], r["over_minidl"]
        compiled = (
            (f"{us['compiled twin']:.0f}", f"{ratio['compiled twin']:.2f}x")
            if "compiled twin" in us
            else ("-", "-")
        )
        lines.append(
            f"| {r['size']} | {r['macs']:.2g} | {us['minidl']:.0f} | {us['twin']:.0f} "
            f"| {ratio['twin']:.2f}x | {compiled[0]} | {compiled[1]} | {r['regime']} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=("mlp", "convnet", "gpt", "all"), default="all")
    parser.add_argument("--quick", action="store_true", help="small sizes, 3 rounds, no compile")
    parser.add_argument("--no-compile", action="store_true", help="no torch.compile twin")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 7; quick 3)")
    parser.add_argument("--block", type=float, help="seconds of minidl per round (0.2)")
    args = parser.parse_args(argv)
    if args.quick:
        args.no_compile = True
    args.rounds = args.rounds or (3 if args.quick else 7)
    args.block = args.block or (0.01 if args.quick else 0.2)
    families = ("mlp", "convnet", "gpt") if args.family == "all" else (args.family,)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    results = []
    try:
        for family in families:
            reason = convnet.unavailable() if family == "convnet" else None
            reason = gpt.unavailable() if family == "gpt" else reason
            if reason:
                print(f"{family}: {reason}")
                continue
            for size in sizes(family, args.quick):
                results.append(measure(size, args))
                print("\n".join(table(results[-1:])[2:]), flush=True)
    finally:
        torch.set_num_threads(threads)
    print("\n" + "\n".join(table(results)))
    compiled = [r for r in results if r["compile_s"] is not None]
    if compiled:
        slowest = max(compiled, key=lambda r: r["compile_s"])
        print(
            f"\ntorch.compile's first steps took up to {slowest['compile_s']:.0f} s "
            f"({slowest['size']}), not counted in the cells."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
