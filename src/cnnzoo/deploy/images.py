"""Untrusted images in: path expansion and the model's eval preprocessing.

Decoding itself (limits, formats, 16-bit scaling, JPEG draft) is `cnnzoo.data.decode`, the one decoder
training, predict, serve and data check share; its names are re-exported here.
"""
from __future__ import annotations

import dataclasses
import glob

import os
from pathlib import Path

import torch
from PIL import Image

from ..data import eval_transform
from ..data.datasets import Unreadable, is_image_file
from ..data.decode import MAX_PIXELS, ImageRejected, decode_image, header_pixels, read_image  # noqa: F401
from ..errors import CnnzooError
from .meta import ModelMeta


@dataclasses.dataclass
class Failure:
    """An input that could not be used, and why."""

    input: str
    error: str


def expand_inputs(items: list[str]) -> tuple[list[Path], list[Failure]]:
    """Files, folders (their image files, recursively) and glob patterns, in order, without duplicates."""
    found: list[Path] = []
    failures: list[Failure] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f))
            if not files:
                failures.append(Failure(item, "folder holds no image files"))
        elif p.is_file():
            files = [p]
        elif glob.has_magic(item):
            files = sorted(Path(f) for f in glob.glob(os.path.expanduser(item), recursive=True) if os.path.isfile(f))
            if not files:
                failures.append(Failure(item, "no file matches the pattern"))
        else:
            failures.append(Failure(item, "no such file or folder"))
            continue
        found += files
    seen: set[Path] = set()
    unique = [f for f in found if not (f.resolve() in seen or seen.add(f.resolve()))]
    return unique, failures


class Preprocess:
    """PIL image -> the normalised C x H x W tensor the model was evaluated on (the trainer's eval preset),
    or with `tta` (flip, 5crop, 10crop) its V x C x H x W test-time views (`data.tta.Views`)."""

    def __init__(self, meta: ModelMeta, tta: str | None = None) -> None:
        from ..data.tta import Views

        self.mode = "L" if meta.in_chans == 1 else "RGB"
        args = (meta.input_size, meta.mean, meta.std)
        kw = {"in_chans": meta.in_chans, "crop_pct": meta.crop_pct}
        self.transform = Views(tta, *args, **kw) if tta else eval_transform(*args, **kw)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.transform(img)


def real_images(meta: ModelMeta, n: int = 16, split: str = "test") -> tuple[torch.Tensor | None, str]:
    """Up to `n` preprocessed images of the data set the model was trained on, and where they came from.

    Evenly spaced over the split, so every class shows up. (None, reason) when the data is not at hand.
    """
    if not meta.data:
        return None, "the model does not name its training data"
    from ..data import ImageDataset, load_data

    try:
        source = load_data(meta.data, **meta.split)
    except CnnzooError as exc:
        return None, f"training data {meta.data!r} is not readable here ({exc})"
    part = source.splits.get(split) or source.splits.get("val") or source.splits["train"]
    ds = ImageDataset(part, Preprocess(meta).transform, in_chans=meta.in_chans)
    step = max(1, len(ds) // n)
    xs = [s[0] for s in (ds[i] for i in range(0, len(ds), step)) if not isinstance(s, Unreadable)]
    if not xs:
        return None, f"no image of {meta.data!r} could be read"
    return torch.stack(xs[:n]), f"{len(xs[:n])} {split} images of {source.name}"


def sample_images(meta: ModelMeta, folder: str | os.PathLike, n: int = 5,
                  split: str = "test") -> list[tuple[Path, str]]:
    """`n` images of the model's own data set as files (written as PNGs for in-memory sets such as digits,
    else the existing files), each with its true class: real inputs for `predict` and the web page.
    The classes take turns, so ten digits are one of each."""
    from ..data import load_data

    if not meta.data:
        raise CnnzooError("the model does not name its training data; pass image files instead")
    source = load_data(meta.data, **meta.split)
    part = source.splits.get(split) or source.splits["train"]
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(part.labels):
        by_class.setdefault(label, []).append(i)
    queues = [by_class[c] for c in sorted(by_class)]
    idx = [q[k] for k in range(max(map(len, queues))) for q in queues if k < len(q)][:n]
    if part.paths is not None:
        return [(Path(part.paths[i]), source.classes[part.labels[i]]) for i in idx]
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i in idx:
        img = part.images[i]
        img = (img.float() * 255 if img.is_floating_point() else img.float()).round().clamp(0, 255).to(torch.uint8)
        arr = img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()
        label = source.classes[part.labels[i]]
        path = out / f"{source.name}-{split}{i}-{label}.png"
        Image.fromarray(arr).save(path)
        files.append((path, label))
    return files
