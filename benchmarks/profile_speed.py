"""How fast is `cnnzoo.profile` against the profilers people use, on the same models in the same run?

Peers (each given the same real model, eval mode, random weights, one image):
- fvcore `FlopCountAnalysis(...).total()`       (torch.jit.trace + per-op handles, a real forward)
- ptflops `get_model_complexity_info`           (module hooks + patched functionals, a real forward)
- torchinfo `summary`                           (module hooks, a real forward)
- torch `FlopCounterMode` around a real forward  (the dispatch-mode counter that ships with PyTorch)
and, for reference, FlopCounterMode around a meta-device forward, which is shape-only like cnnzoo's.

cnnzoo is timed twice: given the same real model (it copies it structurally; the copy is in the time) and given
the model's name (it builds it on the meta device; the build is in the time).

The peers are not installed with cnnzoo. To run them too:

    .venv/bin/python -m pip install fvcore ptflops torchinfo
    .venv/bin/python benchmarks/profile_speed.py            # --rounds 7 --big-rounds 1 --models alexnet,vgg16

A peer that is not importable is skipped with a note. The variants run interleaved (A B C A B C ...), and each
ratio is the median of the per-round ratios, so a slow moment of a shared machine hits every variant alike.

Sizes. At 224 pixels every variant runs `--rounds` times (after a warm-up call each); at 1024, where a real
forward is (1024/224)^2 = 21x the work, `--big-rounds` times. At 4096 pixels (334x the work) only the fastest
peer at 224 runs, once, in a subprocess (its warm-up is the one call), and only where that is bounded: its 224
time x 334 must be at most `--max-call-s` seconds (the subprocess is stopped at 3x that), and the largest layer
output (cnnzoo's figure) at most `--max-layer-gib` GiB, as a forward holds a layer's input and output and a
shared machine must keep its memory. The script prints which ran and which were skipped, with the arithmetic.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import cnnzoo
from cnnzoo.analysis.meta import meta_copy

SIZES = (224, 1024, 4096)
SHAPE_ONLY = ("cnnzoo (model)", "cnnzoo (name)", "FlopCounterMode (meta)")


def peers(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Callable[[], float]]:
    """name -> a call that profiles `model` on `x` and returns the total it reports (G, its own unit)."""
    out: dict[str, Callable[[], float]] = {}
    try:
        from fvcore.nn import FlopCountAnalysis

        def fvcore_total() -> float:
            fca = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return fca.total() / 1e9

        out["fvcore"] = fvcore_total
    except ImportError:
        print("note: fvcore is not installed; skipped (pip install fvcore)")
    try:
        from ptflops import get_model_complexity_info

        def ptflops_total() -> float:
            with contextlib.redirect_stdout(io.StringIO()):
                macs, _ = get_model_complexity_info(model, tuple(x.shape[1:]), as_strings=False,
                                                    print_per_layer_stat=False, backend="pytorch")
            return macs / 1e9

        out["ptflops"] = ptflops_total
    except ImportError:
        print("note: ptflops is not installed; skipped (pip install ptflops)")
    try:
        from torchinfo import summary

        out["torchinfo"] = lambda: summary(model, input_data=x, verbose=0).total_mult_adds / 1e9
    except ImportError:
        print("note: torchinfo is not installed; skipped (pip install torchinfo)")

    def fcm_real() -> float:
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
        return counter.get_total_flops() / 2e9

    out["FlopCounterMode"] = fcm_real
    return out


def shape_only(model: torch.nn.Module, name: str, side: int) -> dict[str, Callable[[], float]]:
    def fcm_meta() -> float:
        meta = meta_copy(model).eval()
        counter = FlopCounterMode(display=False)
        with counter:
            meta(torch.empty(1, 3, side, side, device="meta"))
        return counter.get_total_flops() / 2e9

    return {
        "FlopCounterMode (meta)": fcm_meta,
        "cnnzoo (model)": lambda: cnnzoo.profile(model, side).conv_fc_macs / 1e9,
        "cnnzoo (name)": lambda: cnnzoo.profile(name, side).conv_fc_macs / 1e9,
    }


def interleaved(variants: dict[str, Callable[[], float]], rounds: int) -> tuple[dict[str, list[float]], dict]:
    times: dict[str, list[float]] = {k: [] for k in variants}
    totals = {k: f() for k, f in variants.items()}  # warm-up (and the total each reports)
    for _ in range(rounds):
        for k, f in variants.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return times, totals


def ratio(times: dict[str, list[float]], peer: str, base: str = "cnnzoo (model)") -> float:
    """The median of the per-round ratios peer time / cnnzoo time."""
    return statistics.median(a / b for a, b in zip(times[peer], times[base]))


def fastest_peer(times: dict[str, list[float]]) -> str:
    return min((k for k in times if k not in SHAPE_ONLY), key=lambda k: statistics.median(times[k]))


def report(times: dict[str, list[float]], totals: dict[str, float]) -> None:
    print(f"  {'profiler':<24} {'median ms':>10} {'x cnnzoo':>9} {'G reported':>11}")
    for k, ts in times.items():
        print(f"  {k:<24} {statistics.median(ts) * 1e3:>10.1f} {ratio(times, k):>9.1f} {totals[k]:>11.3f}")


BIG_CALL = """
import json, resource, sys, time, torch, torchvision
sys.path.insert(0, {bench!r})
from profile_speed import peers
torch.set_num_threads({threads})
model = torchvision.models.get_model({name!r}).eval()
x = torch.randn(1, 3, {side}, {side})
call = peers(model, x)[{peer!r}]
with torch.no_grad():
    peers(model, torch.randn(1, 3, 224, 224))[{peer!r}]()
    t = time.perf_counter()
    total = call()
    seconds = time.perf_counter() - t
