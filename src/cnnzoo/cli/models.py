"""cnnzoo list, info, tour, completion: finding one's way around the zoo.

`list` and `info` answer from the model table (`cnnzoo.catalog`), so they import no PyTorch; `info` builds the
model (on the meta device) only for its layer structure, which `--brief` skips.
"""
from __future__ import annotations

import sys

from .. import catalog
from ..errors import CnnzooError, unknown_name
from .args import output_dir

SHELLS = ("bash", "zsh", "fish")


def add(sub) -> None:
    p = sub.add_parser("list", help="the model table: family, year, parameters, MACs, published top-1")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'resnet*' (default: every model)")
    p.add_argument("--family", help="only families whose name contains this, e.g. resnet, 'mobilenet v2'")
    p.add_argument("--sort", choices=catalog.SORT_KEYS + ("top1",), default="name",
                   help="order of the rows (params, macs, year: ascending; top1: best first)")
    p.add_argument("--json", action="store_true", help="print the entries as one JSON document")
    p.set_defaults(run=_run_list)

    p = sub.add_parser("info", help="a model's card, parameter count and layer structure")
    p.add_argument("model")
    p.add_argument("--brief", action="store_true", help="the card and sizes only, without the layer structure")
    p.set_defaults(run=_run_info)

    p = sub.add_parser("tour", help="the whole lecture in one run, written to runs/tour/index.html")
    p.add_argument("--out", type=output_dir, default="runs/tour", help="where the tour writes its files (default runs/tour)")
    p.add_argument("--chapters", default=None, help="comma-separated: architectures,analysis,training,transfer,"
                                                    "deploy,recommendation,learned (default: all)")
    p.add_argument("--quick", action="store_true", help="3 training epochs instead of 20, fewer timed runs")
    p.set_defaults(run=_run_tour)

    p = sub.add_parser("completion", help="print the shell completion script (bash, zsh or fish)")
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(run=_run_completion)


def _top1(entry: dict) -> float | None:
    return entry.get("top1")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _with_weights(entry: dict) -> dict:
    """The catalog entry with its default published weights' top-1/top-5 and source (None where there are none)."""
    from ..pretrained import default

    p = default(entry["name"])
    return {**entry, "top1": p and p.top1, "top5": p and p.top5, "weights": p and p.source}


def _run_list(args) -> int:
    rows = [_with_weights(e) for e in catalog.entries(args.pattern, args.family,
                                                      "name" if args.sort == "top1" else args.sort)]
    if args.sort == "top1":
        rows.sort(key=lambda e: (_top1(e) is None, -(_top1(e) or 0)))
    if not rows:
        what = f"{args.pattern!r}" + (f" in a family containing {args.family!r}" if args.family else "")
        raise CnnzooError(f"no model matches {what}; run `cnnzoo list` to see every name")
    if args.json:
        import json

        print(json.dumps(rows, indent=1, ensure_ascii=False))
        return 0
    head = ("model", "family", "year", "params", f"MACs@{catalog.MACS_AT}", "input", "top-1", "top-5", "weights")
    table = [head] + [(e["name"], e["family"], str(e["year"]), catalog.human(e["params"]), catalog.human(e["macs"]),
                       str(e["input_size"]), _pct(e["top1"]), _pct(e["top5"]), e["weights"] or "-") for e in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    right = {2, 3, 4, 5, 6, 7}
    for r in table:
        print("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    print(f"\n{len(rows)} models; MACs = multiply-adds of one {catalog.MACS_AT}x{catalog.MACS_AT} image "
          "(the lecture's 'flop'); top-1/top-5: ImageNet, of the default published weights (`cnnzoo weights list`)",
          file=sys.stderr)
    return 0


def _run_info(args) -> int:
    entries = catalog.load()
    if args.model not in entries:
        raise unknown_name(args.model, entries)
    entry = entries[args.model]
    print(catalog.format_card(entry))
    print(f"\n{entry['params']:,} parameters (1000 classes); {catalog.human(entry['macs'])} multiply-adds at "
          f"{catalog.MACS_AT}x{catalog.MACS_AT}")
    from ..pretrained import published, why_none

    sets = published(args.model)
    for p in sets:
        acc = ", ".join(f"{k} {v:.2f}%" for k, v in (("top-1", p.top1), ("top-5", p.top5)) if v is not None)
        print(f"published weights: --weights {p.spec} ({p.source}, {p.file}): ImageNet {acc}")
    if not sets:
        print(f"published weights: none ({why_none(args.model)})")
    sys.stdout.flush()
    if not args.brief:
        from ..summary import format_summary, meta_model, summarize

        print("\n" + format_summary(summarize(args.model)) + "\n\n" + repr(meta_model(args.model)))
    return 0


def _run_tour(args) -> int:
    from ..tour import run_tour

    run_tour(out=args.out, chapters=args.chapters.split(",") if args.chapters else None, quick=args.quick)
    return 0


def _run_completion(args) -> int:
    import argcomplete

    print(argcomplete.shellcode(["cnnzoo"], shell=args.shell))
    return 0
