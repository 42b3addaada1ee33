"""User-facing errors: the CLI prints these as one line, never as a traceback."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class CnnzooError(Exception):
    """A problem with the user's input that the message explains and says how to fix."""


class UnknownModelError(CnnzooError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def unknown_name(name: str, known: Iterable[str]) -> UnknownModelError:
    """The error for a model name that is not among `known`, with the closest names as a hint."""
    close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.5)
    hint = f"did you mean: {', '.join(close)}?" if close else "run `cnnzoo list` to see every name."
    return UnknownModelError(f"unknown model {name!r}; {hint}")
