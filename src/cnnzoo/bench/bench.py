"""`cnnzoo bench`: how fast each model runs on this machine, how much memory it takes, and how close to the peak.

Methodology (what every figure of a `Measurement` means):
- latency: wall time of one step on a random batch, after `warmup` untimed steps; the median of the timed steps,
  with the quartiles. Inference: a forward pass in eval mode under `torch.no_grad`. Training: forward,
  cross-entropy, backward and an SGD-with-momentum step, in train mode. On CUDA each step is bracketed by
  `torch.cuda.synchronize()`. throughput = batch size / median latency.
- cnnzoo's model and torchvision's same model (where the card names torchvision's builder under the model's own
  name) carry the same weights and are timed interleaved, alternating which goes first (AB BA AB ...), so that
  a neighbour's load on a shared machine hits both alike; `vs_torchvision` is the median of the per-round
  ratios ours / theirs (1.00 = as fast, below 1 = ours faster).
- work: inference counts 2 FLOPs per multiply-add of the conv and fc layers (the profiler's `conv_fc_macs`: the
  unit a matmul peak is measured in); training counts forward and backward conv/matmul FLOPs with
  `torch.utils.flop_counter` on the meta device. Pools, norms and activations are not counted: they move
  memory, not multiply-adds. achieved GFLOP/s = work / median latency.
- roofline: `peak_fraction` = achieved / the device's matmul peak measured in the same process (device.py). For
  inference the arithmetic intensity is work / bytes, bytes = weights read once + every allocated activation
  (the profiler's `allocated_bytes`) written once and read once, and the ceiling is min(peak, intensity *
  bandwidth): below peak / bandwidth FLOPs per byte a model is memory-bound.
- peak memory: one separate step, untimed; on CUDA the allocator's peak, on the CPU every storage counted while
  live (memory.py).
"""
from __future__ import annotations

import csv
import io
import dataclasses
import json
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from ..errors import CnnzooError
from .device import DeviceInfo, device_info, sync
from .memory import peak_memory

MODES = ("infer", "train")


@dataclasses.dataclass
class Measurement:
    """One model (cnnzoo's or torchvision's) at one batch size, mode and input size."""

    model: str
    impl: str  # "cnnzoo" or "torchvision"
    mode: str
    batch_size: int
    input_size: tuple[int, int, int]
    params: int
    macs: int  # forward multiply-adds of the conv and fc layers, per image (the lecture's "GFLOP")
    flops: int  # FLOPs of one step on the whole batch (2 per multiply-add; forward and backward when training)
    latency_ms: float  # median
    latency_q1_ms: float
    latency_q3_ms: float
    repeats: int
    throughput: float  # images per second
    gflops: float  # achieved
    peak_fraction: float  # achieved / the device's measured matmul peak
    intensity: float | None = None  # FLOPs per byte (inference)
    roof_gflops: float | None = None  # min(peak, intensity * bandwidth)
    peak_memory_bytes: int | None = None
    vs_torchvision: float | None = None  # median of per-round latency ratios ours / torchvision's (cnnzoo rows)


