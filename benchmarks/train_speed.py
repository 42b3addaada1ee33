"""How fast does `cnnzoo train` train, against a minimal hand-written PyTorch loop, in the same run?

    .venv/bin/python benchmarks/train_speed.py                      # resnet18, digits, 32 px, CPU
    .venv/bin/python benchmarks/train_speed.py --model resnet50 --data synthetic:n=1024,size=128 --batch-size 32
    .venv/bin/python benchmarks/train_speed.py --device cuda --model resnet50 --data synthetic:n=4096,size=224 \
        --batch-size 128
    .venv/bin/python benchmarks/train_speed.py --acceptance          # the 60 s / 99% criterion, as a user runs it

Variants, each given the same model (`cnnzoo.create_model`, seed 0), the same data (the same `ImageDataset`
and train preset), the same batch size and precision:
- `minimal`: a hand-written loop (DataLoader with shuffle, the default optimizer (AdamW), OneCycleLR, label smoothing,
  autocast when not fp32), timed over its training loop;
- `cnnzoo`: `cnnzoo.train.train(...)`, timed over its training phase (its `images_per_s`, which leaves
  out validation and checkpoints, as the minimal loop has neither; their cost is reported apart).
Each in fp32 and in the device's fast path (bf16 autocast + channels_last on a CPU with bf16 instructions;
autocast + channels_last on CUDA). Rounds run the four variants interleaved (A B C D A B C D ...); each
ratio is the median of the per-round ratios, so a slow moment of a shared machine hits all variants alike.
A run whose model did not learn (test top-1 under twice chance) stops the benchmark: its speed would describe a
broken run.

`--compile` times instead `cnnzoo train` in its default precision with and without `--compile` (Inductor),
interleaved: the steady speed (epochs after the first), the first epoch's extra seconds (compilation; the first
round starts from an empty Inductor cache, later rounds find its files, as a user's second run does), and the
epochs after which compiling has paid for itself.

`--acceptance` runs `cnnzoo train --model resnet18 --data digits` with its defaults as a subprocess and
reports its wall time (start-up included) and test top-1, next to the hand-written fp32 loop's accuracy
at the same schedule. `--write` puts the figures into the "Training speed" section of RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from cnnzoo import create_model
from cnnzoo.data import ImageDataset, eval_transform, load_data, train_transform
from cnnzoo.train import read_metrics, train
from cnnzoo.train.distributed import pick_device
from cnnzoo.train.prepare import resolve
from results import put_subsection

HEADING = "## Training speed"
RESULTS = Path(__file__).with_name("RESULTS.md")


def minimal_loop(cfg, source, device: torch.device, epochs: int) -> dict:
    """The loop a user would write by hand. Returns train images/s and test top-1."""
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, num_classes=len(source.classes), in_chans=cfg.in_chans).to(device)
    fast = cfg.precision != "fp32"
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    tf = train_transform(cfg.input_size, cfg.mean, cfg.std, in_chans=cfg.in_chans, hflip=cfg.hflip,
                         scale=(cfg.scale_min, 1.0))
    loader = torch.utils.data.DataLoader(ImageDataset(source.splits["train"], tf, in_chans=cfg.in_chans),
                                         batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                                         pin_memory=device.type == "cuda")
    if cfg.opt == "adamw":  # the default
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    # OneCycleLR divides by (pct_start * total_steps - 1): zero for a 4-step run; keep each phase >= 1 step
    total = epochs * len(loader)
    pct = min(max(0.25, 2.0 / total), 0.5) if total > 2 else 0.5
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(total, 3), pct_start=pct)
    crit = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    seconds, images = 0.0, 0
    for _ in range(epochs):
        model.train()
        _sync(device)
        t0 = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=dtype, enabled=fast):
                loss = crit(model(x), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            images += len(y)
        _sync(device)
        seconds += time.perf_counter() - t0
    return {"images_per_s": images / seconds, "test_top1": _test(model, cfg, source, device)}


@torch.no_grad()
def _test(model, cfg, source, device) -> float | None:
    if "test" not in source.splits:
        return None
    model.eval()
    ds = ImageDataset(source.splits["test"], eval_transform(cfg.input_size, cfg.mean, cfg.std, in_chans=cfg.in_chans,
                                                           crop_pct=cfg.crop_pct), in_chans=cfg.in_chans)
    correct = n = 0
    for x, y in torch.utils.data.DataLoader(ds, batch_size=256):
        x = x.to(device)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16 if cfg.precision == "bf16" else torch.float16,
                            enabled=cfg.precision != "fp32"):
            correct += int((model(x).argmax(1).cpu() == y).sum())
        n += len(y)
    return correct / n


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cnnzoo_run(args, precision: str | None, channels_last: bool | None, epochs: int, out: Path,
               compile_: bool = False) -> dict:
    """`cnnzoo.train.train` with the benchmark's settings (None: cnnzoo's default); its figures and epoch rows."""
    s = train(model=args.model, data=args.data, epochs=epochs, batch_size=args.batch_size, precision=precision,
              channels_last=channels_last, input_size=args.input_size, threads=args.threads, device=args.device,
              compile=compile_, out=str(out), progress=False, tensorboard=False)
    rows = read_metrics(out)
    return {"images_per_s": s["images_per_s"], "test_top1": s.get("test_top1"), "rows": rows,
            "epoch_seconds": sum(r["seconds"] for r in rows) / len(rows), "train_seconds": s["train_seconds"] / len(rows)}


def learned_or_stop(variant: str, test_top1: float | None, classes: int) -> None:
    """Timings of a run whose model did not learn describe a broken run: say so and stop."""
    if test_top1 is not None and test_top1 < 2 / classes:  # data without a test split cannot be checked
        sys.exit(f"{variant}: test top-1 {100 * test_top1:.1f}% is under twice chance ({200 / classes:.0f}%): the "
                 f"model did not learn, so its speed is not reported")


def compile_speed(args, device: torch.device) -> str:
    """cnnzoo's default precision, eager against torch.compile, interleaved rounds (`--compile`)."""
    classes = len(load_data(args.data).classes)
    tmp = Path(tempfile.mkdtemp(prefix="train_compile-"))
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(tmp / "inductor")  # empty: the first round compiles from nothing
    runs: dict[str, list[dict]] = {"eager": [], "compiled": []}
    for r in range(args.rounds):
        for name in runs:
            torch._dynamo.reset()  # no compiled code carried over in this process; Inductor's file cache stays
            res = cnnzoo_run(args, None, None, args.epochs, tmp / f"{name}-{r}", compile_=name == "compiled")
            learned_or_stop(f"round {r + 1}, {name}", res["test_top1"], classes)
            rows = res["rows"]
            steady = statistics.median(row["images_per_s"] for row in rows[1:])
            later = statistics.median(row["seconds"] for row in rows[1:])
            runs[name].append({"steady": steady, "first_extra": rows[0]["seconds"] - later, "epoch_s": later,
                               "test_top1": res["test_top1"]})
            print(f"round {r + 1}  {name:<9} steady {steady:8.1f} img/s  first epoch +{rows[0]['seconds'] - later:6.1f} s"
                  f"  test top-1 {100 * (res['test_top1'] or 0):.2f}%", flush=True)
    eager, comp = runs["eager"], runs["compiled"]
    speedup = statistics.median(c["steady"] / e["steady"] for c, e in zip(comp, eager))
    saved = statistics.median(e["epoch_s"] - c["epoch_s"] for c, e in zip(comp, eager))
    cold = comp[0]["first_extra"] - eager[0]["first_extra"]
    warm = statistics.median(c["first_extra"] - e["first_extra"] for c, e in zip(comp[1:], eager[1:])) \
        if args.rounds > 1 else None  # one round has no warm cache
    pays = lambda cost: ("not measured (one round)" if cost is None else "never (no epoch is faster)" if saved <= 0
                         else "at once" if cost <= 0 else f"{cost / saved:.0f} epochs")
    lines = ["| | eager | torch.compile |", "|---|--:|--:|",
             f"| steady images/s (median of {args.rounds}) | {statistics.median(e['steady'] for e in eager):.1f} | "
             f"{statistics.median(c['steady'] for c in comp):.1f} |",
             f"| test top-1 (last round) | {100 * (eager[-1]['test_top1'] or 0):.2f}% | "
             f"{100 * (comp[-1]['test_top1'] or 0):.2f}% |",
             "", "| measure | value |", "|---|---|",
             f"| compiled / eager, steady images/s (median of per-round ratios) | {speedup:.2f}x |",
             f"| compilation, first round (empty Inductor cache) | {max(cold, 0):.0f} s |",
             f"| compilation, later rounds (cache warm; median) | "
             f"{'not measured (one round)' if warm is None else f'{max(warm, 0):.0f} s'} |",
             f"| seconds saved per epoch (median) | {saved:.2f} s |",
             f"| compiling pays for itself after (cold / warm cache) | {pays(cold)} / {pays(warm)} |"]
    return "\n".join(lines)


