"""Deterministic stratified splits, and `cnnzoo data split`, which writes one as a CSV (no image is copied).

Each class is shuffled on its own with the seed and cut in the same proportions, so every split keeps
the class balance of the whole; the same files and seed always give the same split.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from ..errors import CnnzooError
from ..fileio import write_text


def stratified_split(labels: list[int], *, val: float, test: float, seed: int = 0) -> dict[str, list[int]]:
    """Indices of train/val/test (val and test only when their fraction is > 0), stratified by label.

    A class with n samples gives round(n * test) to test and round(n * val) to val, at least one each
    when n >= 3 and the fraction is positive, and always keeps one for train.
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise CnnzooError(f"val ({val}) and test ({test}) must be fractions in [0, 1) that sum to less than 1")
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for c in np.unique(labels_arr):
        idx = np.flatnonzero(labels_arr == c)
        idx = idx[rng.permutation(len(idx))]
        n = len(idx)
        n_test = _share(n, test)
        n_val = min(_share(n, val), n - 1 - n_test) if n - 1 - n_test > 0 else 0
        parts["test"] += idx[:n_test].tolist()
        parts["val"] += idx[n_test:n_test + n_val].tolist()
        parts["train"] += idx[n_test + n_val:].tolist()
    return {k: sorted(v) for k, v in parts.items() if v or k == "train"}


def _share(n: int, fraction: float) -> int:
    if fraction <= 0 or n < 2:
        return 0
    k = max(int(round(n * fraction)), 1 if n >= 3 else 0)
    return min(k, n - 1)


def split_to_csv(root: str, *, val: float = 0.1, test: float = 0.1, seed: int = 0, out: str | None = None,
                 force: bool = False) -> tuple[Path, dict[str, int]]:
    """Split a folder of class folders into train/val/test and write `path,label,split` rows to a CSV.

    Paths are written relative to the CSV's folder, so the CSV and the images can move together.
    Returns the CSV's path and the number of images per split. Refuses to overwrite without `force`.
    """
    from .datasets import _check_classes, scan_class_folders, split_folders

    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise CnnzooError(f"{root!r} is not a folder; `data split` takes a folder of class folders")
    if split_folders(folder):
        raise CnnzooError(f"{root} is already split into {'/'.join(split_folders(folder))} folders; train on it directly")
    found = scan_class_folders(folder)
    _check_classes(found, folder)
    classes = list(found)
    paths = [p for c in classes for p in found[c]]
    labels = [i for i, c in enumerate(classes) for _ in found[c]]
    parts = stratified_split(labels, val=val, test=test, seed=seed)
    target = Path(out) if out else folder / "split.csv"
    if target.exists() and not force:
        raise CnnzooError(f"{target} already exists; pass --out to write elsewhere or --force to replace it")
    split_of = {i: name for name, idx in parts.items() for i in idx}
    base = target.resolve().parent
    rows = io.StringIO(newline="")
    w = csv.writer(rows)
    w.writerow(["path", "label", "split"])
    for i, p in enumerate(paths):
        w.writerow([os.path.relpath(p.resolve(), base), classes[labels[i]], split_of[i]])
    write_text(target, rows.getvalue())
    return target, {name: len(idx) for name, idx in parts.items()}
