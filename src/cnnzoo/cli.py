"""The `cnnzoo` command. Thin: each command parses its arguments and calls one library function.

A user error (a `CnnzooError`) is printed as one line, `cnnzoo: error: ...`, with exit status 2.
Each command adds itself in its own `_add_*` function; `main` lists them.
"""
from __future__ import annotations

import argparse
import sys

from .errors import CnnzooError


# --- models: list, info, tour ------------------------------------------------------------------------------

def _add_models(sub) -> None:
    p = sub.add_parser("list", help="list the registered models (fnmatch pattern, e.g. 'resnet*')")
    p.add_argument("pattern", nargs="?", default="*")
    p.set_defaults(run=_run_list)

    p = sub.add_parser("info", help="a model's card, parameter count and layer structure")
    p.add_argument("model")
    p.set_defaults(run=_run_info)

    p = sub.add_parser("tour", help="the lecture, architecture by architecture")
    p.add_argument("--out", default="runs/tour", help="where the tour writes its files (default runs/tour)")
    p.set_defaults(run=_run_tour)


def _run_list(args) -> int:
    from .models import get_card, list_models

    names = list_models(args.pattern)
    if not names:
        raise CnnzooError(f"no model matches {args.pattern!r}; run `cnnzoo list` to see every name")
    width = max(map(len, names))
    for name in names:
        card = get_card(name)
        print(f"{name:<{width}}  {card.family} ({card.year})")
    return 0


def _run_info(args) -> int:
    from .summary import describe

    print(describe(args.model))
    return 0


def _run_tour(args) -> int:
    from .tour import run_tour

    run_tour(out=args.out)
    return 0


# --- main --------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnzoo", description="The classic CNN architectures, analysed and trained.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_models,):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except CnnzooError as exc:
        print(f"cnnzoo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cnnzoo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
