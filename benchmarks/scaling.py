"""Scale-out: data-parallel throughput with 1 and 2 processes, and sweep --jobs 1 vs 2.

    python -m benchmarks.scaling [--quick]

Wall-clock time (processes run side by side), each process on one thread, so the
comparison is one core against two. Writes scaling.json and scaling.md next to bench's.
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

import minidl
from minidl import distributed
from minidl.sweep import sweep

WORKER = str(Path(__file__).with_name("dp_worker.py"))


def data_parallel(nproc: int, threads: int, n_train: int, batch: int, epochs: int) -> float:
    """Samples per second of training (no evaluation) with ``nproc`` ranks."""
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "result.json")
        command = [sys.executable, WORKER, out, str(n_train), str(batch), str(epochs), str(threads)]
        distributed.launch(command, nproc)
        result = json.loads(Path(out).read_text())
    return float(result["samples"] / result["seconds"])


def sweep_seconds(jobs: int, rounds: int, epochs: int) -> float:
    start = time.perf_counter()
    sweep(base=minidl.TrainConfig(epochs=epochs), rounds=rounds, jobs=jobs)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    n_train, batch, epochs = (20_000, 10_000, 2) if args.quick else (200_000, 20_000, 10)
    rounds, sweep_epochs = (1, 2) if args.quick else (10, 100)
    torch.set_num_threads(1)
    results: dict[str, Any] = {"quick": args.quick, "data_parallel": [], "sweep": {}}
    print(
        f"data-parallel throughput: seed network, {n_train} points, batch {batch}, {epochs} epochs"
    )
    base = None
    for label, nproc, threads in (
        ("1 process, 1 thread", 1, 1),
        ("1 process, 2 threads", 1, 2),
        ("2 processes, 1 thread each", 2, 1),
    ):
        rate = data_parallel(nproc, threads, n_train, batch, epochs)
        base = base or rate
        row = {"setup": label, "samples_per_s": rate, "speedup": rate / base}
        results["data_parallel"].append(row)
        print(f"  {label:<28} {rate:12,.0f} samples/s  {rate / base:.2f}x", flush=True)
    one, two = sweep_seconds(1, rounds, sweep_epochs), sweep_seconds(2, rounds, sweep_epochs)
    results["sweep"] = {
        "rounds": rounds,
        "epochs": sweep_epochs,
        "jobs_1_s": one,
        "jobs_2_s": two,
        "speedup": one / two,
    }
    print(
        f"sweep (Table I, {rounds} rounds x 6 rows, {sweep_epochs} epochs): --jobs 1 {one:.1f} s, "
        f"--jobs 2 {two:.1f} s, {one / two:.2f}x"
    )
    lines = ["| data-parallel setup | samples/s | speed-up |", "| --- | --- | --- |"]
    lines += [
        f"| {r['setup']} | {r['samples_per_s']:,.0f} | {r['speedup']:.2f}x |"
        for r in results["data_parallel"]
    ]
    lines += [
        "",
        "| sweep | seconds |",
        "| --- | --- |",
        f"| --jobs 1 | {one:.1f} |",
        f"| --jobs 2 | {two:.1f} ({one / two:.2f}x) |",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "scaling.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
