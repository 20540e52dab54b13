"""One training step of a convnet: minidl (with the minidl-vision plugin) against its
torch.nn + autograd + torch.optim twin, side by side in one process.

    python -m benchmarks.convnet                # the digits convnet (about 20 seconds)
    python -m benchmarks.convnet --net mnist    # pytorch/examples' MNIST net (about 40 s)
    python -m benchmarks.convnet --net all      # the three, one after the other
    python -m benchmarks.convnet --quick        # a smoke run (seconds)

Three networks (:data:`NETS`): the digits convnet on 8x8 one-channel images, the MNIST
network of pytorch/examples (conv 32, conv 64, max-pool, linear 128) on 1x28x28, and a
CIFAR-sized one (two conv + batchnorm + pool blocks, linear) on 3x32x32. Both contenders
start from the same weights (the twin is benchmarks/twin.py's, which loads minidl's
state_dict) and train on the same batch with cross-entropy and Adam, on one thread. A step
is zero_grad, forward, loss, backward and the optimizer's step. The contenders run in
interleaved rounds, each in turn with the order rotating; the table gives each one's
median time per step and the median over rounds of the per-round ratio twin/minidl
(above 1: minidl is faster).

This module is the one place of the convnet contenders: ``python -m benchmarks.bench``
times the same ones in its convnet rows. Without the minidl-vision plugin's layers
registered, both say so and skip them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as `python benchmarks/convnet.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"  # noqa: A001

import minidl  # noqa: E402

from .contenders import (  # noqa: E402
    Contender,
    fit_contender,
    interleave,
    step_contender,
    twin_contender,
)
from .twin import LOSSES, TWINS, torch_optimizer, torch_twin  # noqa: E402

CLASSES = 10
LR = 1e-3
#: The target: the twin's step takes at least this many times minidl's.
TARGET = 1.0


@dataclass(frozen=True)
class ConvNet:
    """A benchmarked network: its spec, one image's shape, and the batch it trains on."""

    name: str
    spec: str
    input: tuple[int, int, int]
    batch: int
    #: The registered layers the spec needs (the vision plugin's, and dropout).
    layers: tuple[str, ...]
    #: Steps per round of ``python -m benchmarks.convnet`` (a step of the big ones: 0.1 s).
    steps: int = 100

    def label(self, batch: int | None = None) -> str:
        return f"{self.name} b={self.batch if batch is None else batch} adam"


DIGITS = ConvNet(
    "convnet",
    "conv2d(16, 3, padding=1), batchnorm2d(16), relu, maxpool2d(2), "
    "conv2d(32, 3, padding=1), batchnorm2d(32), relu, maxpool2d(2), "
    "flatten, dropout(0.25), linear(10)",
    (1, 8, 8),
    64,
    ("conv2d", "batchnorm2d", "maxpool2d", "flatten", "dropout"),
)
#: pytorch/examples' mnist/main.py network, without its dropout.
MNIST = ConvNet(
    "mnist convnet",
    "conv2d(32, 3), relu, conv2d(64, 3), relu, maxpool2d(2), flatten, "
    "linear(128), relu, linear(10)",
    (1, 28, 28),
    64,
    ("conv2d", "maxpool2d", "flatten"),
    steps=3,
)
CIFAR = ConvNet(
    "cifar convnet",
    "conv2d(32, 3, padding=1), batchnorm2d(32), relu, maxpool2d(2), "
    "conv2d(64, 3, padding=1), batchnorm2d(64), relu, maxpool2d(2), flatten, linear(10)",
    (3, 32, 32),
    128,
    ("conv2d", "batchnorm2d", "maxpool2d", "flatten"),
    steps=3,
)
NETS = {"digits": DIGITS, "mnist": MNIST, "cifar": CIFAR}
#: The digits convnet's, as before there were three.
SPEC, INPUT, BATCH = DIGITS.spec, DIGITS.input, DIGITS.batch
#: Every layer of the vision plugin some network needs.
VISION_LAYERS = tuple(dict.fromkeys(name for net in NETS.values() for name in net.layers))


