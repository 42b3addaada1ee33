"""The argument types every command shares: nonsense is refused by the parser, before any work starts.

Each is an argparse `type=`: it returns the parsed value or raises `argparse.ArgumentTypeError`, which argparse
prints as one line (`cnnzoo COMMAND: error: argument --lr: ...`) with exit status 2. No torch here: the parser must
load in milliseconds.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

MAX_SIDE = 4096  # input side: 4096^2 x 3 floats is 200 MB per image, already past any network here
MAX_CHANS = 64  # input channels: RGB, grey, multispectral; 10^6 is a typo, not a sensor


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except (TypeError, ValueError):
        word = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {word}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _bounded(kind: type, low: float, strict: bool, what: str, high: float | None = None):
    """An argument type for numbers of `kind` that are >= low (> low when `strict`) and <= high."""
    word = "a whole number" if kind is int else "a number"

    def parse(text: str):
        value = _number(text, kind)
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"expected {word} {'>' if strict else '>='} {low:g}, got {text!r}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"expected {word} <= {high:g}, got {text!r}")
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
seed = _bounded(int, 0, False, "seed", 2**32 - 1)  # numpy's seeds are 32-bit
side = _bounded(int, 1, False, "side", MAX_SIDE)
channels = _bounded(int, 1, False, "channels", MAX_CHANS)
threads = _bounded(int, 1, False, "threads", 1024)


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


def fraction(text: str) -> float:
    """A fraction in (0, 1]: a crop or an area share that cannot be empty."""
    value = _number(text, float)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text!r}")
    return value


def split_fraction(text: str) -> float:
    """A share of the images split off: [0, 1), something must be left to train on."""
    value = _number(text, float)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def comma_list(item, what: str, plural: str = "numbers"):
    """An argument type for comma-separated values, each parsed by `item`: 1,32 or 0.5,0.5,0.5."""

    def parse(text: str) -> list:
        parts = [t.strip() for t in str(text).split(",")]
        if not text.strip() or any(not t for t in parts):
            raise argparse.ArgumentTypeError(f"expected comma-separated values like {what}, got {text!r}")
        try:
            return [item(t) for t in parts]
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"expected {plural} like {what} ({exc})") from None

    parse.__name__ = f"list of {getattr(item, '__name__', 'values')}"
    return parse


floats = comma_list(finite_float, "0.485,0.456,0.406")
positive_floats = comma_list(positive_float, "0.229,0.224,0.225")
batch_sizes = comma_list(positive_int, "1,32", "whole numbers")


def input_size(text: str) -> str:
    """224, 224x199 or 3x224x224: each side 1..MAX_SIDE, channels 1..MAX_CHANS; returned as typed."""
    parts = str(text).lower().split("x")
    if not 1 <= len(parts) <= 3:
        raise argparse.ArgumentTypeError(f"expected a size like 224, 224x199 or 3x224x224, got {text!r}")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 224, 224x199 or 3x224x224, got {text!r}") from None
    sides = values[1:] if len(values) == 3 else values
    if len(values) == 3 and not 1 <= values[0] <= MAX_CHANS:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_CHANS} channels, got {text!r}")
    if any(not 1 <= v <= MAX_SIDE for v in sides):
        raise argparse.ArgumentTypeError(f"expected sides from 1 to {MAX_SIDE} pixels, got {text!r}")
    return text


# --- paths: checked when parsed, so a typo fails before a model loads or a folder is made ----------------
_VIRTUAL = ("/proc", "/sys", "/dev")  # kernel file systems: nothing of ours belongs there


def existing(text: str) -> str:
    """A file or folder that exists (an input)."""
    if not text or not os.path.exists(os.path.expanduser(text)):
        raise argparse.ArgumentTypeError(f"no such file or folder: {text!r}")
    return text


def existing_file(text: str) -> str:
    """A file that exists (an input)."""
    existing(text)
    if os.path.isdir(os.path.expanduser(text)):
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; a file is needed")
    return text


def _writable_below(p: Path, text: str) -> None:
    """The nearest existing folder above `p` must be a writable folder outside the kernel's file systems."""
    full = Path(os.path.abspath(p))
    if any(str(full) == v or str(full).startswith(v + "/") for v in _VIRTUAL):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {full.parts[1]}/ is a kernel file system")
    up = full.parent
    while not up.exists():
        up = up.parent
    if not up.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {up} is a file, not a folder")
    if not os.access(up, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {up} is not writable")


def output_file(text: str) -> str:
    """A file to write: not a folder, under a folder that exists or can be made, writable."""
    if not text:
        raise argparse.ArgumentTypeError("expected a file name, got ''")
    p = Path(os.path.expanduser(text))
    if p.is_dir() or text.endswith(os.sep):
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; a file name is needed")
    if p.exists() and not os.access(p, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: the file is not writable")
    _writable_below(p, text)
    return text


def output_dir(text: str) -> str:
    """A folder to write into: an existing folder, or one that can be made."""
    if not text:
        raise argparse.ArgumentTypeError("expected a folder name, got ''")
    p = Path(os.path.expanduser(text))
    if p.exists() and not p.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write into {text!r}: it is a file, not a folder")
    if p.is_dir():
        _writable_below(p / "x", text)
    else:
        _writable_below(p, text)
    return text


# The types of `cnnzoo train`/`transfer`'s flags, by TrainConfig field (others: from the annotation).
TRAIN_TYPES = {
    # lr 0 is allowed: a run that must leave the weights as they are (a frozen check)
    "epochs": positive_int, "batch_size": positive_int, "lr": nonneg_float, "momentum": probability,
    "weight_decay": nonneg_float, "warmup_epochs": nonneg_float, "step_epochs": positive_int,
    "step_gamma": positive_float, "label_smoothing": split_fraction, "grad_clip": positive_float,
    "seed": seed, "workers": nonneg_int, "threads": threads, "input_size": side, "in_chans": channels,
    "mean": floats, "std": positive_floats, "crop_pct": fraction, "scale_min": fraction,
    "val": split_fraction, "test": split_fraction, "split_seed": seed, "out": output_dir,
}
