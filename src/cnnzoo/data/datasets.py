"""Where the images come from: image folders, a CSV of annotations, scikit-learn's digits, or synthetic noise.

`load_data(spec)` reads a data set's *description* (which images, which labels, which split) without
decoding any image, so a wrong path or an empty class folder fails before a run writes anything. The
spec is one string:

- `digits`: scikit-learn's 1,797 handwritten 8x8 digits (Alpaydin & Kaynak, UCI), shipped inside
  scikit-learn, so no download; grey values 0..16, upscaled (bilinear) to 32 pixels, split 70/10/20.
- `synthetic` or `synthetic:n=2048,classes=10,size=64,chans=3`: seeded random images with a learnable
  low-frequency class pattern, for benchmarks.
- a folder with `train/`, `val/` (or `valid/`, `validation/`) and optionally `test/`, each holding one
  folder per class (ImageNet's layout); or a folder of class folders, split deterministically.
- a `.csv` file with a header `path,label[,split]`; paths relative to the CSV's folder.
- a data set of torchvision.datasets by name (`mnist`, `cifar10`, `imagenette`, ...; `named.DATASETS`), read
  from the data root (`root`), downloaded only when `download` is true. A folder of that name is `./cifar10`.

Splits the user did not make are drawn by `split.stratified_split` with a fixed seed (`split_seed`),
independent of the training seed, so every run of a data set sees the same test images.
"""
from __future__ import annotations

import csv
import dataclasses
import os
import re
from pathlib import Path
from typing import Callable, NamedTuple

import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import CnnzooError
from .decode import PIL_FORMATS, ImageRejected, read_image  # noqa: F401  (PIL_FORMATS: re-exported)
from .split import stratified_split

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# What a broken file raises while it is opened or decoded (ImageRejected: refused by `decode`, with a reason).
UNREADABLE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError, ImageRejected)
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclasses.dataclass
class Split:
    """The samples of one split: file paths, or images already in memory (N x C x H x W, values 0..1)."""

    labels: list[int]
    paths: list[str] | None = None
    images: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)


@dataclasses.dataclass
class DataSource:
    """A data set's description: its classes, its splits, and what suits it by default."""

    spec: str
    kind: str  # "digits", "synthetic", "folder" or "csv"
    classes: list[str]
    splits: dict[str, Split]
    in_chans: int = 3  # the channels the images naturally have (1 for digits)
    input_size: int | None = None  # a natural training size, if the data set has one
    hflip: bool = True  # False where mirroring changes the class (digits)
    crop_pct: float = 0.875  # eval: resize to size / crop_pct, then crop the centre
    crop_scale: tuple[float, float] = (0.25, 1.0)  # train: random-resized-crop area range
    normalize: str = "imagenet"  # "imagenet" or "dataset" when the config says "auto"
    stats: tuple[list[float], list[float]] | None = None  # a named set's own mean and std, used for "dataset"

    @property
    def name(self) -> str:
        """A short name for run folders: `digits`, `synthetic`, or the folder/CSV stem."""
        return self.kind if self.kind in ("digits", "synthetic") else Path(self.spec).stem or "data"


def load_data(spec: str, *, val: float = 0.1, test: float = 0.1, split_seed: int = 0, root: str | None = None,
              download: bool = False) -> DataSource:
    """Describe the data set named by `spec` (see the module docstring). Raises `CnnzooError` on bad input.

    `root` and `download` concern the named data sets only (`named.data_root` gives the default root)."""
    from .named import DATASETS, load_named

    if spec in DATASETS:
        return load_named(spec, root=root, download=download, val=val, split_seed=split_seed)
    if spec == "digits":
        return _digits(split_seed)
    if spec == "synthetic" or spec.startswith("synthetic:"):
        return _synthetic(spec, split_seed)
    path = Path(spec).expanduser()
    if not path.exists():
        import difflib

        close = difflib.get_close_matches(spec.lower(), DATASETS, n=1, cutoff=0.7)
        hint = f"; did you mean {close[0]}?" if close else " (`cnnzoo data list` names the data sets)"
        raise CnnzooError(f"data path {spec!r} does not exist; pass an image folder, a .csv file, 'digits', "
                          f"'synthetic' or a data set's name{hint}")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise CnnzooError(f"{spec!r} is a file but not a .csv; pass an image folder or a CSV with path,label[,split]")
        return _from_csv(spec, path, val, test, split_seed)
    return _from_folder(spec, path, val, test, split_seed)


# --- embedded data sets ----------------------------------------------------------------------------------

def _digits_array():
    """scikit-learn's digits.csv.gz (64 pixels + label per row), read without importing scikit-learn (2 s)."""
    import importlib.util

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if path is not None and path.is_file():
        return np.loadtxt(path, delimiter=",")
    from sklearn.datasets import load_digits  # its loader knows where a future version keeps the file

    d = load_digits()
    return np.column_stack([d.data, d.target])