@dataclasses.dataclass
class BenchResult:
    device: DeviceInfo
    rows: list[Measurement]

    def get(self, model: str, impl: str = "cnnzoo", batch_size: int | None = None) -> Measurement:
        for r in self.rows:
            if r.model == model and r.impl == impl and batch_size in (None, r.batch_size):
                return r
        raise KeyError(f"{model} ({impl}, batch {batch_size}) is not in this bench")

    def with_peak(self, matmul_gflops: float) -> BenchResult:
        """The same measurements against another matmul peak (the best one seen over a long run), the roofline
        figures recomputed. A peak is a maximum: on a shared machine, more samples bring it closer to the truth."""
        device = dataclasses.replace(self.device, matmul_gflops=matmul_gflops)
        rows = []
        for r in self.rows:
            roof = None if r.intensity is None else min(matmul_gflops, r.intensity * device.bandwidth_gbs)
            rows.append(dataclasses.replace(r, peak_fraction=r.gflops / matmul_gflops, roof_gflops=roof))
        return BenchResult(device, rows)

    def to_dict(self) -> dict:
        return {"device": dataclasses.asdict(self.device), "rows": [dataclasses.asdict(r) for r in self.rows]}

    @classmethod
    def from_dict(cls, d: dict) -> BenchResult:
        rows = [Measurement(**{**r, "input_size": tuple(r["input_size"])}) for r in d["rows"]]
        return cls(DeviceInfo(**d["device"]), rows)

    @classmethod
    def load(cls, path: str | Path) -> BenchResult:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise CnnzooError(f"no bench file at {path}; run `cnnzoo bench MODEL... --out DIR` first") from None
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise CnnzooError(f"{path} is not a cnnzoo bench file ({exc})") from None

    def save(self, out: str | Path, stem: str = "bench") -> tuple[Path, Path]:
        """Write `out/stem.json` (everything, reloadable) and `out/stem.csv` (one line per measurement)."""
        from ..fileio import write_text

        out = Path(out)
        js, cs = out / f"{stem}.json", out / f"{stem}.csv"
        rows = io.StringIO(newline="")
        w = csv.writer(rows)
        w.writerow(["device", *(f.name for f in dataclasses.fields(Measurement))])
        for r in self.rows:
            w.writerow([self.device.device, *("x".join(map(str, v)) if isinstance(v, tuple) else v
                                              for v in dataclasses.astuple(r))])
        write_text(js, json.dumps(self.to_dict(), indent=1) + "\n")
        write_text(cs, rows.getvalue())
        return js, cs

    def table(self) -> str:
        """A fixed-width table, one line per measurement, the device and its peak in the heading."""
        head = (f"{'model':<22} {'impl':<11} {'mode':<5} {'batch':>5} {'input':>9} {'GMAC/img':>8} {'ms':>9} "
                f"{'(q1-q3)':>15} {'img/s':>8} {'GFLOP/s':>8} {'%peak':>6} {'peak MiB':>9} {'vs tv':>6}")
        lines = [str(self.device), head, "-" * len(head)]
        for r in self.rows:
            size = "x".join(map(str, r.input_size[1:]))
            mem = f"{r.peak_memory_bytes / 2**20:,.1f}" if r.peak_memory_bytes is not None else "-"
            ratio = f"{r.vs_torchvision:.2f}" if r.vs_torchvision is not None else ""
            spread = f"({r.latency_q1_ms:.4g}-{r.latency_q3_ms:.4g})"
            lines.append(f"{r.model:<22} {r.impl:<11} {r.mode:<5} {r.batch_size:>5} {size:>9} {r.macs / 1e9:>8.3f} "
                         f"{r.latency_ms:>9.4g} {spread:>15} {r.throughput:>8.1f} {r.gflops:>8.1f} "
                         f"{100 * r.peak_fraction:>5.1f}% {mem:>9} {ratio:>6}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def figure(self, impl: str = "cnnzoo"):
        """The roofline: achieved GFLOP/s against FLOPs per byte (inference rows), under min(peak, I x bandwidth)."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        rows = [r for r in self.rows if r.impl == impl and r.intensity is not None]
        d = self.device
        fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
        knee = d.matmul_gflops / d.bandwidth_gbs  # below this many FLOPs per byte, memory-bound
        xs = [r.intensity for r in rows] or [knee]
        lo, hi = min(min(xs) / 2, knee / 4), max(max(xs) * 2, knee * 4)
        ax.plot([lo, knee, hi], [lo * d.bandwidth_gbs, d.matmul_gflops, d.matmul_gflops], color="tab:red", lw=1.2,
                label=f"roof: {d.bandwidth_gbs:,.1f} GB/s x intensity, {d.matmul_gflops:,.0f} GFLOP/s matmul peak")
        for b in sorted({r.batch_size for r in rows}):
            pts = [r for r in rows if r.batch_size == b]
            ax.scatter([r.intensity for r in pts], [r.gflops for r in pts], s=25, zorder=3, label=f"batch {b}")
            for i, r in enumerate(pts):
                ax.annotate(r.model, (r.intensity, r.gflops), xytext=(4, 3 if i % 2 else -9),
                            textcoords="offset points", fontsize=7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            plain_log_labels(axis)
        ax.set_xlabel("arithmetic intensity, FLOPs per byte (weights + activations written and read)")
        ax.set_ylabel("achieved GFLOP/s (conv + fc)")
        ax.set_title(f"Roofline, {impl} models on {d.where}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        return fig


def plain_log_labels(axis) -> None:
    """Label a log axis 10, 20, 50, 100, not 10^1 and 2x10^1: decades as numbers, and the 2s and 5s between."""
    import matplotlib.ticker

    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))


# --- one step and its work ----------------------------------------------------------------------------------

def _outputs(out) -> list[torch.Tensor]:
    """The logits, and the auxiliary logits GoogLeNet returns in train mode."""
    return [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]


class Step:
    """One inference step (eval mode, no_grad) or training step (train mode, CE loss, backward, SGD momentum)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, mode: str) -> None:
        self.model, self.x, self.mode = model.train(mode == "train"), x, mode
        self.y = self.opt = None
        if mode == "train":
            self.y = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
            self.opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)

    def __call__(self) -> None:
        if self.opt is None:
            with torch.no_grad():
                self.model(self.x)
            return
        self.opt.zero_grad(set_to_none=True)
        sum(nn.functional.cross_entropy(o, self.y) for o in _outputs(self.model(self.x))).backward()
        self.opt.step()

    def live_tensors(self) -> list[torch.Tensor]:
        """What is live before a step: weights, buffers, the batch, the optimizer's momentum buffers."""
        state = [t for s in (self.opt.state.values() if self.opt else ()) for t in s.values()
                 if isinstance(t, torch.Tensor)]
        labels = [self.y] if self.y is not None else []
        return [*self.model.parameters(), *self.model.buffers(), self.x, *labels, *state]


