"""cnnzoo list, info, tour: finding one's way around the zoo."""
from __future__ import annotations

from ..errors import CnnzooError


def add(sub) -> None:
    p = sub.add_parser("list", help="list the registered models (fnmatch pattern, e.g. 'resnet*')")
    p.add_argument("pattern", nargs="?", default="*")
    p.set_defaults(run=_run_list)

    p = sub.add_parser("info", help="a model's card, parameter count and layer structure")
    p.add_argument("model")
    p.set_defaults(run=_run_info)

    p = sub.add_parser("tour", help="the whole lecture in one run, written to runs/tour/index.html")
    p.add_argument("--out", default="runs/tour", help="where the tour writes its files (default runs/tour)")
    p.add_argument("--chapters", default=None, help="comma-separated: architectures,analysis,training,transfer,"
                                                    "deploy,recommendation (default: all)")
    p.add_argument("--quick", action="store_true", help="3 training epochs instead of 20, fewer timed runs")
    p.set_defaults(run=_run_tour)


def _run_list(args) -> int:
    from ..models import get_card, list_models

    names = list_models(args.pattern)
    if not names:
        raise CnnzooError(f"no model matches {args.pattern!r}; run `cnnzoo list` to see every name")
    width = max(map(len, names))
    for name in names:
        card = get_card(name)
        print(f"{name:<{width}}  {card.family} ({card.year})")
    return 0


def _run_info(args) -> int:
    from ..summary import describe

    print(describe(args.model))
    return 0


def _run_tour(args) -> int:
    from ..tour import run_tour

    run_tour(out=args.out, chapters=args.chapters.split(",") if args.chapters else None, quick=args.quick)
    return 0


