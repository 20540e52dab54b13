"""Scale-out: data-parallel throughput with 1 and 2 processes, and sweep --jobs 1 vs 2.

    python -m benchmarks.scaling [--quick] [--out DIR | --save]

Wall-clock time (processes run side by side), each process on one thread, so the
comparison is one core against two. One process trains in this one; two are ranks started
by minidl.cli.launch.launch. It prints its tables; it writes scaling.json and
scaling.md only when asked, into --out DIR or, with --save, next to bench's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as `python benchmarks/scaling.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"  # noqa: A001

from minidl.cli.experiment import TrainConfig  # noqa: E402
from minidl.cli.launch import launch  # noqa: E402
from minidl.cli.sweep import TABLE_I, sweep  # noqa: E402

from . import dp_worker  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SETUPS = (
    ("1 process, 1 thread", 1, 1),
    ("1 process, 2 threads", 1, 2),
    ("2 processes, 1 thread each", 2, 1),
)


def data_parallel(nproc: int, threads: int, n_train: int, batch: int, epochs: int) -> float:
    """Samples per second of training (no evaluation) with ``nproc`` ranks."""
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "result.json")
        args = (out, n_train, batch, epochs, threads)
        if nproc == 1:
            dp_worker.main(*args)
        else:
            launch(dp_worker.main, nproc, args)
        result = json.loads(Path(out).read_text())
    return float(result["samples"] / result["seconds"])


def sweep_seconds(jobs: int, rounds: int, epochs: int) -> float:
    start = time.perf_counter()
    sweep(TABLE_I, TrainConfig(epochs=epochs), rounds=rounds, jobs=jobs)
    return time.perf_counter() - start


def tables(results: dict[str, Any]) -> list[str]:
    s = results["sweep"]
    lines = ["| data-parallel setup | samples/s | speed-up |", "| --- | --- | --- |"]
    lines += [
        f"| {r['setup']} | {r['samples_per_s']:,.0f} | {r['speedup']:.2f}x |"
        for r in results["data_parallel"]
    ]
    lines += [
        "",
        "| sweep | seconds |",
        "| --- | --- |",
        f"| --jobs 1 | {s['jobs_1_s']:.1f} |",
        f"| --jobs 2 | {s['jobs_2_s']:.1f} ({s['speedup']:.2f}x) |",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    written = parser.add_mutually_exclusive_group()
    written.add_argument(
        "--out", type=Path, help="write scaling.json and scaling.md into this directory"
    )
    written.add_argument("--save", action="store_true", help="write them into benchmarks/results/")
    args = parser.parse_args(argv)
    out = RESULTS if args.save else args.out
    n_train, batch, epochs = (4_000, 2_000, 1) if args.quick else (200_000, 20_000, 10)
    rounds, sweep_epochs = (1, 1) if args.quick else (10, 100)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    results: dict[str, Any] = {"quick": args.quick, "data_parallel": [], "sweep": {}}
    print(
        f"data-parallel throughput: seed network, {n_train} points, batch {batch}, {epochs} epochs"
    )
    try:
        base = None
        for label, nproc, setup_threads in SETUPS:
            rate = data_parallel(nproc, setup_threads, n_train, batch, epochs)
            base = base or rate
            row = {"setup": label, "samples_per_s": rate, "speedup": rate / base}
            results["data_parallel"].append(row)
            print(f"  {label:<28} {rate:12,.0f} samples/s  {rate / base:.2f}x", flush=True)
        one = sweep_seconds(1, rounds, sweep_epochs)
        two = sweep_seconds(2, rounds, sweep_epochs)
    finally:
        torch.set_num_threads(threads)
    results["sweep"] = {
        "rounds": rounds,
        "epochs": sweep_epochs,
        "jobs_1_s": one,
        "jobs_2_s": two,
        "speedup": one / two,
    }
    print(
        f"sweep (Table I, {rounds} rounds x {len(TABLE_I)} rows, {sweep_epochs} epochs): "
        f"--jobs 1 {one:.1f} s, --jobs 2 {two:.1f} s, {one / two:.2f}x"
    )
    lines = tables(results)
    print("\n" + "\n".join(lines))
    if out is None:
        print("(not written: --out DIR or --save writes scaling.json and scaling.md)")
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / "scaling.json").write_text(json.dumps(results, indent=2) + "\n")
        (out / "scaling.md").write_text("\n".join(lines) + "\n")
        print(f"wrote {out / 'scaling.json'} and {out / 'scaling.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
