"""Bench every registered model on this machine; write the figures into benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/bench_all.py                      # CPU, batch 1 for all, batch 32 for the small
    .venv/bin/python benchmarks/bench_all.py --device cuda        # on a GPU: every model at batch 1 and 32
    .venv/bin/python benchmarks/bench_all.py --threads 1 --budget 10

Each model runs at its card's input size (224; AlexNet 227) in inference, interleaved with torchvision's same
model where torchvision ships it (see `cnnzoo.bench.bench` for the protocol). The run time is bounded: each model
at each batch size gets at most `--budget` seconds of timed steps (fewer repeats for the big ones, never fewer
than 3), and on the CPU batch 32 is measured only for models under `--batch32-max-gmac` multiply-adds per image.
The raw results go to `--out` (bench.json, bench.csv; reusable by `cnnzoo recommend --bench`), and the section
"Bench: every model on this machine" of RESULTS.md gets this device's table (other sections are left alone).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from cnnzoo import get_card, list_models
from cnnzoo.analysis import profile
from cnnzoo.bench import BenchResult, bench, device_info, matmul_peak
from results import put_subsection

HEADING = "## Bench: every model on this machine"
RESULTS = Path(__file__).with_name("RESULTS.md")


def markdown(result: BenchResult, seconds: float, note: str) -> str:
    """This device's subsection: the machine, the method, then one table per batch size."""
    d = result.device
    lines = [f"### {d.device}: {d.name}, {d.threads} {'thread' if d.device == 'cpu' else 'SM'}"
             f"{'' if d.threads == 1 else 's'}",
             "",
             f"Measured {d.date[:10]} on `{d.host}` with torch {d.torch}, in {seconds / 60:.1f} minutes. "
             f"Matmul peak {d.matmul_gflops:,.0f} GFLOP/s ({d.matmul_precision}, the best of one measurement "
             "before each model"
             + (f"; bf16 {d.bf16_gflops:,.0f}" if d.bf16_gflops else "")
             + f"), copy bandwidth {d.bandwidth_gbs:,.1f} GB/s, both measured in the same process. {note}",
             "",
             "Columns: latency is the median of the timed runs (q1-q3 in brackets, n = runs); GFLOP/s counts 2 "
             "FLOPs per conv/fc multiply-add; % peak is of the matmul peak; peak MiB is weights + batch + every "
             "live activation (cnnzoo.bench.memory); tv ms is torchvision's same model, timed interleaved with "
             "ours, and ours/tv the median of the per-round ratios (below 1: ours faster).", ""]
    for b in sorted({r.batch_size for r in result.rows}):
        rows = [r for r in result.rows if r.batch_size == b and r.impl == "cnnzoo"]
        tv = {r.model: r for r in result.rows if r.batch_size == b and r.impl == "torchvision"}
        lines += [f"Batch {b}, inference, {len(rows)} model{'s' if len(rows) > 1 else ''}, fastest first:", "",
                  "| model | family | input | GMAC/img | Mparams | ms (q1-q3) | n | img/s | GFLOP/s | % peak "
                  "| peak MiB | tv ms | ours/tv |",
                  "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for r in sorted(rows, key=lambda r: r.latency_ms):
            t = tv.get(r.model)
            mem = f"{r.peak_memory_bytes / 2**20:,.1f}" if r.peak_memory_bytes is not None else ""
            lines.append(
                f"| {r.model} | {get_card(r.model).family} | {r.input_size[1]} | {r.macs / 1e9:.3f} | "
                f"{r.params / 1e6:.1f} | {r.latency_ms:,.1f} ({r.latency_q1_ms:,.1f}-{r.latency_q3_ms:,.1f}) | "
                f"{r.repeats} | {r.throughput:,.1f} | {r.gflops:,.1f} | {100 * r.peak_fraction:.0f} | {mem} | "
                f"{f'{t.latency_ms:,.1f}' if t else ''} | {f'{r.vs_torchvision:.2f}' if t else ''} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--models", default="*", help="fnmatch pattern (default: every registered model)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--budget", type=float, default=12.0, help="seconds of timed steps per model and batch size")
    p.add_argument("--batch32-max-gmac", type=float, default=None,
                   help="batch 32 only below this many GMAC per image (default: 1 on the CPU, all on CUDA)")
    p.add_argument("--out", default="runs/bench_all", help="raw results (bench.json, bench.csv)")
    p.add_argument("--results", default=str(RESULTS), help="the Markdown file to update")
    p.add_argument("--note", default="", help="a sentence about the conditions (load, other jobs)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    info = device_info(args.device)
    print(info, file=sys.stderr)
    names = list_models(args.models)
    limit = args.batch32_max_gmac if args.batch32_max_gmac is not None else (1.0 if args.device == "cpu" else 1e9)
    big = {n for n in names if profile(n).conv_fc_macs / 1e9 > limit}
    result = BenchResult(info, [])
    peak, loads = info.matmul_gflops, []
    for batch, todo in ((1, names), (32, [n for n in names if n not in big])):
        for i, name in enumerate(todo):
            t = time.time()
            # The peak again before every model: the best of all these is the ceiling (neighbours' load only
            # ever lowers a sample), and every row's % of peak is recomputed against it at the end.
            peak = max(peak, matmul_peak(args.device, sizes=(1024,) if args.device == "cpu" else (8192,)))
            loads.append(os.getloadavg()[0])
            part = bench([name], args.device, (batch,), "infer", None, args.repeats, args.warmup, args.budget,
                         info=info)
            result.rows += part.rows
            r = part.rows[0]
            print(f"[batch {batch} {i + 1}/{len(todo)}] {name}: {r.latency_ms:,.1f} ms, n={r.repeats}"
                  f"{f', ours/tv {r.vs_torchvision:.2f}' if r.vs_torchvision else ''} ({time.time() - t:.0f} s)",
                  file=sys.stderr, flush=True)
            result = result.with_peak(peak)
            result.save(args.out)  # after each model: a long run that stops keeps what it measured
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    note = (f"{args.note} The 1-minute load average, read before each model, went from {min(loads):.1f} to "
            f"{max(loads):.1f} (median {sorted(loads)[len(loads) // 2]:.1f}) on {cores} cores.")
    if big:
        note += f" Batch 32 only for the {len(names) - len(big)} models under {limit:g} GMAC per image."
    sub = markdown(result, time.time() - t0, note.strip())
    put_subsection(Path(args.results), HEADING, sub, key=sub.split(":", 1)[0])  # "### cpu" or "### cuda"
    print(f"wrote {args.out}/bench.json and the section of {args.results} ({(time.time() - t0) / 60:.1f} min)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
