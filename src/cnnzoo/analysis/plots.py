"""The lecture's charts, drawn from computed profiles: per-layer bars and the Canziani bubble chart.

- `plot_layers`: memory, params and flops per layer, one panel each (the lecture's AlexNet slides: "most of the
  memory usage is in the early convolution layers", "nearly all parameters are in the fully-connected layers",
  "most floating-point ops occur in the convolution layers").
- `plot_totals`: the totals of several models side by side ("AlexNet vs VGG-16: much bigger network!").
- `plot_canziani`: published ImageNet top-1 against multiply-adds, bubble area proportional to the parameter
  count (Canziani, Paszke and Culurciello 2017, the lecture's "Comparing Complexity" slides).

Every chart is written as PNG and SVG. Figures are built with matplotlib's object API on the Agg canvas, so the
caller's pyplot backend and state are left alone.
"""
from __future__ import annotations

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from .compare import Comparison
from .profiler import Profile

LECTURE_TYPES = ("conv", "pool", "flatten", "fc")  # the rows of the lecture's tables
_COLORS = {"conv": "#1f77b4", "pool": "#2ca02c", "fc": "#d62728", "flatten": "#7f7f7f", "concat": "#9467bd",
           "add": "#8c564b", "mul": "#e377c2", "shuffle": "#bcbd22", "module": "#17becf"}


def _save(fig: Figure, out_dir: str | Path, stem: str) -> list[Path]:
    from ..fileio import write_figure

    out = Path(out_dir)
    FigureCanvasAgg(fig)
    return [write_figure(fig, out / f"{stem}.{fmt}", dpi=120, bbox_inches="tight") for fmt in ("png", "svg")]


def plot_layers(p: Profile, out_dir: str | Path, types: tuple[str, ...] = LECTURE_TYPES) -> list[Path]:
    """Memory (KB), params and MAC (M) per layer, for the rows of `types`; writes layers-<model>.png/.svg."""
    rows = [r for r in p.rows if r.type in types] if types else list(p.rows)
    names = [r.name for r in rows]
    colors = [_COLORS.get(r.type, "#444444") for r in rows]
    panels = [("Memory (KB)", [r.memory_kb for r in rows]), ("Params (K)", [r.params / 1e3 for r in rows]),
              ("MFLOP (multiply-adds)", [r.flops / 1e6 for r in rows])]
    width = max(9.0, 0.22 * len(rows) + 3)
    fig = Figure(figsize=(width, 9), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    for ax, (label, values) in zip(axes, panels):
        ax.bar(range(len(rows)), values, color=colors)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[-1].set_xticks(range(len(rows)), names, rotation=90, fontsize=7 if len(rows) > 30 else 9)
    t = p.total
    fig.suptitle(f"{p.model} at {'x'.join(map(str, p.input))}: {t.memory_kb / 1024:,.1f} MB, "
                 f"{t.params / 1e6:,.1f}M params, {t.flops / 1e9:,.2f} GMAC ({', '.join(types)} rows)")
    return _save(fig, out_dir, f"layers-{p.model}")


def plot_totals(c: Comparison, out_dir: str | Path) -> list[Path]:
    """Memory, params and multiply-adds of each model, with the ratio to the first; writes compare-totals."""
    names = [p.model for p in c.profiles]
    ratios = c.ratios()
    panels = [("Memory (MB, conv+fc outputs)", [p.lecture_memory_kb / 1024 for p in c.profiles], "conv_fc_memory_kb"),
              ("Params (M)", [p.total.params / 1e6 for p in c.profiles], "params"),
              ("GFLOP (multiply-adds)", [p.total.flops / 1e9 for p in c.profiles], "flops")]
    fig = Figure(figsize=(min(18.0, 4.0 + 1.6 * len(names)), 4.5), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (label, values, key) in zip(axes, panels):
        bars = ax.bar(names, values, color="#1f77b4")
        for bar, r in zip(bars, ratios):
            ax.annotate(f"{r[key]:.1f}x", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)
        ax.set_title(label)
        ax.tick_params(axis="x", labelrotation=45)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"ratios to {names[0]}")
    return _save(fig, out_dir, "compare-totals")


def plot_canziani(c: Comparison, out_dir: str | Path) -> list[Path]:
    """Top-1 accuracy against multiply-adds, bubble area = parameters; models without a figure are listed."""
    pts = [(p, c.accuracy[p.model]) for p in c.profiles if c.accuracy.get(p.model) and c.accuracy[p.model].top1]
    missing = [p.model for p in c.profiles if not (c.accuracy.get(p.model) and c.accuracy[p.model].top1)]
    fig = Figure(figsize=(9, 6), layout="constrained")
    ax = fig.subplots()
    for p, acc in pts:
        x, area = p.total.flops / 1e9, p.total.params / 1e6 * 12
        ax.scatter([x], [acc.top1], s=area, alpha=0.45, edgecolors="k", linewidths=0.5)
        ax.annotate(p.model, (x, acc.top1), fontsize=8, ha="center", va="bottom",
                    xytext=(0, 4 + math.sqrt(area) / 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.margins(x=0.15, y=0.1)
    ax.set_xlabel("multiply-adds (G, log scale)")
    ax.set_ylabel("published ImageNet top-1 accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    note = "bubble area = parameters; accuracy sources in imagenet_accuracy.csv"
    if missing:
        note += f"; no published top-1: {', '.join(missing)}"
    ax.set_title(note, fontsize=8)
    fig.suptitle("Accuracy against operations (after Canziani et al. 2017)")
    return _save(fig, out_dir, "canziani")


def plot_comparison(c: Comparison, out_dir: str | Path) -> list[Path]:
    """Everything `cnnzoo compare --plot DIR` writes: one per-layer chart per model, the totals, Canziani."""
    paths: list[Path] = []
    for p in c.profiles:
        paths += plot_layers(p, out_dir)
    return paths + plot_totals(c, out_dir) + plot_canziani(c, out_dir)
