"""minidl against PyTorch's own training loop, side by side in one process.

    python -m benchmarks.bench                # the full benchmark (a few minutes)
    python -m benchmarks.bench --quick        # a smoke run on tiny sizes (seconds)
    python -m benchmarks.bench --save         # also write benchmarks/results/bench.{json,md}
    python -m benchmarks.bench --out DIR      # ... or into DIR

Every case trains the same network from the same initial weights on the same data, with one
thread, in interleaved rounds (each contender in turn, the order rotating), and reports the
median over rounds of each per-round ratio. It prints its tables; it writes bench.json and
bench.md only when asked, with --out DIR or --save.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as `python benchmarks/bench.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"  # noqa: A001

import minidl  # noqa: E402
from minidl.cli.experiment import TrainConfig, setup  # noqa: E402
from minidl.cli.sweep import TABLE_I, Row, round_config  # noqa: E402
from minidl.plugins.datasets import disc  # noqa: E402

from . import convnet, gpt  # noqa: E402
from .contenders import (  # noqa: E402
    Contender,
    Net,
    Training,
    interleave,
    make_fit,
    make_floor,
    make_minidl,
    make_twin,
)
from .twin import LOSSES, torch_optimizer, torch_twin, twin_fit  # noqa: E402

SEED_NET = Net((2, 25, 25, 25, 1))
WIDE_NET = Net((2, 1024, 1024, 1024, 1))
#: --quick's stand-in for the wide network (a step of the real one takes 0.1 s).
QUICK_WIDE_NET = Net((2, 128, 128, 128, 1))
LR = {"sgd": 0.1, "adam": 1e-3}
RESULTS = Path(__file__).parent / "results"

CONTENDERS = ("twin", "minidl", "fit", "floor")
#: ratio name -> (numerator, denominator); "twin/minidl" > 1 means minidl is faster.
RATIOS = {
    "twin/minidl": ("twin", "minidl"),
    "twin/fit": ("twin", "fit"),
    "minidl/floor": ("minidl", "floor"),
    "fit/floor": ("fit", "floor"),
}
#: The convnet row's label (its network is benchmarks/convnet.py's SPEC).
CONVNET = convnet.DIGITS.label()
#: The convnets benchmarked, the digits one first: the rows at real sizes follow it.
CONVNETS = (convnet.DIGITS, convnet.MNIST, convnet.CIFAR)
#: --quick's batch for the networks at real sizes (a step of theirs takes 0.1 s).
QUICK_CONVNET_BATCH = 8

#: --quick's batch for the large GPT (a step of it at batch 16 takes 0.7 s).
QUICK_GPT_BATCH = 2

#: make(args, steps_per_epoch) -> the case's contenders by name (some of CONTENDERS)
Make = Callable[[argparse.Namespace, int], dict[str, Contender]]


def mlp_make(net: Net, batch: int, optimizer: str) -> Make:
    def make(args: argparse.Namespace, steps_per_epoch: int) -> dict[str, Contender]:
        t = Training(net, optimizer, LR[optimizer], dtype=torch.float32, device=args.device)
        data = disc(batch, torch.Generator().manual_seed(1))
        x, y = data.x.to(args.device), data.y.to(args.device)
        return {
            "twin": make_twin(t, x, y),
            "minidl": make_minidl(t, x, y),
            # fit shuffles a dataset of a few batches; ~10 epochs per block amortise its
            # final evaluation and per-epoch work to a few percent.
            "fit": make_fit(t, x, y, steps_per_epoch),
            "floor": make_floor(t, x, y),
        }

    return make


def convnet_make(net: convnet.ConvNet, batch: int) -> Make:
    def make(args: argparse.Namespace, steps_per_epoch: int) -> dict[str, Contender]:
        contenders = convnet.make_contenders(
            batch, torch.float32, args.device, fit_steps_per_epoch=steps_per_epoch, net=net
        )
        return {name: contenders[name] for name in CONTENDERS if name in contenders}

    return make


def gpt_make(size: gpt.GPTSize, batch: int) -> Make:
    def make(args: argparse.Namespace, steps_per_epoch: int) -> dict[str, Contender]:
        return gpt.make_contenders(size, batch, compiled=False)

    return make


def step_cases(parts: set[str], quick: bool = False) -> list[dict[str, Any]]:
    """Each case: its label, network, batch, optimizer, contenders and targets
    (ratio -> (op, bound)). ``quick`` makes the wide network a narrower one."""
    cases = []
    wide_net = QUICK_WIDE_NET if quick else WIDE_NET
    if "steps" in parts:
        for optimizer in ("sgd", "adam"):
            for batch in (1, 10, 100, 1000, 10000):
                targets: dict[str, tuple[str, float]] = {}
                if batch <= 100:
                    targets["twin/minidl"] = (">=", 3.0)
                elif batch == 10000:
                    targets["twin/minidl"] = (">=", 1.2)
                targets["minidl/floor"] = ("<=", 1.25)
                cases.append(
                    {
                        "label": f"{SEED_NET.label} b={batch} {optimizer}",
                        "net": SEED_NET.label,
                        "batch": batch,
                        "optimizer": optimizer,
                        "make": mlp_make(SEED_NET, batch, optimizer),
                        "targets": targets,
                    }
                )
        for optimizer in ("sgd", "adam"):
            cases.append(
                {
                    "label": f"{wide_net.label} b=1000 {optimizer}",
                    "net": wide_net.label,
                    "batch": 1000,
                    "optimizer": optimizer,
                    "make": mlp_make(wide_net, 1000, optimizer),
                    "targets": {"twin/minidl": (">=", 1.0), "minidl/floor": ("<=", 1.25)},
                    "wide": True,
                }
            )
    if "convnet" in parts:
        for net in CONVNETS:
            big = net is not convnet.DIGITS
            batch = QUICK_CONVNET_BATCH if quick and big else net.batch
            cases.append(
                {
                    "label": net.label(batch),
                    "net": "convnet",
                    "convnet": net.name,
                    "batch": batch,
                    "optimizer": "adam",
                    "make": convnet_make(net, batch),
                    "targets": {"twin/minidl": (">=", convnet.TARGET)},
                    "unavailable": convnet.unavailable(net),
                    "big": big,
                }
            )
    if "gpt" in parts:
        for size in gpt.SIZES.values():
            big = size is gpt.LARGE
            batch = QUICK_GPT_BATCH if quick and big else size.batch
            cases.append(
                {
                    "label": size.label(batch),
                    "net": "gpt",
                    "gpt": size.name,
                    "batch": batch,
                    "optimizer": "adamw",
                    "make": gpt_make(size, batch),
                    "targets": {"twin/minidl": (">=", size.target)},
                    "unavailable": gpt.unavailable(),
                    "big": big,
                }
            )
    return cases


def meets(value: float, target: tuple[str, float]) -> bool:
    op, bound = target
    return value >= bound if op == ">=" else value <= bound


def synchronizer(device: str) -> Callable[[], None]:
    if device.startswith("cuda"):
        return torch.cuda.synchronize
    return lambda: None


def clock(args: argparse.Namespace) -> Callable[[], float]:
    """The benchmark thread's CPU time by default: on a shared machine, wall time also counts
    the moments other processes hold the core. On a GPU, wall time (the work is elsewhere)."""
    return time.thread_time if args.clock == "cpu" else time.perf_counter


def time_case(case: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    sync, now = synchronizer(args.device), clock(args)
    make: Make = case["make"]
    contenders = make(args, 1)
    # Calibrate on the twin: how many steps fill a block of --block seconds.
    twin = contenders["twin"].run
    twin(2)
    per_step = interleave({"twin": twin}, 3, 1, now, sync)["twin"][0]
    wide, big = case.get("wide", False), case.get("big", False)
    # A step of the wide MLP or of a convnet at real size takes 0.1 s: fewer per block.
    min_steps = 1 if args.quick else (3 if wide else 2 if big else 10)
    n = max(min_steps, round(args.block / per_step))
    steps_per_epoch = max(1, min(10, n // 10))
    if steps_per_epoch != 1:
        contenders = make(args, steps_per_epoch)
    runners = {name: contenders[name].run for name in CONTENDERS if name in contenders}
    for run in runners.values():
        run(min_steps)  # warm up: first-call allocations, caches
    rounds = args.rounds if not wide else max(3, args.rounds // 3)
    times = interleave(runners, n, rounds, now, sync)
    ratios = {
        name: statistics.median(a / b for a, b in zip(times[num], times[den], strict=True))
        for name, (num, den) in RATIOS.items()
        if num in times and den in times
    }
    checks = {name: meets(ratios[name], t) for name, t in case["targets"].items()}
    return {
        "case": case["label"],
        "net": case["net"],
        **({"convnet": case["convnet"]} if "convnet" in case else {}),
        "batch": case["batch"],
        "optimizer": case["optimizer"],
        "rounds": rounds,
        "steps_per_round": n,
        "step_us": {name: statistics.median(v) * 1e6 for name, v in times.items()},
        "ratios": ratios,
        "targets": {name: list(t) for name, t in case["targets"].items()},
        "checks": checks,
        "pass": all(checks.values()),
    }


def sweep_training(
    row: Row, seed: int, args: argparse.Namespace, twin_first: bool
) -> dict[str, tuple[float, float]]:
    """One Table I training (row, round ``seed``) by minidl.fit and by the twin's loop
    (benchmarks/twin.py's twin_fit), from the same weights and data:
    name -> (seconds, final test accuracy)."""
    config = round_config(TrainConfig(epochs=args.sweep_epochs, device=args.device), row, seed)
    model, loss, optimizer, train, _, test = setup(config)
    net = torch_twin(model)  # before training: the same initial weights
    settings = {"betas": (optimizer.beta1, optimizer.beta2)} if config.optimizer == "adam" else {}
    twin_optimizer = torch_optimizer(config.optimizer, net.parameters(), config.lr, **settings)
    train, test = train.to(args.device), test.to(args.device)
    runs = {
        "minidl": lambda: minidl.fit(
            model,
            loss,
            optimizer,
            train,
            test,
            epochs=config.epochs,
            batch_size=config.batch_size,
            seed=config.seed,
        ),
        "twin": lambda: twin_fit(
            net,
            twin_optimizer,
            train,
            test,
            epochs=config.epochs,
            batch_size=config.batch_size,
            seed=config.seed,
            loss=LOSSES[type(loss)],
        ),
    }
    sync, now = synchronizer(args.device), clock(args)
    result = {}
    for name in ("twin", "minidl") if twin_first else ("minidl", "twin"):
        sync()
        start = now()
        history = runs[name]()
        sync()
        result[name] = (now() - start, history[-1]["test_accuracy"])
    return result


def time_sweep(args: argparse.Namespace) -> dict[str, Any]:
    """Table I (minidl.cli.sweep.TABLE_I): its rows x rounds (seeds), each trained by
    minidl.fit and by the twin, alternately first."""
    totals = {"minidl": 0.0, "twin": 0.0}
    per_training = []
    accuracy: dict[str, dict[str, list[float]]] = {}
    for seed in range(args.sweep_rounds):
        for i, row in enumerate(TABLE_I):
            result = sweep_training(row, seed, args, twin_first=(seed + i) % 2 == 1)
            for name, (seconds, test_accuracy) in result.items():
                totals[name] += seconds
                label = f"{row.activation} ({row.optimizer})"
                accuracy.setdefault(label, {}).setdefault(name, []).append(test_accuracy)
            per_training.append(result["twin"][0] / result["minidl"][0])
    target = (">=", 3.0)
    ratio = totals["twin"] / totals["minidl"]
    return {
        "configurations": len(TABLE_I),
        "trainings": len(per_training),
        "rounds": args.sweep_rounds,
        "epochs": args.sweep_epochs,
        "seconds": totals,
        "ratio": ratio,
        "median_training_ratio": statistics.median(per_training),
        "test_accuracy": {
            label: {name: statistics.mean(v) for name, v in accs.items()}
            for label, accs in accuracy.items()
        },
        "target": list(target),
        "pass": meets(ratio, target),
    }


def run_probe(*options: str) -> dict[str, Any]:
    """``memory_probe.py OPTIONS`` in a fresh process: the JSON line it prints last.

    Every probe runs under one string-hash seed. The hash seed orders some dictionaries and
    sets, hence some allocations, and glibc's heap keeps the gaps they leave: one
    contender's peak moved by 50 MB from one seed to another (the large GPT's: 306 MB or
    348-356 MB for minidl, 343-363 MB for the twin; minidl lower at every seed). With one
    seed the contenders are compared under the same conditions."""
    out = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("memory_probe.py")), *options],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure_memory(args: argparse.Namespace) -> dict[str, Any]:
    early, late = (10, 20) if args.quick else (100, 1000)
    result = run_probe(f"--early={early}", f"--epochs={late}", f"--device={args.device}")
    result["target"] = ["<", 5.0]
    result["pass"] = result["growth_mb"] < 5.0
    return result


def measure_convnet_memory(args: argparse.Namespace) -> dict[str, Any]:
    """Each convnet at real size trained by each contender alone in a subprocess
    (memory_probe.py --convnet): the peak RSS above the start, minidl's at most the
    twin's. --quick: the CIFAR one at a small batch."""
    names = ["cifar"] if args.quick else ["mnist", "cifar"]
    result: dict[str, Any] = {}
    for name in names:
        net = convnet.NETS[name]
        if convnet.unavailable(net):
            continue
        batch = QUICK_CONVNET_BATCH if args.quick else net.batch
        peaks = {
            contender: run_probe(
                f"--convnet={name}", f"--batch={batch}", f"--contender={contender}"
            )["training_peak_mb"]
            for contender in ("twin", "minidl")
        }
        ratio = peaks["minidl"] / peaks["twin"]
        result[net.label(batch)] = {
            "twin_mb": peaks["twin"],
            "minidl_mb": peaks["minidl"],
            "ratio": ratio,
            "target": ["<=", 1.0],
            "pass": meets(ratio, ("<=", 1.0)),
        }
    return result