def train_flops(name: str, input_size: tuple[int, int, int], batch_size: int) -> int:
    """Forward + backward conv/matmul FLOPs of one training step, counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    from ..models import create_model

    with torch.device("meta"):  # shapes only: nothing is allocated, initialisers do nothing
        net = create_model(name, in_chans=input_size[0])
    x = torch.empty(batch_size, *input_size, device="meta")
    with FlopCounterMode(display=False) as counter:
        sum(o.sum() for o in _outputs(net.train()(x))).backward()
    return counter.get_total_flops()


def _pair(name: str, device: torch.device, with_torchvision: bool) -> dict[str, nn.Module]:
    """cnnzoo's model, and torchvision's same model carrying the same weights (where it ships one)."""
    from ..models import create_model, get_card

    models = {"cnnzoo": create_model(name)}
    tv = get_card(name).torchvision
    if with_torchvision and tv == name:  # the *_v1 variants load torchvision's weights but compute differently
        import torchvision

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's GoogLeNet warns about its future initialisation
            models["torchvision"] = getattr(torchvision.models, tv)(weights=None)
        models["torchvision"].load_state_dict(models["cnnzoo"].state_dict())
    return {k: m.to(device) for k, m in models.items()}


def _time(step: Step, device: torch.device) -> float:
    sync(device)
    t = time.perf_counter()
    step()
    sync(device)
    return time.perf_counter() - t


def _quartiles(xs: Sequence[float]) -> tuple[float, float, float]:
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q1, q2, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return q1, q2, q3


# --- the benchmark ------------------------------------------------------------------------------------------

def bench(models: Sequence[str], device: str = "cpu", batch_sizes: Sequence[int] = (1,), mode: str = "infer",
          input_size=None, repeats: int = 10, warmup: int = 2, budget_s: float | None = None,
          min_repeats: int = 3, torchvision: bool = True, memory: bool = True, info: DeviceInfo | None = None,
          progress: Callable[[Measurement], None] | None = None) -> BenchResult:
    """Measure each model (and torchvision's, interleaved) at each batch size; see the module docstring.

    `input_size`: 224, (224, 224) or (3, 224, 224); by default each card's own (AlexNet's 227).
    `budget_s` bounds the timed steps of one model at one batch size: `repeats` is lowered (to no fewer than
    `min_repeats`) when the warm-up says they would take longer. `info` reuses a measured `device_info`.
    """
    from ..analysis import parse_input_size, profile
    from ..models import get_card

    if mode not in MODES:
        raise CnnzooError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if any(not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise CnnzooError(f"batch sizes must be whole numbers >= 1, got {list(batch_sizes)}")
    cards = {name: get_card(name) for name in models}  # unknown names fail here, before anything is measured
    info = info or device_info(device)
    dev = torch.device(info.device)
    result = BenchResult(info, [])
    for name, card in cards.items():
        size = parse_input_size(input_size, card.input_size)
        if min(size[1:]) < card.min_input_size:
            raise CnnzooError(f"{name} needs at least {card.min_input_size}x{card.min_input_size} "
                              f"({card.min_input_reason}); got {size[1]}x{size[2]}")
        prof = profile(name, input_size=size)
        nets = _pair(name, dev, torchvision)
        params = sum(p.numel() for p in nets["cnnzoo"].parameters())
        for b in batch_sizes:
            x = torch.randn(b, *size, device=dev)
            steps = {impl: Step(net, x, mode) for impl, net in nets.items()}
            try:
                for _ in range(warmup):
                    est = sum(_time(s, dev) for s in steps.values())
            except (RuntimeError, ValueError) as exc:  # batch norm on one value per channel, out of memory...
                msg = str(exc).strip().splitlines()[0]
                raise CnnzooError(f"{name} at batch {b}, {size[1]}x{size[2]}, {mode}: {msg}") from exc
            n = repeats
            if budget_s is not None and warmup:
                n = max(min_repeats, min(repeats, int(budget_s / max(est, 1e-9))))
            times: dict[str, list[float]] = {impl: [] for impl in steps}
            order = list(steps)
            for i in range(n):
                for impl in order if i % 2 == 0 else order[::-1]:
                    times[impl].append(_time(steps[impl], dev))
            flops = 2 * prof.conv_fc_macs * b if mode == "infer" else train_flops(name, size, b)
            for impl, step in steps.items():
                q1, med, q3 = _quartiles(times[impl])
                gflops = flops / med / 1e9
                row = Measurement(
                    model=name, impl=impl, mode=mode, batch_size=b, input_size=size, params=params,
                    macs=prof.conv_fc_macs, flops=flops, latency_ms=1e3 * med, latency_q1_ms=1e3 * q1,
                    latency_q3_ms=1e3 * q3, repeats=n, throughput=b / med, gflops=gflops,
                    peak_fraction=gflops / info.matmul_gflops)
                if mode == "infer":
                    nbytes = 4 * params + 2 * prof.allocated_bytes * b
                    row.intensity = flops / nbytes
                    row.roof_gflops = min(info.matmul_gflops, row.intensity * info.bandwidth_gbs)
                if memory:
                    row.peak_memory_bytes = peak_memory(step, dev, step.live_tensors())
                if impl == "cnnzoo" and "torchvision" in times:
                    pairs = zip(times["cnnzoo"], times["torchvision"])
                    row.vs_torchvision = statistics.median(ours / theirs for ours, theirs in pairs)
                result.rows.append(row)
                if progress is not None:
                    progress(row)
            del steps, x
        del nets
    return result
