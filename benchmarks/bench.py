"""minidl against PyTorch's own training loop, side by side in one process.

    python -m benchmarks.bench            # the full benchmark (a few minutes)
    python -m benchmarks.bench --quick    # a smoke run on tiny sizes (seconds)

Every case trains the same network from the same initial weights on the same data, with one
thread, in interleaved rounds (each contender in turn, the order rotating), and reports the
median over rounds of each per-round ratio. Writes bench.json and bench.md to --out.
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

from .contenders import (  # noqa: E402
    Net,
    Runner,
    Training,
    make_fit,
    make_floor,
    make_minidl,
    make_twin,
    twin_model,
    twin_optimizer,
)

SEED_NET = Net((2, 25, 25, 25, 1))
WIDE_NET = Net((2, 1024, 1024, 1024, 1))
LR = {"sgd": 0.1, "adam": 1e-3}

#: The seed report's Table I: activation, optimizer, learning rate, betas.
TABLE_I = [
    ("relu", "sgd", 0.5, (0.9, 0.999)),
    ("sigmoid", "sgd", 0.1, (0.9, 0.999)),
    ("tanh", "sgd", 0.9, (0.9, 0.999)),
    ("relu", "adam", 1e-3, (0.9, 0.999)),
    ("sigmoid", "adam", 1e-3, (0.9, 0.999)),
    ("tanh", "adam", 0.1, (0.5, 0.999)),
]

CONTENDERS = ("twin", "minidl", "fit", "floor")
#: ratio name -> (numerator, denominator); "twin/minidl" > 1 means minidl is faster.
RATIOS = {
    "twin/minidl": ("twin", "minidl"),
    "twin/fit": ("twin", "fit"),
    "minidl/floor": ("minidl", "floor"),
    "fit/floor": ("fit", "floor"),
}


def step_cases(quick: bool) -> list[dict[str, Any]]:
    """Each case: its label, network, batch, optimizer and targets (ratio -> (op, bound))."""
    cases = []
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
                    "net": SEED_NET,
                    "batch": batch,
                    "optimizer": optimizer,
                    "targets": targets,
                }
            )
    for optimizer in ("sgd", "adam"):
        cases.append(
            {
                "label": f"{WIDE_NET.label} b=1000 {optimizer}",
                "net": WIDE_NET,
                "batch": 1000,
                "optimizer": optimizer,
                "targets": {"twin/minidl": (">=", 1.0), "minidl/floor": ("<=", 1.25)},
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


def timed(run: Runner, n: int, sync: Callable[[], None], now: Callable[[], float]) -> float:
    """Seconds per step of ``run(n)``."""
    sync()
    start = now()
    done = run(n)
    sync()
    return (now() - start) / done


def time_case(case: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    training = Training(
        case["net"],
        case["optimizer"],
        LR[case["optimizer"]],
        dtype=torch.float32,
        device=args.device,
    )
    data = minidl.data.disc(case["batch"], torch.Generator().manual_seed(1))
    x, y = data.x.to(args.device), data.y.to(args.device)
    sync, now = synchronizer(args.device), clock(args)
    # Calibrate on the twin: how many steps fill a block of --block seconds.
    twin = make_twin(training, x, y)
    twin(2)
    per_step = timed(twin, 3, sync, now)
    wide = case["net"] is WIDE_NET
    min_steps = 1 if args.quick else (3 if wide else 10)
    n = max(min_steps, round(args.block / per_step))
    runners: dict[str, Runner] = {
        "twin": twin,
        "minidl": make_minidl(training, x, y),
        # fit shuffles a dataset of a few batches; ~10 epochs per block amortise its final
        # evaluation and per-epoch work to a few percent.
        "fit": make_fit(training, x, y, steps_per_epoch=max(1, min(10, n // 10))),
        "floor": make_floor(training, x, y),
    }
    for run in runners.values():
        run(min_steps)  # warm up: first-call allocations, caches
    rounds = args.rounds if not wide else max(3, args.rounds // 3)
    times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for r in range(rounds):
        order = CONTENDERS[r % 4 :] + CONTENDERS[: r % 4]  # nobody always goes first
        for name in order:
            times[name].append(timed(runners[name], n, sync, now))
    ratios = {
        name: statistics.median(a / b for a, b in zip(times[num], times[den], strict=True))
        for name, (num, den) in RATIOS.items()
    }
    checks = {name: meets(ratios[name], t) for name, t in case["targets"].items()}
    return {
        "case": case["label"],
        "net": case["net"].label,
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


def twin_fit(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    train: minidl.Dataset,
    test: minidl.Dataset,
    epochs: int,
    batch_size: int,
    seed: int,
) -> list[dict[str, float]]:
    """The seed's training loop written with torch.nn, autograd and torch.optim: the same
    shuffling as minidl.fit, train and test loss and accuracy after every epoch."""
    loss_fn = torch.nn.MSELoss()
    generator = torch.Generator().manual_seed(seed)
    history = []
    with torch.enable_grad():
        for epoch in range(1, epochs + 1):
            order = torch.randperm(len(train), generator=generator).to(train.x.device)
            x_all, y_all = train.x[order], train.y[order]
            for start in range(0, len(train), batch_size):
                x, y = x_all[start : start + batch_size], y_all[start : start + batch_size]
                optimizer.zero_grad()
                loss = loss_fn(net(x), y)
                loss.backward()
                optimizer.step()
            record: dict[str, float] = {"epoch": epoch}
            with torch.no_grad():
                for part, d in (("train", train), ("test", test)):
                    prediction = net(d.x)
                    record[f"{part}_loss"] = loss_fn(prediction, d.y).item()
                    correct = (prediction > 0.5) == (d.y > 0.5)
                    record[f"{part}_accuracy"] = correct.double().mean().item()
            history.append(record)
    return history


def sweep_training(
    activation: str,
    optimizer: str,
    lr: float,
    betas: tuple[float, float],
    seed: int,
    args: argparse.Namespace,
    twin_first: bool,
) -> dict[str, tuple[float, float]]:
    """One Table I training by minidl.fit and by the twin, from the same weights and data:
    name -> (seconds, final test accuracy)."""
    config = minidl.TrainConfig(
        activation=activation,
        optimizer=optimizer,
        lr=lr,
        beta1=betas[0] if optimizer == "adam" else None,
        beta2=betas[1] if optimizer == "adam" else None,
        epochs=args.sweep_epochs,
        batch_size=100,
        seed=seed,
        device=args.device,
    )
    model, loss, opt, train, test = minidl.experiment.setup(config)
    training = Training(Net(SEED_NET.sizes, activation), optimizer, lr, betas, seed=seed)
    net = twin_model(training).to(args.device)
    twin_opt = twin_optimizer(training, net)
    train, test = train.to(args.device), test.to(args.device)
    runs = {
        "minidl": lambda: minidl.fit(
            model, loss, opt, train, test, epochs=config.epochs, batch_size=100, seed=seed
        ),
        "twin": lambda: twin_fit(net, twin_opt, train, test, config.epochs, 100, seed),
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
    """Table I: 6 configurations x rounds (seeds), each trained by minidl.fit and by the twin,
    alternately first."""
    totals = {"minidl": 0.0, "twin": 0.0}
    per_training = []
    accuracy: dict[str, dict[str, list[float]]] = {}
    for seed in range(args.sweep_rounds):
        for i, (activation, optimizer, lr, betas) in enumerate(TABLE_I):
            result = sweep_training(
                activation, optimizer, lr, betas, seed, args, twin_first=(seed + i) % 2 == 1
            )
            for name, (seconds, test_accuracy) in result.items():
                totals[name] += seconds
                label = f"{activation} ({optimizer})"
                accuracy.setdefault(label, {}).setdefault(name, []).append(test_accuracy)
            per_training.append(result["twin"][0] / result["minidl"][0])
    target = (">=", 3.0)
    ratio = totals["twin"] / totals["minidl"]
    return {
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


def measure_memory(args: argparse.Namespace) -> dict[str, Any]:
    early, late = (10, 20) if args.quick else (100, 1000)
    probe = Path(__file__).with_name("memory_probe.py")
    command = [sys.executable, str(probe), f"--early={early}", f"--epochs={late}"]
    out = subprocess.run(
        [*command, f"--device={args.device}"], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["target"] = ["<", 5.0]
    result["pass"] = result["growth_mb"] < 5.0
    return result


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
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def fmt_ratio(value: float, target: list[Any] | tuple[str, float] | None) -> str:
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
        cells = [r["case"]] + [f"{us[c]:.1f}" for c in CONTENDERS]
        cells += [fmt_ratio(ratios[k], targets.get(k)) for k in RATIOS]
        cells.append(target_text)
        lines.append("| " + " | ".join(cells) + " |")
    sweep = results.get("sweep")
    if sweep:
        lines += [
            "",
            f"Table I sweep: {sweep['trainings']} trainings (6 configurations x "
            f"{sweep['rounds']} rounds x {sweep['epochs']} epochs of 1000 points, batch 100, "
            "train and test evaluated every epoch)",
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
    return lines


def summary(results: dict[str, Any]) -> list[str]:
    passed = [r["pass"] for r in results["steps"]]
    for part in ("sweep", "memory"):
        if results.get(part):
            passed.append(results[part]["pass"])
    lines = [f"{sum(passed)} of {len(passed)} checks pass" + ("" if all(passed) else " (see FAIL)")]
    if results["quick"]:
        lines.append(
            "(quick mode: blocks of a few milliseconds, 3 rounds, a 2-epoch sweep: a smoke run "
            "whose ratios are noise-prone; run without --quick to measure)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (seconds)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument(
        "--clock",
        choices=["cpu", "wall"],
        help="time as the thread's CPU time (default on the CPU) or wall time (on a GPU)",
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds per case (default 11)")
    parser.add_argument("--block", type=float, help="seconds per contender per round (0.1)")
    parser.add_argument("--sweep-rounds", type=int, help="Table I rounds (default 10)")
    parser.add_argument("--sweep-epochs", type=int, help="epochs per Table I training (100)")
    parser.add_argument("--only", default="steps,sweep,memory", help="comma-separated parts to run")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"--device {args.device}: CUDA is not available here; nothing to measure (skipped)")
        return 0
    quick = args.quick
    args.clock = args.clock or ("cpu" if args.device == "cpu" else "wall")
    args.rounds = args.rounds or (3 if quick else 21)
    args.block = args.block or (0.004 if quick else 0.05)
    args.sweep_rounds = args.sweep_rounds or (1 if quick else 10)
    args.sweep_epochs = args.sweep_epochs or (2 if quick else 100)
    parts = set(args.only.split(","))
    torch.set_num_threads(1)
    results: dict[str, Any] = {"machine": machine(), "device": args.device, "quick": quick}
    results["settings"] = {
        "dtype": "float32",
        "rounds": args.rounds,
        "block_s": args.block,
        "threads": 1,
        "clock": args.clock,
    }
    print(
        f"minidl {minidl.__version__} vs torch {torch.__version__} on {results['machine']['cpu']}"
        f" ({args.device}, 1 thread, float32, median of {args.rounds} interleaved rounds, "
        f"{args.clock} time)",
        flush=True,
    )
    results["steps"] = []
    if "steps" in parts:
        for case in step_cases(quick):
            r = time_case(case, args)
            results["steps"].append(r)
            us, ratios = r["step_us"], r["ratios"]
            print(
                f"  {r['case']:<30} twin {us['twin']:9.1f} µs  minidl {us['minidl']:9.1f}  "
                f"fit {us['fit']:9.1f}  floor {us['floor']:9.1f}  twin/minidl "
                f"{ratios['twin/minidl']:.2f}  minidl/floor {ratios['minidl/floor']:.2f}  "
                f"{'PASS' if r['pass'] else 'FAIL'}",
                flush=True,
            )
    if "sweep" in parts:
        results["sweep"] = time_sweep(args)
    if "memory" in parts and not args.device.startswith("cuda"):
        results["memory"] = measure_memory(args)
    lines = table(results) + ["", *summary(results)]
    print("\n" + "\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.device == "cpu" else f"-{args.device.replace(':', '')}"
    (args.out / f"bench{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")
    m = results["machine"]
    header = [
        f"minidl benchmark ({'quick' if quick else 'full'}), {m['date']}: {m['cpu']}, "
        f"{m['cpus']} CPUs, torch {m['torch']}, Python {m['python']}, device {args.device}, "
        f"1 thread, float32, median of {args.rounds} interleaved rounds; {args.clock} time "
        "per training step.",
        "",
    ]
    (args.out / f"bench{suffix}.md").write_text("\n".join(header + lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
