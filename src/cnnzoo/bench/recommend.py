"""`cnnzoo recommend`: which architecture to use on this machine, with its reasons.

The lecture's rule of thumb ("ResNet-50 or -101 for accuracy; MobileNets and ShuffleNets for efficiency"),
answered with numbers: each candidate's published ImageNet top-1 (`analysis/imagenet_accuracy.csv`, with its
source) against its latency measured here (`bench`, or a saved bench file). A candidate is on the Pareto front
when no faster candidate is at least as accurate; every model off the front is the wrong choice on this machine
whatever the budget, and the reasons say which faster model beats it. Within the constraints (latency, params,
multiply-adds), the recommendation is the most accurate candidate; the faster points of the front are the
alternatives, each with its speed-up and its cost in top-1 points.

The default candidates (`TOUR_MODELS`) are one model per idea of the lecture, measured at 224x224 (the size
their accuracy was published at) and batch 1 with 5 timed runs: about 20 s on two CPU cores. A smaller input
would be faster but would pair a latency with an accuracy measured at another size.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

from ..errors import CnnzooError
from .bench import BenchResult, bench, plain_log_labels
from .device import DeviceInfo, device_info

TOUR_MODELS = ("alexnet", "vgg16", "googlenet", "resnet18", "resnet50", "densenet121", "mobilenet_v2",
               "shufflenet_v2_x1_0")


@dataclasses.dataclass
class Candidate:
    model: str
    latency_ms: float
    throughput: float
    params: int
    gmacs: float  # forward multiply-adds per image, in G: the lecture's "GFLOP"
    top1: float | None
    top5: float | None
    source: str
    input_size: tuple[int, int, int] = (3, 224, 224)
    status: str = ""  # "choice", "front", "dominated" or "excluded"
    reason: str = ""  # why it is excluded, or which faster model dominates it


@dataclasses.dataclass
class Recommendation:
    choice: str | None
    candidates: list[Candidate]  # fastest first
    reasons: list[str]
    constraints: dict[str, float]
    device: DeviceInfo
    batch_size: int
    source: str  # "measured now" or the bench file's path
    bench: BenchResult | None = dataclasses.field(default=None, repr=False)  # the figures it decided on

    @property
    def input_size(self) -> tuple[int, int, int]:
        """The candidates' most common input size (AlexNet's card says 227, the others 224)."""
        sizes = [c.input_size for c in self.candidates]
        return max(sizes, key=sizes.count)

    def inputs(self) -> str:
        """'224x224', or '224x224 (alexnet 227x227)' when a card asks for another size."""
        hw = lambda s: f"{s[1]}x{s[2]}"  # noqa: E731
        odd = [f"{c.model} {hw(c.input_size)}" for c in self.candidates if c.input_size != self.input_size]
        return hw(self.input_size) + (f" ({', '.join(odd)})" if odd else "")

    @property
    def front(self) -> list[Candidate]:
        return [c for c in self.candidates if c.status in ("choice", "front")]

    def table(self) -> str:
        head = f"{'model':<20} {'ms':>8} {'img/s':>7} {'Mparams':>8} {'GMAC':>6} {'top-1':>6} {'top-5':>6}  status"
        lines = [head, "-" * len(head)]
        pct = lambda v: f"{v:.1f}" if v is not None else "-"  # noqa: E731
        for c in self.candidates:
            why = f" ({c.reason})" if c.reason else ""
            lines.append(f"{c.model:<20} {c.latency_ms:>8.1f} {c.throughput:>7.1f} {c.params / 1e6:>8.1f} "
                         f"{c.gmacs:>6.2f} {pct(c.top1):>6} {pct(c.top5):>6}  {c.status}{why}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return "\n".join([self.table(), "", *self.reasons])

    def to_dict(self) -> dict[str, Any]:
        return {"choice": self.choice, "reasons": self.reasons, "constraints": self.constraints,
                "device": dataclasses.asdict(self.device), "batch_size": self.batch_size,
                "input_size": list(self.input_size), "inputs": self.inputs(), "source": self.source,
                "candidates": [dataclasses.asdict(c) for c in self.candidates]}

    def figure(self):
        """Published top-1 against measured latency (log scale): the front as a staircase, the choice starred."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
        style = {"choice": ("*", "tab:red", 220), "front": ("o", "tab:blue", 50),
                 "dominated": ("o", "tab:gray", 40), "excluded": ("x", "tab:gray", 40)}
        for status, (marker, color, size) in style.items():
            pts = [c for c in self.candidates if c.status == status and c.top1 is not None]
            if pts:
                ax.scatter([c.latency_ms for c in pts], [c.top1 for c in pts], marker=marker, c=color, s=size,
                           label=status, zorder=3)
        for i, c in enumerate(c for c in self.candidates if c.top1 is not None):  # alternate sides: fewer overlaps
            ax.annotate(c.model, (c.latency_ms, c.top1), xytext=(4, 3 if i % 2 else -10), textcoords="offset points",
                        fontsize=7)
        front = self.front
        if front:
            xs, ys = [front[0].latency_ms], [front[0].top1]
            for c in front[1:]:
                xs += [c.latency_ms, c.latency_ms]
                ys += [ys[-1], c.top1]
            ax.plot(xs, ys, color="tab:blue", lw=1, zorder=2, label="Pareto front")
        if "max_latency_ms" in self.constraints:
            ax.axvline(self.constraints["max_latency_ms"], color="tab:red", ls="--", lw=1, label="latency limit")
        ax.set_xscale("log")
        plain_log_labels(ax.xaxis)
        ax.tick_params(axis="x", which="minor", labelsize=8)
        ax.set_xlabel(f"measured latency, ms (batch {self.batch_size}, {self.inputs()}, {self.device.device})")
        ax.set_ylabel("published ImageNet top-1, %")
        ax.set_title(f"Which architecture on this machine? {self.device.where}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        return fig

    def plot(self, path: str | Path) -> Path:
        """Save `figure()` as a PNG; returns the path."""
        from matplotlib import pyplot as plt

        from ..fileio import write_figure

        fig = self.figure()
        try:
            return write_figure(fig, path)
        finally:
            plt.close(fig)


def pareto_front(points: Sequence[tuple[str, float, float]]) -> list[str]:
    """Names of the (name, latency, accuracy) points no other point beats: none is as fast and as accurate
    with one of the two strictly better. Fastest first."""
    front, best = [], float("-inf")
    for name, _, acc in sorted(points, key=lambda p: (p[1], -p[2])):
        if acc > best:
            front.append(name)
            best = acc
    return front


def _candidates(result: BenchResult, models: Sequence[str] | None, batch_size: int, input_size) -> list[Candidate]:
    from ..analysis import load_accuracy, parse_input_size

    size = parse_input_size(input_size) if input_size is not None else None
    rows = [r for r in result.rows if r.impl == "cnnzoo" and r.mode == "infer" and r.batch_size == batch_size
            and (size is None or r.input_size == size) and (models is None or r.model in models)]
    if not rows:
        have = sorted({f"batch {r.batch_size} at {r.input_size[1]}x{r.input_size[2]}" for r in result.rows})
        raise CnnzooError(f"the bench has no inference rows for these models at batch {batch_size}"
                          f"{f' and {size[1]}x{size[2]}' if size else ''}; it has {', '.join(have) or 'none'}")
    acc = load_accuracy()
    out = []
    for r in sorted(rows, key=lambda r: r.latency_ms):
        a = acc.get(r.model)
        out.append(Candidate(r.model, r.latency_ms, r.throughput, r.params, r.macs / 1e9, a and a.top1,
                             a and a.top5, a.source if a else "", r.input_size))
    return out


def _fits(c: Candidate, limits: dict[str, float]) -> tuple[str, str]:
    """(which rule `c` breaks, why in numbers), or ("", "")."""
    if c.top1 is None:
        return "without a published top-1", "no published top-1"
    if "max_latency_ms" in limits and c.latency_ms > limits["max_latency_ms"]:
        return f"over {limits['max_latency_ms']:g} ms", f"{c.latency_ms:.1f} ms > {limits['max_latency_ms']:g} ms"
    if "max_params" in limits and c.params > limits["max_params"]:
        return (f"over {limits['max_params'] / 1e6:g} M params",
                f"{c.params / 1e6:.1f} M params > {limits['max_params'] / 1e6:g} M")
    if "max_gflops" in limits and c.gmacs > limits["max_gflops"]:
        return f"over {limits['max_gflops']:g} GMAC", f"{c.gmacs:.2f} GMAC > {limits['max_gflops']:g}"
    return "", ""


def _times(ratio: float) -> str:
    """1.04 -> '1.04x', 2.345 -> '2.3x': two decimals where one would say 1.0x."""
    return f"{ratio:.2f}x" if ratio < 1.1 else f"{ratio:.1f}x"


def decide(result: BenchResult, models: Sequence[str] | None = None, batch_size: int = 1, input_size=None,
           max_latency_ms: float | None = None, max_params: float | None = None, max_gflops: float | None = None,
           source: str = "measured now") -> Recommendation:
    """The recommendation from bench figures (no measuring): deterministic for a given `result`."""
    limits = {k: v for k, v in (("max_latency_ms", max_latency_ms), ("max_params", max_params),
                                ("max_gflops", max_gflops)) if v is not None}
    cands = _candidates(result, models, batch_size, input_size)
    rules: dict[str, list[str]] = {}
    for c in cands:
        rule, c.reason = _fits(c, limits)
        c.status = "excluded" if rule else ""
        if rule:
            rules.setdefault(rule, []).append(c.model)
    fit = [c for c in cands if not c.status]
    on_front = set(pareto_front([(c.model, c.latency_ms, c.top1) for c in fit]))
    for c in fit:
        if c.model in on_front:
            c.status = "front"
            continue
        c.status = "dominated"
        by = max((d for d in fit if d.latency_ms <= c.latency_ms and d is not c), key=lambda d: (d.top1, -d.latency_ms))
        speedup = _times(c.latency_ms / by.latency_ms)
        c.reason = f"{by.model} is {speedup} faster and {by.top1 - c.top1:+.1f} points top-1"
    choice = max(fit, key=lambda c: (c.top1, -c.latency_ms)) if fit else None
    rec = Recommendation(None, cands, [], limits, result.device, batch_size, source, result)
    reasons = [f"Latency: median of each model's timed runs at batch {batch_size}, {rec.inputs()}, on "
               f"{result.device.where}, {source}. Top-1: published ImageNet figures, not measured here "
               "(imagenet_accuracy.csv gives each one's source; protocols differ: torchvision's single 224 crop, "
               "some papers' 10 crops or 320 crops)."]
    missing = [m for m in models or () if m not in {c.model for c in cands}]
    if missing:
        reasons.append(f"Not in the bench, so not considered: {', '.join(missing)}.")
    if limits:
        names = {"max_latency_ms": "latency <= {:g} ms", "max_params": "params <= {:,.0f}",
                 "max_gflops": "multiply-adds <= {:g} G per image"}
        reasons.append("Constraints: " + ", ".join(names[k].format(v) for k, v in limits.items())
                       + f": {len(fit)} of {len(cands)} candidates fit.")
    if rules:
        reasons.append("Left out, " + "; ".join(f"{rule}: {', '.join(names)}" for rule, names in rules.items()) + ".")
    if choice is None:
        fastest = min(cands, key=lambda c: c.latency_ms)
        reasons.append(f"No candidate fits. The fastest measured is {fastest.model} at {fastest.latency_ms:.1f} ms.")
    else:
        choice.status = "choice"
        reasons.append(
            f"Recommended: {choice.model}, the highest published top-1 of those that fit ({choice.top1:.1f}%, "
            f"{choice.source}); {choice.latency_ms:.1f} ms, {choice.throughput:.1f} images/s, "
            f"{choice.params / 1e6:.1f} M params, {choice.gmacs:.2f} GMAC per image.")
        for c in [c for c in fit if c.status == "front"][::-1]:
            reasons.append(f"If speed matters more: {c.model} is {_times(choice.latency_ms / c.latency_ms)} faster "
                           f"({c.latency_ms:.1f} ms) for {choice.top1 - c.top1:.1f} points less top-1 ({c.top1:.1f}%).")
    dominated = [c for c in fit if c.status == "dominated"]
    if dominated:
        reasons.append("Never the right pick on this machine (a faster model is at least as accurate): "
                       + "; ".join(f"{c.model} ({c.reason})" for c in dominated) + ".")
    rec.choice, rec.reasons = choice and choice.model, reasons
    return rec


def recommend(models: Sequence[str] | None = None, *, bench_file: str | Path | BenchResult | None = None,
              max_latency_ms: float | None = None, max_params: float | None = None,
              max_gflops: float | None = None, device: str = "cpu", batch_size: int = 1, input_size=None,
              repeats: int = 5, warmup: int = 1, info: DeviceInfo | None = None,
              threads: int | None = None) -> Recommendation:
    """Measure the candidates (`TOUR_MODELS` by default), or reuse a saved bench, and decide (see `decide`).

    `threads` sets torch's CPU threads while measuring (then restores them): 1 gives steadier figures on a
    machine whose cores other jobs are using. Prints nothing; `.reasons`, `.table()`, `.plot(path)`,
    `.figure()` and `.bench.figure()` (the roofline) give the answer."""
    if bench_file is None:
        from ..threads import torch_threads  # imports torch: only when measuring

        names = list(models or TOUR_MODELS)
        with torch_threads(threads):
            result = bench(names, device, (batch_size,), "infer", input_size, repeats=repeats, warmup=warmup,
                           torchvision=False, memory=False, info=info or device_info(device, quick=True))
        source = f"measured now ({repeats} runs after {warmup} warm-up)"
    else:
        result = bench_file if isinstance(bench_file, BenchResult) else BenchResult.load(bench_file)
        names = models
        source = "measured earlier" if isinstance(bench_file, BenchResult) else f"from {bench_file}"
    return decide(result, names, batch_size, input_size, max_latency_ms, max_params, max_gflops, source)
