"""PNG plots with matplotlib, imported only when a plot is drawn (the optional ``plot`` extra).

Figures are drawn on the Agg canvas without pyplot, so no window or global backend is
touched, and written with :func:`minidl.io.atomic_write`.
"""

from __future__ import annotations

import importlib.util
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from minidl import Dataset, Sequential, labels, predict
from minidl.io import atomic_write
from minidl.plugins.datasets import CENTRE, RADIUS

MISSING = "note: matplotlib is not installed, so no plots were drawn (pip install 'minidl[plot]')"


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _figure(width: float = 6.4, height: float = 4.0) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write(path, buffer.getvalue())


def curves(history: Sequence[dict[str, Any]], directory: Path, title: str) -> None:
    """loss.png and accuracy.png: train and test per epoch (the report's Figs. 1 and 2)."""
    epochs = [r["epoch"] for r in history]
    for key, label, name in (
        ("loss", "loss", "loss.png"),
        ("accuracy", "accuracy", "accuracy.png"),
    ):
        figure = _figure()
        ax = figure.add_subplot()
        for split in ("train", "test"):
            values = [r.get(f"{split}_{key}") for r in history]
            if any(v is not None for v in values):
                ax.plot(epochs, values, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend()
        _save(figure, directory / name)


def decision_boundary(
    model: Sequential,
    test: Dataset,
    wrong: Sequence[dict[str, Any]],
    path: Path,
    title: str,
    *,
    disc: bool,
    resolution: int = 200,
) -> None:
    """The model's decision regions over the test points, misclassified ones marked
    (the report's Fig. 3), and the true disc for the disc dataset."""
    x = test.x.detach().to("cpu", torch.float64)
    low, high = x.min(0).values, x.max(0).values
    margin = (high - low) * 0.05
    low, high = low - margin, high + margin
    gx = torch.linspace(float(low[0]), float(high[0]), resolution, dtype=torch.float64)
    gy = torch.linspace(float(low[1]), float(high[1]), resolution, dtype=torch.float64)
    mesh_y, mesh_x = torch.meshgrid(gy, gx, indexing="ij")
    grid = torch.stack([mesh_x.flatten(), mesh_y.flatten()], 1)
    regions = labels(predict(model, grid)).to("cpu").reshape(resolution, resolution)
    actual = labels(test.y).to("cpu")

    figure = _figure(5.2, 5.0)
    ax = figure.add_subplot()
    ax.contourf(
        gx.numpy(),
        gy.numpy(),
        regions.numpy(),
        levels=[-0.5, 0.5, 1.5] if int(regions.max()) <= 1 else None,
        cmap="RdBu",
        alpha=0.25,
    )
    names = {0: "outside (0)", 1: "inside (1)"} if disc else {0: "label 0", 1: "label 1"}
    for value, colour in ((0, "tab:red"), (1, "tab:blue")):
        mask = actual == value
        ax.scatter(x[mask, 0].numpy(), x[mask, 1].numpy(), s=6, c=colour, label=names[value])
    if wrong:
        points = torch.tensor([w["input"] for w in wrong], dtype=torch.float64)
        ax.scatter(
            points[:, 0].numpy(),
            points[:, 1].numpy(),
            s=40,
            marker="x",
            c="black",
            linewidths=1.2,
            label=f"misclassified ({len(wrong)})",
        )
    if disc:
        from matplotlib.patches import Circle

        ax.add_patch(
            Circle(
                CENTRE,
                RADIUS,
                fill=False,
                ls="--",
                color="black",
                lw=1,
                label="disc r = 1/sqrt(2 pi)",
            )
        )
    ax.set_aspect("equal")
    ax.set_xlim(float(low[0]), float(high[0]))
    ax.set_ylim(float(low[1]), float(high[1]))
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=7, framealpha=0.9)
    _save(figure, path)