def unavailable(net: ConvNet = DIGITS) -> str | None:
    """Why ``net`` cannot be built here (the vision plugin's layers are not registered),
    or None when it can."""
    registered = minidl.registry.table("layer")
    missing = [name for name in net.layers if name not in registered]
    if not missing:
        return None
    return (
        f"skipped: the convnet needs the minidl-vision plugin, whose layers "
        f"({', '.join(missing)}) are not registered here "
        "(pip install -e examples/minidl-vision)"
    )


def add_twins() -> None:
    """The vision layers' torch.nn builders, added to benchmarks/twin.py's TWINS, as a
    plugin's layers join the twin."""
    nn = torch.nn

    def layer(name: str) -> type:
        return minidl.registry.get("layer", name)  # type: ignore[no-any-return]

    builders: dict[str, Callable[[Any], torch.nn.Module]] = {
        "conv2d": lambda m: nn.Conv2d(
            m.in_channels,
            m.out_channels,
            m.kernel_size,
            m.stride,
            m.padding,
            bias=m.bias is not None,
        ),
        "batchnorm2d": lambda m: nn.BatchNorm2d(m.num_features, m.eps, m.momentum),
        "maxpool2d": lambda m: nn.MaxPool2d(m.kernel_size, m.stride),
        "flatten": lambda m: nn.Flatten(),
        "dropout": lambda m: nn.Dropout(m.p),
    }
    registered = minidl.registry.table("layer")
    for name, build in builders.items():
        if name in registered:  # dropout may come from another plugin, or none
            TWINS.setdefault(layer(name), build)


def make_contenders(
    batch: int = BATCH,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    *,
    fit_steps_per_epoch: int | None = None,
    net: ConvNet = DIGITS,
    only: Collection[str] | None = None,
) -> dict[str, Contender]:
    """The twin, minidl (a user's step), "minidl fit step" (the step minidl.fit takes:
    the first layer skips the gradient with respect to the data) and, given
    ``fit_steps_per_epoch``, "fit" (minidl.fit itself), all from the same weights, on the
    same batch; ``only`` these names, when given (a memory probe builds one)."""
    reason = unavailable(net)
    if reason:
        raise RuntimeError(reason)
    add_twins()
    wanted = set(only) if only is not None else {"twin", "minidl", "minidl fit step", "fit"}
    torch.manual_seed(0)
    model = minidl.build(net.spec, net.input).to(device=device, dtype=dtype).train()
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(batch, *net.input, generator=generator).to(device=device, dtype=dtype)
    y = torch.randint(0, CLASSES, (batch,), generator=generator).to(device)

    def minidl_parts(copy: bool) -> tuple[Any, Any, Any]:
        m = model
        if copy:
            m = minidl.build(net.spec, net.input).to(device=device, dtype=dtype).train()
            m.load_state_dict(model.state_dict())
        optimizer = minidl.create("optimizer", "adam", m.parameters(), lr=LR)
        return m, minidl.create("loss", "cross_entropy"), optimizer

    contenders = {}
    if "twin" in wanted:
        twin = torch_twin(model).train()
        # Default settings, as a user writes it (on the CPU, torch.optim picks its
        # per-tensor loop).
        twin_optimizer = torch_optimizer("adam", twin.parameters(), LR)
        loss = LOSSES[type(minidl.create("loss", "cross_entropy"))]
        contenders["twin"] = twin_contender(twin, twin_optimizer, loss, x, y)
    if "minidl" in wanted:
        contenders["minidl"] = step_contender(*minidl_parts(copy=False), x, y)
    if "minidl fit step" in wanted:
        parts = minidl_parts(copy=True)
        contenders["minidl fit step"] = step_contender(*parts, x, y, parameters_only=True)
    if fit_steps_per_epoch and "fit" in wanted:
        contenders["fit"] = fit_contender(*minidl_parts(copy=True), x, y, fit_steps_per_epoch)
    return contenders


