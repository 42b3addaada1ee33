"""cnnzoo bench, recommend: "which architecture should I use?", measured here."""
from __future__ import annotations

import sys

from ..errors import CnnzooError
from .args import batch_sizes, count, input_size, nonneg_int, output_dir, positive_float, \
    positive_int, threads


def add(sub) -> None:
    p = sub.add_parser("bench", help="latency, throughput, peak memory and GFLOP/s on this machine (vs torchvision)",
                       description="Times freshly initialised models: a dense network does the same multiply-adds "
                                   "whatever its weights are, so bench takes no --weights (a flag accepted and "
                                   "ignored would suggest otherwise).")
    p.add_argument("models", nargs="+", metavar="MODEL", help="names or patterns ('resnet*'); 'all' = every model")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--batch-size", type=batch_sizes, default=[1], help="one or more, comma-separated: 1,32 (default 1)")
    p.add_argument("--mode", choices=["infer", "train"], default="infer",
                   help="infer: eval forward under no_grad; train: forward, loss, backward, SGD step")
    p.add_argument("--input-size", type=input_size, default=None, help="224, 224x224 or 3x224x224 (default: each model card's size)")
    p.add_argument("--repeats", type=positive_int, default=10, help="timed steps per model (median reported; default 10)")
    p.add_argument("--warmup", type=nonneg_int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--budget", type=positive_float, default=None, metavar="SECONDS",
                   help="at most this long timing one model at one batch size (fewer repeats, at least 3)")
    p.add_argument("--threads", type=threads, default=None, help="torch CPU threads (default: torch's, one per core)")
    p.add_argument("--no-torchvision", action="store_true", help="do not time torchvision's same model alongside")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory step")
    p.add_argument("--out", type=output_dir, default="runs/bench", help="writes bench.json and bench.csv here (default runs/bench)")
    p.set_defaults(run=_run_bench)

    p = sub.add_parser("recommend", help="which architecture for this machine: Pareto front of accuracy vs latency")
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="candidates (default: one per idea of the lecture, see cnnzoo.bench.TOUR_MODELS)")
    p.add_argument("--max-latency-ms", type=positive_float, default=None)
    p.add_argument("--max-params", type=count, default=None, help="e.g. 25M, 2.5e7")
    p.add_argument("--max-gflops", type=positive_float, default=None,
                   help="multiply-adds per image in G, the lecture's 'GFLOP' (ResNet-50: 4.1)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--batch-size", type=positive_int, default=1)
    p.add_argument("--input-size", type=input_size, default=None, help="default: each model card's size (224; AlexNet 227)")
    p.add_argument("--bench", default=None, metavar="FILE", help="reuse a saved bench.json instead of measuring")
    p.add_argument("--repeats", type=positive_int, default=5)
    p.add_argument("--warmup", type=nonneg_int, default=1)
    p.add_argument("--threads", type=threads, default=None, help="torch CPU threads while measuring (1: steadier)")
    p.add_argument("--out", type=output_dir, default="runs/recommend", help="writes recommend.png and recommend.json here")
    p.set_defaults(run=_run_recommend)


def _run_bench(args) -> int:
    import torch

    from ..bench import bench
    from ..models import list_models

    names = []
    for pattern in args.models:
        found = list_models("*" if pattern == "all" else pattern) if any(c in pattern for c in "*?[") \
            or pattern == "all" else [pattern]
        if not found:
            raise CnnzooError(f"no model matches {pattern!r}; run `cnnzoo list` to see every name")
        names += [n for n in found if n not in names]
    sizes = args.batch_size
    from ..analysis.budget import check_fits, inference_bytes, training_bytes

    estimate = training_bytes if args.mode == "train" else inference_bytes
    for name in names:  # before timing anything: one model that cannot fit would end the run midway
        need = estimate(name, args.input_size, max(sizes))
        check_fits(need, f"bench {name} ({args.mode}) at batch {max(sizes)}", "lower --batch-size or --input-size")
    if args.threads:
        torch.set_num_threads(args.threads)
    show = lambda r: print(f"  {r.model} ({r.impl}) batch {r.batch_size}: {r.latency_ms:.4g} ms", file=sys.stderr)  # noqa: E731
    result = bench(names, args.device, sizes, args.mode, args.input_size, args.repeats, args.warmup, args.budget,
                   torchvision=not args.no_torchvision, memory=not args.no_memory, progress=show)
    print(result.table())
    js, cs = result.save(args.out)
    print(f"\nwrote {js} and {cs}", file=sys.stderr)
    return 0


def _run_recommend(args) -> int:
    import json
    from pathlib import Path

    from ..bench import recommend

    rec = recommend(args.models or None, bench_file=args.bench, max_latency_ms=args.max_latency_ms,
                    max_params=args.max_params, max_gflops=args.max_gflops, device=args.device,
                    batch_size=args.batch_size, input_size=args.input_size, repeats=args.repeats, warmup=args.warmup,
                    threads=args.threads)
    print(rec)
    from ..fileio import write_text

    out = Path(args.out)
    png = rec.plot(out / "recommend.png")
    write_text(out / "recommend.json", json.dumps(rec.to_dict(), indent=1) + "\n")
    print(f"\nwrote {png} and {out / 'recommend.json'}", file=sys.stderr)
    return 0 if rec.choice else 1


