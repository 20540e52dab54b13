"""Run in a subprocess by the benchmark: train the seed's network and report resident memory.

Prints one JSON line: RSS after the first ``--early`` epochs and after ``--epochs``, and the
peak RSS of the process (Linux's VmHWM; ru_maxrss elsewhere).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--early", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
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
