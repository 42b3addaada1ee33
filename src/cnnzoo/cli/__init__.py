"""The `cnnzoo` command. Thin: each command parses its arguments and calls one library function.

One module per command group (models, analysis, training, bench, transfer, deploy), each with an `add(sub)` that
adds its subcommands; `args` holds the argument types they share. Nothing here imports torch at module level:
`cnnzoo --help`, `--version` and `list` answer without it, and a command imports the library only when it runs.

A user error (a `CnnzooError`) is printed as one line, `cnnzoo: error: ...`, with exit status 2.
"""
from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import CnnzooError
from . import analysis, bench, deploy, models, training, transfer

GROUPS = (models, analysis, training, bench, transfer, deploy)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnzoo", description="The classic CNN architectures, analysed and trained.")
    parser.add_argument("--version", action="version", version=f"cnnzoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add(sub)
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
    except BrokenPipeError:  # `cnnzoo profile vgg16 | head`: the reader left; not an error worth a traceback
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
