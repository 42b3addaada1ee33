"""The learning-rate range test (`cnnzoo lr-find`): loss against an exponentially rising rate, as fastai's lr_find.

Smith (2017, "Cyclical Learning Rates for Training Neural Networks", section 3.3): train for a few
batches while the rate rises from `start_lr` to `end_lr`, lr_i = start * (end / start) ** (i / (steps - 1)),
and watch the loss. The loss is smoothed by an exponential moving average with bias correction (beta = 0.98,
as fastai), s_i = a_i / (1 - beta ** (i + 1)) with a_i = beta * a_{i-1} + (1 - beta) * loss_i, and the test stops
once s_i > 4 x the lowest s so far (the loss has diverged) or is not finite.

Two suggestions, as fastai gives:
- steepest: the rate where s falls fastest against log10(lr) (the minimum of ds / dlog10(lr)), ignoring the
  first 10 and last 5 points (the average is still warming up there, and the end is divergence);
- min/10: a tenth of the rate of the lowest smoothed loss (one decade before the loss turns up).
The suggestion is `steepest` when there are at least 20 points to take a slope over, else `min/10`; the
result says which. It is a peak rate for one-cycle training (fastai's fit_one_cycle) rather than a constant one.

The model's weights and buffers (batch-norm statistics) are restored afterwards; the optimizer is thrown away.
(The module is not called lr_find: importing it would shadow the function `cnnzoo.train.lr_find`.)
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Iterable

import torch

from ..errors import CnnzooError

BETA, DIVERGE, SKIP_START, SKIP_END, MIN_POINTS = 0.98, 4.0, 10, 5, 20


@dataclasses.dataclass
class LRFinding:
    """The curve (rate, raw and smoothed loss per step) and the suggested rate."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    method: str  # "steepest" or "min/10"
    steepest: float | None
    min_div10: float
    stopped: str  # why the test ended
    chart: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        steep = f"{self.steepest:.3g}" if self.steepest is not None else "-"
        return (f"suggested lr {self.suggestion:.3g} ({self.method}; steepest descent {steep}, "
                f"min/10 {self.min_div10:.3g}); {len(self.lrs)} steps, {self.stopped}"
                + (f"; chart {self.chart}" if self.chart else ""))


def _batches(loader) -> Iterable:
    """The loader's batches, over and over (a new epoch's order each pass)."""
    epoch = 0
    while True:
        if hasattr(getattr(loader, "sampler", None), "set_epoch"):
            loader.sampler.set_epoch(epoch)
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise CnnzooError("the training split yielded no batch; lower --batch-size or check the data")
        epoch += 1


def range_test(model: torch.nn.Module, loader, optimizer: torch.optim.Optimizer, loss_fn, *,
               device: torch.device = torch.device("cpu"), start_lr: float = 1e-7, end_lr: float = 10.0,
               steps: int = 100, precision: str = "fp32", channels_last: bool = False) -> LRFinding:
    """Run the range test on `model` with `optimizer` over `loader`'s (x, y[, ...]) batches; restore the model."""
    if not (0 < start_lr < end_lr) or steps < 2:
        raise CnnzooError(f"need 0 < start_lr < end_lr and at least 2 steps; got {start_lr:g}, {end_lr:g}, {steps}")
    from .evaluation import autocast

    saved = copy.deepcopy(model.state_dict())
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    lrs, raw, smooth = [], [], []
    avg, best, stopped = 0.0, math.inf, f"reached {end_lr:g}"
    model.train()
    try:
        for i, batch in zip(range(steps), _batches(loader)):
            x, y = batch[0].to(device), batch[1].to(device)
            if not len(y):
                continue
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            lr = start_lr * (end_lr / start_lr) ** (i / (steps - 1))
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast(device, precision):
                loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            value = float(loss.detach())
            avg = BETA * avg + (1 - BETA) * value
            s = avg / (1 - BETA ** (len(raw) + 1))
            lrs.append(lr), raw.append(value), smooth.append(s)
            if not math.isfinite(s) or s > DIVERGE * best:
                stopped = f"stopped at lr {lr:.3g}: the smoothed loss {s:.3g} passed {DIVERGE:g} x its minimum"
                break
            best = min(best, s)
    finally:
        model.load_state_dict(saved)
    if not lrs:
        raise CnnzooError("the range test took no step: every batch was empty")
    return _suggest(lrs, raw, smooth, stopped)


