"""How fast is `cnnzoo.profile` against the profilers people use, on the same models in the same run?

Peers (each given the same real model, eval mode, random weights, one 224x224 image):
- fvcore `FlopCountAnalysis(...).total()`       (torch.jit.trace + per-op handles, a real forward)
- ptflops `get_model_complexity_info`           (module hooks + patched functionals, a real forward)
- torchinfo `summary`                           (module hooks, a real forward)
- torch `FlopCounterMode` around a real forward  (the dispatch-mode counter that ships with PyTorch)
and, for reference, FlopCounterMode around a meta-device forward, which is shape-only like cnnzoo's.

cnnzoo is timed twice: given the same real model (it copies it to the meta device; the copy is in the time)
and given the model's name (it builds it on the meta device; the build is in the time).

The peers are not installed with cnnzoo. To run them too:

    .venv/bin/python -m pip install fvcore ptflops torchinfo
    .venv/bin/python benchmarks/profile_speed.py            # --rounds 7 --threads 2 --models alexnet,vgg16

A peer that is not importable is skipped with a note. The variants run interleaved (A B C A B C ...), and each
ratio is the median of the per-round ratios, so a slow moment of a shared machine hits every variant alike.
At 1024 and 4096 pixels only the shape-only profilers run: a real forward of VGG-16 at 4096 pixels would need
tens of GiB of activations (the script prints cnnzoo's figure) and minutes per call.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import cnnzoo
from cnnzoo.analysis.meta import meta_copy

SIZES = (224, 1024, 4096)


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


def report(times: dict[str, list[float]], totals: dict[str, float], base: str) -> None:
    print(f"  {'profiler':<24} {'median ms':>10} {'x cnnzoo':>9} {'G reported':>11}")
    for k, ts in times.items():
        ratio = statistics.median(a / b for a, b in zip(ts, times[base]))
        print(f"  {k:<24} {statistics.median(ts) * 1e3:>10.1f} {ratio:>9.1f} {totals[k]:>11.3f}")


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
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads (default 1: on a shared 2-core machine a 2-thread forward waits at "
                             "every barrier for a descheduled partner, which would flatter cnnzoo)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    print(f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), torchvision {torchvision.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}")
    speedups = []
    for name in args.models.split(","):
        model = torchvision.models.get_model(name).eval()
        x = torch.randn(1, 3, 224, 224)
        print(f"\n{name} at 224x224 (real forward for the peers; G = what each reports, in its own unit; "
              f"load average {os.getloadavg()[0]:.1f})")
        with torch.no_grad():
            times, totals = interleaved({**shape_only(model, name, 224), **peers(model, x)}, args.rounds)
        report(times, totals, "cnnzoo (model)")
        forward = [k for k in times if k not in ("cnnzoo (model)", "cnnzoo (name)", "FlopCounterMode (meta)")]
        fastest = min(forward, key=lambda k: statistics.median(times[k]))
        ratio = statistics.median(a / b for a, b in zip(times[fastest], times["cnnzoo (model)"]))
        speedups.append((name, fastest, ratio))
        for side in SIZES[1:]:
            t2, tot2 = interleaved(shape_only(model, name, side), args.rounds)
            print(f"  at {side}x{side}: " + ", ".join(f"{k} {statistics.median(v) * 1e3:.1f} ms ({tot2[k]:,.1f} G)"
                                                       for k, v in t2.items()))
    print("\nfastest forward-based peer at 224, and cnnzoo's speedup over it (median of per-round ratios):")
    for name, peer, ratio in speedups:
        print(f"  {name:<14} {peer:<16} {ratio:6.1f}x")
    print("\n" + rss_probe("vgg16", 4096))
    print(f"(this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB)")


if __name__ == "__main__":
    main()