def _digits(split_seed: int) -> DataSource:
    rows = _digits_array()
    images = torch.tensor(rows[:, :64], dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0  # values 0..16 -> 0..1
    # Upscaled once to 32 pixels (bilinear), so random crops move by fractions of an original pixel.
    images = torch.nn.functional.interpolate(images, size=32, mode="bilinear").clamp(0, 1)
    labels = rows[:, 64].astype(int).tolist()
    # A 70/10/20 split: 360 test images make 99% mean at most 3 mistakes.
    parts = stratified_split(labels, val=0.1, test=0.2, seed=split_seed)
    splits = {name: Split([labels[i] for i in idx], images=images[idx]) for name, idx in parts.items()}
    return DataSource("digits", "digits", [str(c) for c in range(10)], splits, in_chans=1, input_size=32,
                      hflip=False, crop_pct=1.0, crop_scale=(0.7, 1.0), normalize="dataset")


def _synthetic(spec: str, split_seed: int) -> DataSource:
    opts = {"n": 2048, "classes": 10, "size": 32, "chans": 3}
    for item in filter(None, spec.partition(":")[2].split(",")):
        key, _, value = item.partition("=")
        if key not in opts or not value.isdigit() or int(value) < 1:
            raise CnnzooError(f"bad synthetic option {item!r}; use e.g. synthetic:n=2048,classes=10,size=64,chans=3")
        opts[key] = int(value)
    n, k, size, chans = opts["n"], opts["classes"], opts["size"], opts["chans"]
    g = torch.Generator().manual_seed(1234)
    # Each class has a tone and a smooth pattern (4x4, upsampled); each image is its class's plus noise.
    tone = torch.rand(k, chans, 1, 1, generator=g)
    shape = torch.nn.functional.interpolate(torch.rand(k, chans, 4, 4, generator=g), size=size, mode="bilinear")
    labels = [i % k for i in range(n)]
    noise = torch.rand(n, chans, size, size, generator=g)
    images = (0.4 * tone + 0.4 * shape)[labels] + 0.2 * noise
    images = images.mul(255).round().to(torch.uint8)  # uint8 keeps 128-pixel sets small
    parts = stratified_split(labels, val=0.1, test=0.1, seed=split_seed)
    splits = {name: Split([labels[i] for i in idx], images=images[idx]) for name, idx in parts.items()}
    return DataSource(spec, "synthetic", [f"class{c}" for c in range(k)], splits, in_chans=chans, input_size=size,
                      crop_pct=1.0, crop_scale=(0.5, 1.0), normalize="dataset")


# --- files -----------------------------------------------------------------------------------------------

def _natural_key(text: str) -> list:
    """'2' sorts before '10'."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def scan_class_folders(root: Path) -> dict[str, list[Path]]:
    """Class name -> its image files (recursively, sorted), for a folder of class folders."""
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    folders.sort(key=lambda p: _natural_key(p.name))
    return {f.name: sorted(p for p in f.rglob("*") if p.is_file() and is_image_file(p)) for f in folders}


def split_folders(root: Path) -> dict[str, Path]:
    """The split folders (`train`, `val`, `test`) of an ImageNet-style layout; empty if there are none."""
    found = {}
    for p in sorted(root.iterdir()):
        if p.is_dir() and p.name.lower() in SPLIT_NAMES:
            name = SPLIT_NAMES[p.name.lower()]
            if name in found:
                raise CnnzooError(f"{root} has two {name} folders ({found[name].name} and {p.name}); keep one")
            found[name] = p
    return found


def _from_folder(spec: str, root: Path, val: float, test: float, split_seed: int) -> DataSource:
    layout = split_folders(root)
    if layout:
        if "train" not in layout:
            raise CnnzooError(f"{root} has {'/'.join(layout)} folders but no train/ folder; add one")
        per_split = {name: scan_class_folders(folder) for name, folder in layout.items()}
        classes = list(per_split["train"])
        _check_classes(per_split["train"], layout["train"])
        splits = {}
        for name, found in per_split.items():
            unknown = sorted(set(found) - set(classes))
            if unknown:
                raise CnnzooError(f"{layout[name]} has class folder(s) {', '.join(unknown)} that train/ lacks; "
                                  f"add them to train/")
            pairs = [(str(p), classes.index(c)) for c in classes for p in found.get(c, [])]
            splits[name] = Split([lab for _, lab in pairs], paths=[p for p, _ in pairs])
        return DataSource(spec, "folder", classes, splits)
    found = scan_class_folders(root)
    _check_classes(found, root)
    classes = list(found)
    paths = [str(p) for c in classes for p in found[c]]
    labels = [i for i, c in enumerate(classes) for _ in found[c]]
    return _split_lists(spec, "folder", classes, paths, labels, val, test, split_seed)


def _check_classes(found: dict[str, list[Path]], root: Path) -> None:
    if not found:
        raise CnnzooError(f"{root} holds no class folders; put each class's images in a folder named after it")
    empty = [c for c, files in found.items() if not files]
    if empty:
        raise CnnzooError(f"class folder {root / empty[0]} has no images ({len(empty)} empty in all); "
                          f"add images or remove it")
    if len(found) < 2:
        raise CnnzooError(f"{root} has a single class folder ({next(iter(found))}); a classifier needs at least two")


def _from_csv(spec: str, path: Path, val: float, test: float, split_seed: int) -> DataSource:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
            fields = [c.strip() for c in (rows[0].keys() if rows else [])]
    except UnicodeDecodeError as exc:
        raise CnnzooError(f"{path} is not UTF-8 text (byte {exc.object[exc.start]:#x} at offset {exc.start}); "
                          f"save it as UTF-8") from None
    except (OSError, csv.Error) as exc:
        raise CnnzooError(f"cannot read {path} as CSV: {getattr(exc, 'strerror', None) or exc}") from None
    if not rows or not {"path", "label"} <= set(fields):
        raise CnnzooError(f"{path} needs a header line 'path,label[,split]' and at least one row")
    base = path.parent
    items = []
    for line, row in enumerate(rows, start=2):
        p, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
        if not p or not label:
            raise CnnzooError(f"{path}:{line}: empty path or label")
        split = SPLIT_NAMES.get((row.get("split") or "").strip().lower(), "") if "split" in fields else ""
        if "split" in fields and not split:
            raise CnnzooError(f"{path}:{line}: split {row.get('split')!r} is not train, val or test")
        full = Path(p) if os.path.isabs(p) else base / p
        items.append((str(full), label, split))
    classes = sorted({lab for _, lab, _ in items}, key=_natural_key)
    if len(classes) < 2:
        raise CnnzooError(f"{path} names a single class ({classes[0]}); a classifier needs at least two")
    index = {c: i for i, c in enumerate(classes)}
    if "split" not in fields:
        return _split_lists(spec, "csv", classes, [p for p, _, _ in items], [index[lab] for _, lab, _ in items],
                            val, test, split_seed)
    splits = {}
    for name in ("train", "val", "test"):
        chosen = [(p, index[lab]) for p, lab, s in items if s == name]
        if chosen:
            splits[name] = Split([lab for _, lab in chosen], paths=[p for p, _ in chosen])
    if "train" not in splits:
        raise CnnzooError(f"{path} has a split column but no 'train' rows")
    return DataSource(spec, "csv", classes, splits)


def _split_lists(spec, kind, classes, paths, labels, val, test, split_seed) -> DataSource:
    parts = stratified_split(labels, val=val, test=test, seed=split_seed)
    splits = {name: Split([labels[i] for i in idx], paths=[paths[i] for i in idx]) for name, idx in parts.items()}
    return DataSource(spec, kind, classes, splits)


# --- reading samples -------------------------------------------------------------------------------------

class Unreadable(NamedTuple):
    """A sample whose file could not be decoded: the collate function drops it and the trainer counts it."""

    path: str
    reason: str


def open_image(path: str, mode: str) -> Image.Image:
    """Decode an image fully (truncated files fail here, not later) in `mode` ("RGB" or "L"): `decode`'s
    path, the one predict and serve use, so 16-bit files are scaled the same everywhere."""
    return read_image(path, mode)


class ImageDataset(Dataset):
    """One split with its transform. With a `seed`, sample i of epoch e is augmented by its own RNG stream.

    Seeding per (seed, epoch, index) makes augmentation independent of worker count, process count and
    of where a run was interrupted: the property that lets a resumed run end with the same weights.
    """

    def __init__(self, split: Split, transform: Callable, *, in_chans: int = 3, seed: int | None = None) -> None:
        self.split, self.transform, self.seed, self.epoch = split, transform, seed, 0
        self.mode = "L" if in_chans == 1 else "RGB"

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: int | tuple[int, int]):
        epoch, i = key if isinstance(key, tuple) else (self.epoch, key)  # (epoch, index) from EpochSampler
        if self.split.images is not None:
            img = self.split.images[i]
        else:
            try:
                img = open_image(self.split.paths[i], self.mode)
            except UNREADABLE_ERRORS as exc:
                return Unreadable(self.split.paths[i], f"{type(exc).__name__}: {exc}")
        if self.seed is None:
            return self.transform(img), self.split.labels[i]
        state = torch.get_rng_state()
        torch.default_generator.manual_seed(hash((self.seed, epoch, i)) & 0xFFFF_FFFF_FFFF)
        try:
            return self.transform(img), self.split.labels[i]
        finally:
            torch.set_rng_state(state)


def collate(batch: list) -> tuple[torch.Tensor, torch.Tensor, list[Unreadable]]:
    """Stack the readable samples; return the unreadable ones alongside so the trainer can log them."""
    good = [b for b in batch if not isinstance(b, Unreadable)]
    bad = [b for b in batch if isinstance(b, Unreadable)]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), bad
    return torch.stack([x for x, _ in good]), torch.tensor([y for _, y in good]), bad