def clock(name: str) -> Callable[[], float]:
    """The thread's CPU time by default: on a shared machine, wall time also counts the
    moments other processes hold the core."""
    return time.thread_time if name == "cpu" else time.perf_counter


def measure(args: argparse.Namespace, net: ConvNet) -> dict[str, Any]:
    torch.set_num_threads(1)
    # --quick: the big networks at batch 8 (their step takes 0.1 s at their own).
    batch = args.batch or (8 if args.quick and net.steps < DIGITS.steps else net.batch)
    contenders = make_contenders(batch, getattr(torch, args.dtype), net=net)
    runners = {name: c.run for name, c in contenders.items()}
    steps = args.steps or net.steps
    for run in runners.values():
        run(args.warmup or steps)
    times = interleave(runners, steps, args.rounds, clock(args.clock))
    per_round = {
        name: [t / m for t, m in zip(times["twin"], times[name], strict=True)]
        for name in runners
        if name != "twin"
    }
    ratios = {name: statistics.median(r) for name, r in per_round.items()}
    # The spread of the per-round ratios: on a shared machine, the noise to read them by.
    spread = {
        name: [min(r), *statistics.quantiles(r, n=4), max(r)] if len(r) > 1 else r * 5
        for name, r in per_round.items()
    }
    return {
        "net": net.name,
        "spec": net.spec,
        "input": list(net.input),
        "batch": batch,
        "dtype": args.dtype,
        "clock": args.clock,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "steps_per_round": steps,
        "step_us": {name: statistics.median(v) * 1e6 for name, v in times.items()},
        "twin_over": ratios,
        "twin_over_spread": spread,
        "target": TARGET,
        "pass": ratios["minidl"] >= TARGET,
    }


def table(result: dict[str, Any]) -> str:
    shape = "x".join(map(str, result.get("input", INPUT)))
    lines = [
        f"{result.get('net', 'convnet')} step, {shape} images, batch {result['batch']}, "
        f"{result['dtype']}, 1 thread, {result['rounds']} rounds x "
        f"{result['steps_per_round']} steps, {result['clock']} clock",
        "",
        f"| {'contender':<16} | {'step (us)':>10} | {'twin/this':>9} | {'per round: min, quartiles, max':<30} |",
        f"|{'-' * 18}|{'-' * 12}|{'-' * 11}|{'-' * 32}|",
    ]
    for name, us in result["step_us"].items():
        ratio = spread = ""
        if name != "twin":
            ratio = f"{result['twin_over'][name]:.2f}x"
            spread = ", ".join(f"{v:.2f}" for v in result["twin_over_spread"][name])
        lines.append(f"| {name:<16} | {us:>10.1f} | {ratio:>9} | {spread:<30} |")
    verdict = "meets" if result["pass"] else "MISSES"
    lines += [
        "",
        f"twin/minidl = {result['twin_over']['minidl']:.2f}: {verdict} the target >= {TARGET:g}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--net", choices=(*NETS, "all"), default="digits")
    parser.add_argument("--batch", type=int, help="default: the network's (64, 64, 128)")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument(
        "--steps", type=int, help="steps per round (default: 100 for digits, 3 for the others)"
    )
    parser.add_argument("--warmup", type=int, help="steps (default: as many as a round)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 rounds of 5 steps")
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when a target is missed"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup = 3, 5, 3
    nets = list(NETS.values()) if args.net == "all" else [NETS[args.net]]
    reason = unavailable(nets[0]) or next(filter(None, map(unavailable, nets)), None)
    if reason:
        print(f"convnet: {reason}")
        return 0
    results = []
    for net in nets:
        results.append(measure(args, net))
        print(table(results[-1]) + "\n", flush=True)
    if args.json:
        written = results[0] if len(results) == 1 else {r["net"]: r for r in results}
        args.json.write_text(json.dumps(written, indent=2) + "\n")
    return 1 if args.check and not all(r["pass"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