def speed(args, device: torch.device) -> tuple[str, dict]:
    from cnnzoo.train import build_config

    source = load_data(args.data)
    fast = "bf16" if device.type == "cpu" else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    variants = {"minimal fp32": ("fp32", False), f"minimal {fast}+CL": (fast, True),
                "cnnzoo fp32": ("fp32", False), f"cnnzoo {fast}+CL": (fast, True)}
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    tmp = Path(tempfile.mkdtemp(prefix="train_speed-"))
    for r in range(args.rounds):
        for name, (precision, cl) in variants.items():
            if name.startswith("minimal"):
                cfg = resolve(build_config(model=args.model, data=args.data, batch_size=args.batch_size,
                                           precision=precision, channels_last=cl, input_size=args.input_size,
                                           out=str(tmp / "unused")), source, device)
                res = minimal_loop(cfg, source, device, args.epochs)
            else:
                res = cnnzoo_run(args, precision, cl, args.epochs, tmp / f"{name.replace(' ', '_')}-{r}")
            learned_or_stop(f"round {r + 1}, {name}", res["test_top1"], len(source.classes))
            runs[name].append(res)
            print(f"round {r + 1}  {name:<18} {res['images_per_s']:8.1f} img/s  test top-1 "
                  f"{100 * res['test_top1']:.2f}%", flush=True)
    names = list(variants)
    ratio = lambda a, b: statistics.median(x["images_per_s"] / y["images_per_s"] for x, y in zip(runs[a], runs[b]))
    med = {n: statistics.median(x["images_per_s"] for x in runs[n]) for n in names}
    ratios = {"cnnzoo / minimal, fp32": ratio(names[2], names[0]),
              f"cnnzoo / minimal, {fast}+CL": ratio(names[3], names[1]),
              f"cnnzoo {fast}+CL / minimal fp32": ratio(names[3], names[0]),
              f"minimal {fast}+CL / minimal fp32": ratio(names[1], names[0])}
    lines = [f"| variant | images/s (median of {args.rounds}) | test top-1 (last round) |", "|---|---|---|"]
    lines += [f"| {n} | {med[n]:.1f} | {100 * runs[n][-1]['test_top1']:.2f}% |" for n in names]
    lines += ["", "| ratio (median of per-round ratios) | value |", "|---|---|"]
    lines += [f"| {k} | {v:.2f}x |" for k, v in ratios.items()]
    zoo = runs[names[3]]
    lines.append(f"\ncnnzoo's validation + checkpoint per epoch: "
                 f"{statistics.median(z['epoch_seconds'] - z['train_seconds'] for z in zoo):.2f} s "
                 f"(not in images/s; the minimal loop has neither).")
    return "\n".join(lines), ratios