def _suggest(lrs: list[float], raw: list[float], smooth: list[float], stopped: str) -> LRFinding:
    finite = [i for i, s in enumerate(smooth) if math.isfinite(s)]
    low = min(finite, key=lambda i: smooth[i])
    min_div10 = lrs[low] / 10
    steepest = None
    if len(finite) >= MIN_POINTS:
        # central differences of s against log10(lr) (one-sided at the ends), the most negative wins
        logs = [math.log10(lrs[i]) for i in finite]
        vals = [smooth[i] for i in finite]
        slope = {}
        for k in range(SKIP_START, len(finite) - SKIP_END):
            a, b = max(k - 1, 0), min(k + 1, len(finite) - 1)
            slope[k] = (vals[b] - vals[a]) / (logs[b] - logs[a])
        steepest = lrs[finite[min(slope, key=slope.get)]]
    method = "steepest" if steepest is not None else "min/10"
    return LRFinding(lrs, raw, smooth, steepest if steepest is not None else min_div10, method, steepest, min_div10,
                     stopped)


def plot(finding: LRFinding, path: str | os.PathLike, title: str = "") -> str:
    """The smoothed loss against the rate (log axis), with both suggestions marked; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(finding.lrs, finding.losses, color="0.8", lw=0.8, label="loss")
    ax.plot(finding.lrs, finding.smoothed, color="C0", label="smoothed loss")
    marks = [("steepest", finding.steepest, "C3"), ("min/10", finding.min_div10, "C2")]
    for name, lr, color in marks:
        if lr is not None:
            chosen = " (suggested)" if name == finding.method else ""
            ax.axvline(lr, color=color, ls="--", lw=1, label=f"{name} {lr:.2g}{chosen}")
    ax.set_xscale("log")
    shown = [s for s in finding.smoothed if math.isfinite(s)]
    ax.set_ylim(min(shown) * 0.95, min(max(shown), DIVERGE * min(shown)) * 1.05)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(title or "learning-rate range test")
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.stem}.tmp-{os.getpid()}{p.suffix}")
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, p)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return str(p)


def lr_find(config_file: str | None = None, *, start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100,
            chart: str | os.PathLike | None = None, **overrides: Any) -> LRFinding:
    """The range test for a training config (`cnnzoo train`'s settings: model, data, batch size, optimizer,
    precision, augmentation...). The model is built as `train` builds it; `chart` writes the PNG."""
    from .config import build_config
    from .distributed import DistEnv, pick_device
    from .prepare import cpu_threads

    cfg = build_config(config_file, **overrides)
    if not cfg.model or not cfg.data:
        raise CnnzooError("lr-find needs --model and --data (as cnnzoo train does)")
    env = DistEnv(device=pick_device(cfg.device))
    with cpu_threads(cfg, env):
        return _find(cfg, env, start_lr, end_lr, steps, chart)


def _find(cfg, env, start_lr: float, end_lr: float, steps: int, chart) -> LRFinding:
    from ..models import create_model
    from ..weights import load_pretrained
    from .loop import loss_of
    from .optim import build_optimizer
    from .prepare import build_loaders, load_source, read_start_weights, resolve

    source = load_source(cfg)
    notes: list[str] = []
    weights = read_start_weights(cfg, source, notes)
    cfg = resolve(cfg, source, env.device)
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, num_classes=len(source.classes), in_chans=cfg.in_chans)
    if weights is not None:
        load_pretrained(model, weights, log=notes.append)
    model = model.to(env.device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loader = build_loaders(cfg, source, env)["train"]
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    finding = range_test(model, loader, build_optimizer(model, cfg), lambda out, y: loss_of(out, y, criterion),
                         device=env.device, start_lr=start_lr, end_lr=end_lr, steps=steps,
                         precision=cfg.precision, channels_last=bool(cfg.channels_last))
    if chart:
        finding.chart = plot(finding, chart, f"{cfg.model} on {source.name}, batch {cfg.batch_size}, {cfg.opt}")
    return finding