def load() -> list[float]:
    """The machine's load average over 1, 5 and 15 minutes (empty where unknown)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_before": load(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def fmt_ratio(value: float | None, target: list[Any] | tuple[str, float] | None) -> str:
    if value is None:
        return "-"
    text = f"{value:.2f}x"
    if target is None:
        return text
    return f"{text} {'PASS' if meets(value, (target[0], target[1])) else 'FAIL'}"


def table(results: dict[str, Any]) -> list[str]:
    """Markdown lines: the step table, the sweep and memory."""
    head = (
        "| case | twin µs | minidl µs | fit µs | floor µs | twin/minidl | twin/fit "
        "| minidl/floor | fit/floor | targets |"
    )
    lines = [head, "|" + " --- |" * 10]
    for r in results["steps"]:
        us, ratios, targets = r["step_us"], r["ratios"], r["targets"]
        target_text = ", ".join(f"{k} {op} {v:g}" for k, (op, v) in targets.items())
        cells = [r["case"]] + [f"{us[c]:.1f}" if c in us else "-" for c in CONTENDERS]
        cells += [fmt_ratio(ratios.get(k), targets.get(k)) for k in RATIOS]
        cells.append(target_text)
        lines.append("| " + " | ".join(cells) + " |")
    shown = {r.get("convnet") for r in results["steps"] if r["net"] == "convnet"}
    for net in CONVNETS:
        if net.name in shown:
            shape = "x".join(map(str, net.input))
            lines += [
                "",
                f"{net.name}: benchmarks/convnet.py's network ({net.spec}) on {shape} images, "
                "cross-entropy, Adam lr 1e-3; no floor is written for it.",
            ]
    if any(r["net"] == "gpt" for r in results["steps"]):
        lines += [
            "",
            "gpt: benchmarks/gpt.py's GPTs (minGPT's gpt-nano on 2-digit additions; 4 layers "
            "256 wide on 128 tokens) against a torch.nn twin with nn.MultiheadAttention, "
            "cross-entropy, AdamW lr 3e-4; no floor is written for them.",
        ]
    for skipped in results.get("skipped", []):
        lines += ["", f"{skipped['case']}: {skipped['reason']}"]
    sweep = results.get("sweep")
    if sweep:
        lines += [
            "",
            f"Table I sweep: {sweep['trainings']} trainings ({sweep['configurations']} "
            f"configurations x {sweep['rounds']} rounds x {sweep['epochs']} epochs of 1000 "
            "points, batch 100, train and test evaluated every epoch)",
            "",
            "| | twin s | minidl s | twin/minidl | target |",
            "| --- | --- | --- | --- | --- |",
            f"| whole sweep | {sweep['seconds']['twin']:.2f} | {sweep['seconds']['minidl']:.2f} "
            f"| {fmt_ratio(sweep['ratio'], sweep['target'])} | >= {sweep['target'][1]:g} |",
        ]
        if sweep["rounds"] < 10 or sweep["epochs"] < 100:
            lines += ["", "(a reduced sweep: the full one is 10 rounds of 100 epochs)"]
        # Both train the same networks from the same weights: the seed's Table I, twice.
        lines += ["", "| configuration | minidl test accuracy | twin test accuracy |"]
        lines.append("| --- | --- | --- |")
        for label, accuracy in sweep["test_accuracy"].items():
            lines.append(f"| {label} | {accuracy['minidl']:.2%} | {accuracy['twin']:.2%} |")
    memory = results.get("memory")
    if memory:
        lines += [
            "",
            f"Memory (seed experiment in a subprocess): RSS {memory['rss_early_mb']:.1f} MB "
            f"after {memory['epochs_early']} epochs, {memory['rss_late_mb']:.1f} MB after "
            f"{memory['epochs']}: growth {memory['growth_mb']:.2f} MB (target < 5 MB: "
            f"{'PASS' if memory['pass'] else 'FAIL'}); peak RSS {memory['peak_mb']:.1f} MB.",
        ]
    convnet_memory = results.get("convnet_memory")
    if convnet_memory:
        lines += [
            "",
            "Memory of convnet training (each contender alone in a subprocess: peak RSS above "
            "the RSS after the imports, over a few steps):",
            "",
            "| case | twin MB | minidl MB | minidl/twin |",
            "| --- | --- | --- | --- |",
        ]
        for label, m in convnet_memory.items():
            lines.append(
                f"| {label} | {m['twin_mb']:.1f} | {m['minidl_mb']:.1f} "
                f"| {fmt_ratio(m['ratio'], m['target'])} |"
            )
    return lines


def summary(results: dict[str, Any]) -> list[str]:
    passed = [r["pass"] for r in results["steps"]]
    for part in ("sweep", "memory"):
        if results.get(part):
            passed.append(results[part]["pass"])
    passed += [m["pass"] for m in results.get("convnet_memory", {}).values()]
    lines = [f"{sum(passed)} of {len(passed)} checks pass" + ("" if all(passed) else " (see FAIL)")]
    if results.get("skipped"):
        lines[0] += f"; {len(results['skipped'])} skipped"
    m = results["machine"]
    if m.get("load_before"):
        lines.append(
            f"load average (1, 5, 15 min): {', '.join(map(str, m['load_before']))} before, "
            f"{', '.join(map(str, m.get('load_after', [])))} after, on {m['cpus']} CPUs"
        )
    if results["quick"]:
        lines.append(
            f"(quick mode: blocks of a few milliseconds, 3 rounds, {QUICK_WIDE_NET.label} for the "
            "wide network, a 2-epoch sweep: a smoke run whose ratios are noise-prone; run "
            "without --quick to measure)"
        )
    return lines


def save(directory: Path, results: dict[str, Any], lines: list[str]) -> list[Path]:
    """bench.json (every number, the machine, the settings) and bench.md (the tables)."""
    directory.mkdir(parents=True, exist_ok=True)
    suffix = "" if results["device"] == "cpu" else f"-{results['device'].replace(':', '')}"
    settings, m = results["settings"], results["machine"]
    header = [
        f"minidl benchmark ({'quick' if results['quick'] else 'full'}), {m['date']}: {m['cpu']}, "
        f"{m['cpus']} CPUs, torch {m['torch']}, Python {m['python']}, device "
        f"{results['device']}, 1 thread, float32, median of {settings['rounds']} interleaved "
        f"rounds; {settings['clock']} time per training step.",
        "",
    ]
    paths = [directory / f"bench{suffix}.json", directory / f"bench{suffix}.md"]
    paths[0].write_text(json.dumps(results, indent=2) + "\n")
    paths[1].write_text("\n".join(header + lines) + "\n")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (seconds)")
    written = parser.add_mutually_exclusive_group()
    written.add_argument(
        "--out", type=Path, help="write bench.json and bench.md into this directory"
    )
    written.add_argument("--save", action="store_true", help="write them into benchmarks/results/")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument(
        "--clock",
        choices=["cpu", "wall"],
        help="time as the thread's CPU time (default on the CPU) or wall time (on a GPU)",
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds per case (default 21)")
    parser.add_argument("--block", type=float, help="seconds per contender per round (0.05)")
    parser.add_argument("--sweep-rounds", type=int, help="Table I rounds (default 10)")
    parser.add_argument("--sweep-epochs", type=int, help="epochs per Table I training (100)")
    parser.add_argument(
        "--only", default="steps,convnet,gpt,sweep,memory", help="comma-separated parts to run"
    )
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"--device {args.device}: CUDA is not available here; nothing to measure (skipped)")
        return 0
    parts = set(args.only.split(","))
    unknown = parts - {"steps", "convnet", "gpt", "sweep", "memory"}
    if unknown:
        parser.error(f"--only: unknown parts {', '.join(sorted(unknown))}")
    out = RESULTS if args.save else args.out
    quick = args.quick
    args.clock = args.clock or ("cpu" if args.device == "cpu" else "wall")
    args.rounds = args.rounds or (3 if quick else 21)
    args.block = args.block or (0.004 if quick else 0.05)
    args.sweep_rounds = args.sweep_rounds or (1 if quick else 10)
    args.sweep_epochs = args.sweep_epochs or (2 if quick else 100)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = run(args, parts)
    finally:
        torch.set_num_threads(threads)
    lines = table(results) + ["", *summary(results)]
    print("\n" + "\n".join(lines))
    if out is None:
        print("(not written: --out DIR or --save writes bench.json and bench.md)")
    else:
        for path in save(out, results, lines):
            print(f"wrote {path}")
    return 0


def run(args: argparse.Namespace, parts: set[str]) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "device": args.device, "quick": args.quick}
    # The minidl contenders run as a user's code does: torch's grad mode is as torch starts
    # it (on), since importing minidl changes no global state.
    results["settings"] = {
        "dtype": "float32",
        "rounds": args.rounds,
        "block_s": args.block,
        "threads": 1,
        "clock": args.clock,
        "grad_mode": torch.is_grad_enabled(),
    }
    print(
        f"minidl {minidl.__version__} vs torch {torch.__version__} on {results['machine']['cpu']}"
        f" ({args.device}, 1 thread, float32, median of {args.rounds} interleaved rounds, "
        f"{args.clock} time; load average {results['machine']['load_before']})",
        flush=True,
    )
    results["steps"], results["skipped"] = [], []
    for case in step_cases(parts, args.quick):
        if case.get("unavailable"):
            results["skipped"].append({"case": case["label"], "reason": case["unavailable"]})
            print(f"  {case['label']:<30} {case['unavailable']}", flush=True)
            continue
        r = time_case(case, args)
        results["steps"].append(r)
        us, ratios = r["step_us"], r["ratios"]
        times = "  ".join(f"{c} {us[c]:9.1f}" for c in CONTENDERS if c in us)
        ratio_text = "  ".join(
            f"{k} {ratios[k]:.2f}" for k in ("twin/minidl", "minidl/floor") if k in ratios
        )
        print(
            f"  {r['case']:<30} {times} µs  {ratio_text}  {'PASS' if r['pass'] else 'FAIL'}",
            flush=True,
        )
    if "sweep" in parts:
        results["sweep"] = time_sweep(args)
    if "memory" in parts and not args.device.startswith("cuda"):
        results["memory"] = measure_memory(args)
        results["convnet_memory"] = measure_convnet_memory(args)
    results["machine"]["load_after"] = load()
    return results


if __name__ == "__main__":
    sys.exit(main())
