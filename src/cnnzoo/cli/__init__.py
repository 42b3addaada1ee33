"""The `cnnzoo` command. Thin: each command parses its arguments and calls one library function.

One module per command group (models, analysis, training, bench, transfer, deploy, explain), each with an `add(sub)` that
adds its subcommands; `args` holds the argument types they share. Nothing here imports torch at module level:
`cnnzoo --help`, `--version` and `list` answer without it, and a command imports the library only when it runs.

A user error (a `CnnzooError`) is printed as one line, `cnnzoo: error: ...`, with exit status 2.
"""
from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from ..errors import CnnzooError
from . import analysis, bench, deploy, explain, models, training, transfer
from .examples import epilog

GROUPS = (models, analysis, training, bench, transfer, deploy, explain)
MODEL_ARGUMENTS = {"model", "models", "pattern"}  # completed with the model names


class Parser(argparse.ArgumentParser):
    """argparse with every error, a subcommand's too, as the one line `cnnzoo: error: ...` (exit 2), which points
    to the command's --help rather than printing its usage."""

    def error(self, message: str):
        words = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        self.exit(2, f"cnnzoo: error: {words}{message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cnnzoo", description="The classic CNN architectures, analysed and trained.")
    parser.add_argument("--version", action="version", version=f"cnnzoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add(sub)
    _finish(parser, "")
    return parser


def subcommands(parser: argparse.ArgumentParser, words: str = ""):
    """(words, parser) of every command and action below `parser`: ("train", p), ("data check", q), ..."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                path = f"{words} {name}".strip()
                yield path, child
                yield from subcommands(child, path)


def _finish(parser: argparse.ArgumentParser, words: str) -> None:
    """Examples at the end of every command's help; model names completed wherever a model is named."""
    for path, child in subcommands(parser, words):
        child.epilog = epilog(path)
        child.formatter_class = argparse.RawDescriptionHelpFormatter
        for action in child._actions:
            if action.dest in MODEL_ARGUMENTS:
                action.completer = _model_names


def _model_names(**_) -> list[str]:
    from .. import catalog

    return list(catalog.load())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # a shell asking for completions (`cnnzoo completion`): answer and exit
        import argcomplete

        argcomplete.autocomplete(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a refused argument returns 2 like any other error; --help, --version exit
        if exc.code != 2:
            raise
        return 2
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
