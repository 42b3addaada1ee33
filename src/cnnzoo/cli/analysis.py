"""cnnzoo profile, compare: the lecture's per-layer analysis."""
from __future__ import annotations

import sys

from ..errors import CnnzooError
from .args import input_size, output_dir, positive_int


_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


def add(sub) -> None:
    p = sub.add_parser("profile", help="the lecture's per-layer table: memory, params, flops (meta device)")
    p.add_argument("model")
    p.add_argument("--input-size", type=input_size, default=None, help="227, 227x199 or 3x227x227 (default: the model card's size)")
    p.add_argument("--batch-size", type=positive_int, default=1, help="memory and flops are for the whole batch (default 1)")
    p.add_argument("--depth", type=positive_int, default=None, help="one row per module N levels down, with subtotals")
    p.add_argument("--only", default=None, metavar="TYPES",
                   help="row types to show, e.g. conv,pool,flatten,fc ('lecture' = those four, the lecture's table)")
    p.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table")
    p.add_argument("--flops", choices=["mac", "flop"], default="mac",
                   help="mac: multiply-adds, the lecture's 'flop' (default); flop: 2 x multiply-adds (JSON stays MAC)")
    p.add_argument("--dtype", choices=sorted(_DTYPES), default="float32", help="sets bytes per element")
    p.add_argument("--train-memory", metavar="OPTIMIZER", choices=["sgd", "momentum", "adam", "adamw"], default=None,
                   help="also estimate one training step's memory at this batch size with this optimizer")
    p.set_defaults(run=_run_profile)

    p = sub.add_parser("compare", help="models side by side, with ratios to the first (and the lecture's charts)")
    p.add_argument("models", nargs="+")
    p.add_argument("--input-size", type=input_size, default=None, help="one size for all (default: each model card's size)")
    p.add_argument("--batch-size", type=positive_int, default=1)
    p.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table")
    p.add_argument("--plot", metavar="DIR", type=output_dir, default=None,
                   help="write per-layer bar charts, the totals and the Canziani chart as PNG and SVG into DIR")
    p.set_defaults(run=_run_compare)


def _run_profile(args) -> int:
    import torch

    from ..analysis import profile, training_memory
    from ..analysis.ops import KINDS

    dtype = getattr(torch, _DTYPES[args.dtype])
    prof = profile(args.model, args.input_size, args.batch_size, dtype)
    if args.only:
        types = ("conv", "pool", "flatten", "fc") if args.only == "lecture" else tuple(args.only.split(","))
        unknown = sorted(set(types) - set(KINDS))
        if unknown:
            raise CnnzooError(f"unknown row type(s) {', '.join(unknown)}; choose from {', '.join(KINDS)} or 'lecture'")
        prof = prof.select(*types)
    if args.depth is not None:
        prof = prof.group(args.depth)
    mem = training_memory(args.model, args.input_size, args.batch_size, args.train_memory, dtype) \
        if args.train_memory else None
    if args.format == "json":
        import dataclasses
        import json

        out = prof.to_dict()
        if mem is not None:
            out["training_memory"] = {**dataclasses.asdict(mem), "total_bytes": mem.total_bytes}
        print(json.dumps(out, indent=1))
        return 0
    print({"table": prof.table, "markdown": prof.markdown, "csv": prof.csv}[args.format](flops=args.flops))
    if mem is not None:
        print(("# " if args.format == "csv" else "") + str(mem))
    return 0


def _run_compare(args) -> int:
    from ..analysis import compare

    comp = compare(args.models, args.input_size, args.batch_size)
    text = {"table": comp.table, "markdown": lambda: comp.table(markdown=True), "csv": comp.csv,
            "json": comp.json}[args.format]()
    print(text)
    if args.plot:
        from ..analysis.plots import plot_comparison

        paths = plot_comparison(comp, args.plot)
        print(f"\nwrote {len(paths)} files to {args.plot}: " + ", ".join(p.name for p in paths), file=sys.stderr)
    return 0


