"""Run in a subprocess by the benchmark: train a network and report resident memory.

By default the seed's network: prints one JSON line, RSS after the first ``--early``
epochs and after ``--epochs``, and the peak RSS of the process (Linux's VmHWM; ru_maxrss
elsewhere).

With ``--convnet NAME --contender twin|minidl`` (or ``--gpt nano|large``, or ``--mlp
WIDTH``): one contender alone in this process. After the imports it notes the RSS and
resets the peak (Linux's /proc/self/clear_refs), builds the network, the optimizer and the
batch, takes ``--steps`` training steps, and prints the peak above that start: the
weights, gradients, optimizer state and batch, and at the top of a step what its forward
keeps for backward and what its backward makes. Compare contenders under one
``PYTHONHASHSEED`` (the benchmark sets 0): the hash seed moves some allocations, and with
them the heap's gaps and the peak, by up to 50 MB.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def rss_mb() -> dict[str, float]:
    """Current and peak resident set size in MB."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return {
            k: int(fields[v].split()[0]) / 1024 for k, v in (("rss", "VmRSS"), ("peak", "VmHWM"))
        }
    except OSError:  # not Linux: only the peak is known (bytes on macOS, KB elsewhere)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak_mb = peak / 2**20 if sys.platform == "darwin" else peak / 1024
        return {"rss": peak_mb, "peak": peak_mb}


def reset_peak() -> bool:
    """Start VmHWM again from the current RSS (Linux 4.0 and later); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_of_training(build: Callable[[], Any], steps: int, **labels: Any) -> dict[str, Any]:
    """Note the RSS, reset the peak, ``build()`` a contender's ``run`` and take ``steps``
    steps with it: the peak above that start, with ``labels``."""
    start = rss_mb()["rss"]
    reset = reset_peak()
    build()(steps)
    peak = rss_mb()["peak"]
    return {
        **labels,
        "steps": steps,
        "rss_start_mb": start,
        "peak_mb": peak,
        # Without a reset, the peak may be the imports' (ru_maxrss): an upper bound.
        "training_peak_mb": peak - start,
        "peak_reset": reset,
    }


def convnet_step(name: str, contender: str, batch: int | None, steps: int) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import convnet

    net = convnet.NETS[name]
    batch = batch or net.batch
    convnet.add_twins()  # registers the plugin's layers: imports done, like for like
    return peak_of_training(
        lambda: convnet.make_contenders(batch, net=net, only=[contender])[contender].run,
        steps,
        net=name,
        contender=contender,
        batch=batch,
    )


def gpt_step(name: str, contender: str, batch: int | None, steps: int) -> dict[str, Any]:
    """As :func:`convnet_step`, for a GPT of benchmarks/gpt.py's SIZES."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import gpt

    size = gpt.SIZES[name]
    batch = batch or size.batch
    return peak_of_training(
        lambda: gpt.make_contenders(size, batch, compiled=False, only={contender})[contender].run,
        steps,
        gpt=name,
        contender=contender,
        batch=batch,
    )


def mlp_step(width: int, contender: str, batch: int | None, steps: int) -> dict[str, Any]:
    """As :func:`convnet_step`, for the MLP 2-W-W-W-1 (ReLU, sigmoid output, MSE, Adam at
    1e-3) at batch 1,000 by default. Both contenders are built in either case (the twin
    starts from minidl's weights), as the GPT's probe builds both: like for like."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.contenders import Net, Training, make_minidl, make_twin

    batch = batch or 1000
    training = Training(Net((2, width, width, width, 1)), "adam", 1e-3)
    x = torch.rand(batch, 2, generator=torch.Generator().manual_seed(1))
    y = ((x - 0.5).pow(2).sum(1, keepdim=True) < 0.16).float()

    def build() -> Any:
        built = {"minidl": make_minidl(training, x, y), "twin": make_twin(training, x, y)}
        return built[contender].run

    return peak_of_training(build, steps, mlp=width, contender=contender, batch=batch)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--early", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--convnet", help="a network of benchmarks/convnet.py's NETS")
    parser.add_argument("--gpt", help="a size of benchmarks/gpt.py's SIZES (nano, large)")
    parser.add_argument("--mlp", type=int, metavar="WIDTH", help="the MLP 2-W-W-W-1")
    parser.add_argument("--contender", choices=("twin", "minidl"), default="minidl")
    parser.add_argument("--batch", type=int, help="default: the network's")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.gpt:
        print(json.dumps(gpt_step(args.gpt, args.contender, args.batch, args.steps)))
        return
    if args.mlp:
        print(json.dumps(mlp_step(args.mlp, args.contender, args.batch, args.steps)))
        return
    if args.convnet:
        print(json.dumps(convnet_step(args.convnet, args.contender, args.batch, args.steps)))
        return
    from minidl.cli.experiment import run

    start = rss_mb()
    seen: dict[str, Any] = {}

    def probe(record: dict[str, Any], model: Any) -> None:
        if record["epoch"] in (args.early, args.epochs):
            seen[str(record["epoch"])] = rss_mb()

    # The seed's experiment (Adam, ReLU, 2-25-25-25-1, 1000 points, batch 100), evaluated
    # on train and test data after every epoch as `minidl-run train` does.
    run(epochs=args.epochs, device=args.device, callbacks=[probe])
    early, late = seen[str(args.early)], seen[str(args.epochs)]
    print(
        json.dumps(
            {
                "epochs_early": args.early,
                "epochs": args.epochs,
                "rss_start_mb": start["rss"],
                "rss_early_mb": early["rss"],
                "rss_late_mb": late["rss"],
                "growth_mb": late["rss"] - early["rss"],
                "peak_mb": late["peak"],
            }
        )
    )


if __name__ == "__main__":
    main()
