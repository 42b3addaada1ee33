"""A task carved out of a data set: some of its classes, and a few labelled images of each.

`select(source, classes="5-9", shots=5, seed=0)` keeps the images of classes 5..9, relabels them 0..4 in
that order, and keeps `shots` training images per class, drawn with `seed` (so seeds differ in which
images they see, and the spread over seeds includes that luck). Val and test keep every image of the
chosen classes. A few-shot task drops its val split: its K labelled images per class are all the
labels it has, so it trains for a fixed number of epochs and is judged on the test split once.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..data import DataSource, Split
from ..errors import CnnzooError


def parse_classes(text: str | list | tuple | range | None, names: list[str]) -> list[int] | None:
    """Class indices from "5-9", "3,5,7", "cat,dog" or a list of names/indices; None keeps all classes."""
    if text is None:
        return None
    items = [str(t) for t in text] if not isinstance(text, str) else [t.strip() for t in text.split(",") if t.strip()]
    picked: list[int] = []
    for item in items:
        lo, dash, hi = item.partition("-")
        if item in names:
            picked.append(names.index(item))
        elif dash and lo in names and hi in names:
            a, b = names.index(lo), names.index(hi)
            picked += list(range(a, b + 1)) if a <= b else []
        elif item.isdigit() and int(item) < len(names):
            picked.append(int(item))
        else:
            shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
            raise CnnzooError(f"no class {item!r} in the data (classes: {shown}); use names or ranges such as 5-9")
    if len(set(picked)) != len(picked) or len(picked) < 2:
        raise CnnzooError(f"--classes {text!r} must name at least two different classes, each once")
    return picked


def select(source: DataSource, classes: str | list | tuple | range | None = None, shots: int | None = None,
           seed: int = 0) -> DataSource:
    """The part of `source` with `classes` (relabelled 0..k-1) and at most `shots` training images per class."""
    keep = parse_classes(classes, source.classes)
    if keep is None and shots is None:
        return source
    keep = keep if keep is not None else list(range(len(source.classes)))
    new_label = {old: new for new, old in enumerate(keep)}
    splits = {}
    for name, split in source.splits.items():
        if name == "val" and shots is not None:
            continue
        labels = np.asarray(split.labels)
        chosen = np.flatnonzero(np.isin(labels, keep))
        if name == "train" and shots is not None:
            if shots < 1:
                raise CnnzooError(f"--shots must be at least 1, got {shots}")
            rng = np.random.default_rng(seed)
            per_class = []
            for c in keep:
                idx = np.flatnonzero(labels == c)
                if len(idx) < shots:
                    raise CnnzooError(f"class {source.classes[c]} has {len(idx)} training images, "
                                      f"fewer than --shots {shots}")
                per_class.append(rng.choice(idx, size=shots, replace=False))
            chosen = np.sort(np.concatenate(per_class))
        splits[name] = _subset(split, chosen, new_label)
    return dataclasses.replace(source, classes=[source.classes[c] for c in keep], splits=splits)


def _subset(split: Split, idx: np.ndarray, new_label: dict[int, int]) -> Split:
    labels = [new_label[split.labels[i]] for i in idx]
    if split.images is not None:
        return Split(labels, images=split.images[torch.as_tensor(idx, dtype=torch.long)])
    return Split(labels, paths=[split.paths[i] for i in idx])
