"""The argument types every command shares: nonsense is refused by the parser, before any work starts.

Each is an argparse `type=`: it returns the parsed value or raises `argparse.ArgumentTypeError`, which argparse
prints as one line (`cnnzoo COMMAND: error: argument --lr: ...`) with exit status 2. No torch here: the parser must
load in milliseconds.
"""
from __future__ import annotations

import argparse
import math


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except (TypeError, ValueError):
        word = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {word}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _bounded(kind: type, low: float, strict: bool, what: str):
    """An argument type for numbers of `kind` that are >= low (> low when `strict`)."""
    word = "a whole number" if kind is int else "a number"

    def parse(text: str):
        value = _number(text, kind)
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"expected {word} {'>' if strict else '>='} {low:g}, got {text!r}")
        return value

    parse.__name__ = what
    return parse


def finite_float(text: str) -> float:
    """Any finite number: nan and inf are refused."""
    return _number(text, float)


positive_float = _bounded(float, 0, True, "positive_float")
nonneg_float = _bounded(float, 0, False, "nonneg_float")
positive_int = _bounded(int, 1, False, "positive_int")
nonneg_int = _bounded(int, 0, False, "nonneg_int")


def probability(text: str) -> float:
    """A fraction in [0, 1]."""
    value = _number(text, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}")
    return value


def port(text: str) -> int:
    """A TCP port; 0 asks the system for a free one."""
    value = _number(text, int)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port between 0 and 65535, got {text!r}")
    return value


def count(text: str) -> float:
    """25M -> 25e6; 500k, 1.5G, 2.5e7 as they are."""
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(text[-1:].lower(), 1)
    try:
        value = float(text[:-1] if scale != 1 else text) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count like 25M or 2.5e7, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive count like 25M or 2.5e7, got {text!r}")
    return value