print(json.dumps({{"seconds": seconds, "total": total,
                  "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}}))
"""


def big_peer(name: str, peer: str, side: int, threads: int, timeout: float) -> dict | None:
    """One call of `peer` on `name` at side x side in a fresh process: time, total, peak RSS (None: timed out).

    The process first makes one call at 224, so that the timed one pays no one-time cost (imports, a first
    dispatch mode's)."""
    code = BIG_CALL.format(bench=os.path.dirname(os.path.abspath(__file__)), threads=threads, name=name, side=side,
                           peer=peer)
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                              check=True)
    except subprocess.TimeoutExpired:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def rss_probe(name: str, side: int) -> str:
    """Peak RSS before and after profiling in a fresh process: the activations never exist."""
    code = (f"import resource, cnnzoo; cnnzoo.profile('resnet18', 64); "
            f"a = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; p = cnnzoo.profile('{name}', {side}); "
            f"b = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            f"print(a // 1024, b // 1024, p.allocated_kb / 2**20)")
    before, after, acts = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                         check=True).stdout.split()
    return (f"{name} at {side}x{side}: peak RSS {before} MiB before, {after} MiB after profiling; a real forward "
            f"would allocate {float(acts):,.1f} GiB of layer outputs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="alexnet,vgg16,googlenet,resnet50,mobilenet_v2,densenet121")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds at 224 and, shape-only, at 4096")
    parser.add_argument("--big-rounds", type=int, default=1, help="timed rounds at 1024 (every peer)")
    parser.add_argument("--max-call-s", type=float, default=60.0,
                        help="at 4096: run the fastest peer where its 224 time x (4096/224)^2 is at most this")
    parser.add_argument("--max-layer-gib", type=float, default=2.0,
                        help="at 4096: run the fastest peer where the largest layer output is at most this")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads (default 1: on a shared 2-core machine a 2-thread forward waits at "
                             "every barrier for a descheduled partner, which would flatter cnnzoo)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    started = time.time()
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPU "
          f"cores, torch {torch.__version__} ({torch.get_num_threads()} threads), torchvision "
          f"{torchvision.__version__}, load average {os.getloadavg()[0]:.1f}")
    summary: dict[str, dict[int, str]] = {}
    for name in args.models.split(","):
        model = torchvision.models.get_model(name).eval()
        summary[name] = {}
        fastest_224 = None
        for side, rounds in ((224, args.rounds), (1024, args.big_rounds)):
            x = torch.randn(1, 3, side, side)
            print(f"\n{name} at {side}x{side}, {rounds} rounds (real forward for the peers; G = what each reports, "
                  f"in its own unit; load average {os.getloadavg()[0]:.1f})")
            with torch.no_grad():
                times, totals = interleaved({**shape_only(model, name, side), **peers(model, x)}, rounds)
            report(times, totals)
            peer = fastest_peer(times)
            summary[name][side] = f"{ratio(times, peer):.1f}x ({peer}, {statistics.median(times[peer]):.2f} s)"
            if side == 224:
                fastest_224 = (peer, statistics.median(times[peer]))
        summary[name][4096] = at_4096(model, name, fastest_224, args)
    print("\ncnnzoo (given the model) against the fastest forward-based peer at each size (median of per-round "
          "ratios at 224 and 1024; at 4096 the peer's one call over cnnzoo's median):")
    for name, by_size in summary.items():
        print(f"  {name:<14} " + " | ".join(f"{side}: {by_size[side]}" for side in SIZES))
    print("\n" + rss_probe("vgg16", 4096))
    print(f"(this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB; "
          f"the run took {(time.time() - started) / 60:.1f} min)")


def at_4096(model: torch.nn.Module, name: str, fastest: tuple[str, float], args: argparse.Namespace) -> str:
    """The shape-only profilers at 4096, and the fastest peer at 224 once, where its bounds allow."""
    side = 4096
    with torch.no_grad():
        times, totals = interleaved(shape_only(model, name, side), args.rounds)
    print(f"  at {side}x{side}: " + ", ".join(f"{k} {statistics.median(v) * 1e3:.1f} ms ({totals[k]:,.1f} G)"
                                             for k, v in times.items()))
    cnnzoo_s = statistics.median(times["cnnzoo (model)"])
    peer, t224 = fastest
    estimate = t224 * (side / 224) ** 2
    largest = max(r.memory_bytes for r in cnnzoo.profile(model, side).rows) / 2**30
    bounds = (f"{t224 * 1e3:.0f} ms at 224 x {(side / 224) ** 2:.0f} = {estimate:.0f} s (bound {args.max_call_s:.0f}"
              f" s); largest layer output {largest:.2f} GiB (bound {args.max_layer_gib:.1f} GiB)")
    if estimate > args.max_call_s or largest > args.max_layer_gib:
        print(f"  {peer} at {side}: skipped: {bounds}")
        return f"skipped ({bounds})"
    result = big_peer(name, peer, side, args.threads, timeout=3 * args.max_call_s)
    if result is None:
        print(f"  {peer} at {side}: stopped after {3 * args.max_call_s:.0f} s ({bounds})")
        return f"over {3 * args.max_call_s:.0f} s ({peer})"
    print(f"  {peer} at {side}: {result['seconds']:.1f} s, {result['total']:,.1f} G, peak RSS "
          f"{result['peak_rss_gib']:.1f} GiB, one call in a fresh process ({bounds})")
    return f"{result['seconds'] / cnnzoo_s:,.0f}x ({peer}, {result['seconds']:.1f} s)"


if __name__ == "__main__":
    main()