def sweep_bars(
    rows: Sequence[dict[str, Any]], path: Path, rounds: int, label: str = "minidl"
) -> None:
    """Mean test accuracy per row (named by its ``title``) with one-standard-deviation
    error bars, beside the report's numbers where the row is one of Table I's."""
    figure = _figure(max(6.4, 1.1 * len(rows)), 4.2)
    ax = figure.add_subplot()
    names = [r["title"].replace(" ", "\n", 1) for r in rows]
    positions = list(range(len(rows)))
    has_report = any(r.get("report_mean") is not None for r in rows)
    width = 0.4 if has_report else 0.6
    ours = [100 * (r["mean"] or 0) for r in rows]
    ours_err = [100 * (r["std"] or 0) for r in rows]
    ax.bar(
        [p - (width / 2 if has_report else 0) for p in positions],
        ours,
        width,
        yerr=ours_err,
        capsize=3,
        label=f"{label} ({rounds} rounds)",
    )
    if has_report:
        report = [100 * (r.get("report_mean") or 0) for r in rows]
        report_err = [100 * (r.get("report_std") or 0) for r in rows]
        ax.bar(
            [p + width / 2 for p in positions],
            report,
            width,
            yerr=report_err,
            capsize=3,
            label="seed report",
            alpha=0.6,
            hatch="//",
        )
    ax.axhline(50, color="grey", lw=0.8, ls=":")
    ax.set_xticks(positions, names, fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _save(figure, path)


def diagnostics(
    runs: Sequence[tuple[str, Sequence[dict[str, Any]]]], path: Path, title: str
) -> None:
    """Per epoch: each linear layer's gradient norm and each activation layer's saturation
    and spread (see minidl.cli.diagnostics), for one or more runs: one colour per layer, one
    line style per run."""
    from matplotlib.lines import Line2D

    panels = (
        ("grad_norm/", "weight gradient norm (log)", True),
        ("saturation/", "saturated fraction (ReLU: dead units)", False),
        ("spread/", "output spread across points (log)", True),
    )
    styles = ["-", "--", ":", "-."]
    figure = _figure(14, 4.2)
    axes = figure.subplots(1, len(panels))
    for ax, (prefix, label, log) in zip(axes, panels, strict=True):
        keys = [k for _, history in runs for r in history for k in r if k.startswith(prefix)]
        layers = list(dict.fromkeys(keys))
        for run_index, (_, history) in enumerate(runs):
            for layer_index, key in enumerate(layers):
                points = [(r["epoch"], r[key]) for r in history if key in r]
                if log:
                    points = [(e, v) for e, v in points if v > 0]
                if points:
                    ax.plot(
                        [e for e, _ in points],
                        [v for _, v in points],
                        color=f"C{layer_index % 10}",
                        ls=styles[run_index % len(styles)],
                        lw=1.2,
                    )
        if log:
            ax.set_yscale("log")
        else:
            ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        handles = [
            Line2D([], [], color=f"C{i % 10}", label=key.removeprefix(prefix))
            for i, key in enumerate(layers)
        ]
        if len(runs) > 1:
            handles += [
                Line2D([], [], color="black", ls=styles[i % len(styles)], label=name)
                for i, (name, _) in enumerate(runs)
            ]
        if handles:
            ax.legend(handles=handles, fontsize=7)
    figure.suptitle(title, fontsize=9)
    _save(figure, path)


def lr_curve(
    lrs: Sequence[float],
    losses: Sequence[float],
    suggestion: float | None,
    path: Path,
    title: str,
    raw_losses: Sequence[float] = (),
) -> None:
    """lr_find.png: the learning-rate range test's smoothed (and faint, raw) training loss
    against the learning rate on a log axis, the suggested rate marked."""
    figure = _figure()
    ax = figure.add_subplot()
    finite = [(lr, v) for lr, v in zip(lrs, losses, strict=False) if math.isfinite(v)]
    if raw_losses:
        raw = [(lr, v) for lr, v in zip(lrs, raw_losses, strict=False) if math.isfinite(v)]
        ax.plot(
            [p[0] for p in raw], [p[1] for p in raw], color="C0", alpha=0.25, lw=0.8, label="loss"
        )
    ax.plot([p[0] for p in finite], [p[1] for p in finite], color="C0", label="smoothed loss")
    if suggestion is not None:
        at = min(finite, key=lambda p: abs(math.log(p[0] / suggestion)))
        ax.axvline(suggestion, color="C3", lw=0.8, ls="--")
        ax.plot([at[0]], [at[1]], "o", color="C3", label=f"suggestion {suggestion:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log)")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(figure, path)