def acceptance(args) -> str:
    """`cnnzoo train --model resnet18 --data digits` as a user runs it: wall time and test top-1."""
    out = Path(tempfile.mkdtemp(prefix="acceptance-")) / "run"
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "cnnzoo", "train", "--model", "resnet18", "--data", "digits", "--out", str(out),
           "--progress", "false"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(proc.stderr)
    res = json.loads((out / "results.json").read_text())
    cfg = (out / "config.yaml").read_text()
    precision = re.search(r"^precision: (\S+)", cfg, re.M).group(1)
    print(proc.stdout)
    # The hand-written loop in fp32, same schedule and data: the accuracy the fast path must match.
    from cnnzoo.train import build_config

    source = load_data("digits")
    device = pick_device("cpu")
    plain = resolve(build_config(model="resnet18", data="digits", precision="fp32", channels_last=False,
                                 out=str(out) + "-minimal"), source, device)
    t0 = time.perf_counter()
    ref = minimal_loop(plain, source, device, plain.epochs)
    ref_wall = time.perf_counter() - t0
    return (f"`cnnzoo train --model resnet18 --data digits` (defaults: {res['epochs']} epochs, {precision}): "
            f"test top-1 **{100 * res['test_top1']:.2f}%** ({res['test_images']} images), wall time "
            f"**{wall:.1f} s** (start-up, {res['epochs']} epochs with validation and checkpoints, test), "
            f"training phase {res['train_seconds']:.1f} s at {res['images_per_s']:.0f} images/s.\n\n"
            f"The minimal fp32 loop, same schedule and data, in this process: test top-1 "
            f"{100 * ref['test_top1']:.2f}%, {ref_wall:.1f} s (training and test, no start-up, no validation), "
            f"{ref['images_per_s']:.0f} images/s: cnnzoo's default is {res['images_per_s'] / ref['images_per_s']:.2f}x "
            f"its throughput.")


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"CPU {platform.processor() or platform.machine()}, {cores} cores, {torch.get_num_threads()} threads, "
            f"torch {torch.__version__}, load average {load:.1f} at the start")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet18")
    p.add_argument("--data", default="digits")
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2, help="epochs per timed run (default 2)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--acceptance", action="store_true", help="time the default digits run as a user would")
    p.add_argument("--compile", action="store_true", help="cnnzoo train with and without --compile (Inductor)")
    p.add_argument("--write", action="store_true", help="write the figures into benchmarks/RESULTS.md")
    p.add_argument("--note", default="", help="a sentence about the conditions")
    args = p.parse_args(argv)
    if args.compile and args.epochs < 2:
        p.error("--compile needs --epochs 2 or more: the first epoch compiles, the later ones give the speed")
    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.acceptance:
        title, body = "Acceptance: resnet18 on digits with the defaults", acceptance(args)
    elif args.compile:
        size = f" at {args.input_size} px" if args.input_size else ""
        title = f"torch.compile: {args.model} on {args.data}{size}, batch {args.batch_size}, {device.type}"
        body = (f"{args.rounds} rounds x 2 variants interleaved, {args.epochs} epochs each, default precision.\n\n"
                f"{compile_speed(args, device)}")
    else:
        table, _ = speed(args, device)
        title = f"{args.model} on {args.data}, batch {args.batch_size}, {device.type}"
        body = (f"{args.rounds} rounds x 4 variants interleaved, {args.epochs} epochs each.\n\n{table}")
    body = f"{machine(device)}. {args.note}\n\n{body}"
    print(f"### {title}\n\n{body}")
    if args.write:
        put_subsection(RESULTS, HEADING, f"### {title}\n\n{body.strip()}\n", key=f"### {title}\n")


if __name__ == "__main__":
    main()
