"""Data sets by name (`--data cifar10`), read by torchvision.datasets from a data root.

The table below is the whole catalogue: per data set, the torchvision class, the folder and files it reads,
what `--download` fetches, the splits, and what suits it by default (input size, channels, flips,
normalisation). `load_named` turns one into a `DataSource`: small sets (MNIST, CIFAR, SVHN, STL-10) are held
in memory as uint8 tensors; photo sets (Flowers, Pets, Food-101, Imagenette, ImageNet) as file paths that
`ImageDataset` decodes with the same Pillow formats as a user's own folder.

Splits: each set's own test split is the test split; a validation split is carved from the training split
(stratified, seeded by `split_seed`, fraction `val`), except where the set has its own (Flowers-102).

The data root is `--data-root DIR`, else `$CNNZOO_DATA`, else `~/.cache/cnnzoo/data`. Nothing is downloaded
unless asked (`--download`); then torchvision fetches the archives and checks their MD5 into a staging folder
inside the root, and only a complete, checked folder is renamed into place.

Trust: torchvision reads CIFAR's batches with `pickle`, which can run code. It checks each batch file's MD5
against the official one before unpickling (as it does for SVHN's and STL-10's files), so a tampered CIFAR
folder is refused, not executed; still, point `--data-root` only at folders you trust.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..errors import CnnzooError

ENV_ROOT = "CNNZOO_DATA"


@dataclasses.dataclass(frozen=True)
class Named:
    """One data set of torchvision.datasets and what suits it."""

    cls: str  # torchvision.datasets class ("" for imagenet: a plain folder layout)
    folder: str  # what torchvision reads, relative to the data root
    files: str  # the files it expects in that folder (for the "put these there" line)
    fetches: str  # what --download fetches
    classes: int
    images: str  # train / test sizes, as published
    size: int  # natural input size
    chans: int = 3
    mean: tuple[float, ...] | None = None  # None: ImageNet's statistics (photos)
    std: tuple[float, ...] | None = None
    hflip: bool = True  # False where mirroring changes the class (digits, characters)
    splits: tuple[tuple[str, dict], ...] = (("train", {"train": True}), ("test", {"train": False}))
    sub: str = ""  # a folder torchvision's root is placed in (SVHN keeps its files at the root)
    kwargs: tuple[tuple[str, Any], ...] = ()

    @property
    def small(self) -> bool:
        return self.size <= 96


_MNIST_FILES = "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"
_SPLIT = (("train", {"split": "train"}), ("test", {"split": "test"}))

# Means and stds over each training split (the values the papers and torchvision's references use).
DATASETS: dict[str, Named] = {
    "mnist": Named("MNIST", "MNIST/raw", _MNIST_FILES, "4 idx files (.gz), 11 MB", 10, "60,000 / 10,000", 28,
                   chans=1, mean=(0.1307,), std=(0.3081,), hflip=False),
    "fashion-mnist": Named("FashionMNIST", "FashionMNIST/raw", _MNIST_FILES, "4 idx files (.gz), 30 MB", 10,
                           "60,000 / 10,000", 28, chans=1, mean=(0.2860,), std=(0.3530,)),
    "kmnist": Named("KMNIST", "KMNIST/raw", _MNIST_FILES, "4 idx files (.gz), 20 MB", 10, "60,000 / 10,000", 28,
                    chans=1, mean=(0.1918,), std=(0.3483,), hflip=False),
    "cifar10": Named("CIFAR10", "cifar-10-batches-py", "data_batch_1..5, test_batch, batches.meta",
                     "cifar-10-python.tar.gz, 163 MB", 10, "50,000 / 10,000", 32,
                     mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    "cifar100": Named("CIFAR100", "cifar-100-python", "train, test, meta", "cifar-100-python.tar.gz, 161 MB", 100,
                      "50,000 / 10,000", 32, mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)),
    "svhn": Named("SVHN", "svhn", "train_32x32.mat, test_32x32.mat", "2 .mat files, 246 MB", 10,
                  "73,257 / 26,032", 32, mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970), hflip=False,
                  splits=_SPLIT, sub="svhn"),
    "stl10": Named("STL10", "stl10_binary", "train_X.bin, train_y.bin, test_X.bin, test_y.bin, unlabeled_X.bin, "
                   "class_names.txt", "stl10_binary.tar.gz, 2.6 GB", 10, "5,000 / 8,000", 96,
                   mean=(0.4467, 0.4398, 0.4066), std=(0.2603, 0.2566, 0.2713), splits=_SPLIT),
    "flowers102": Named("Flowers102", "flowers-102", "jpg/, imagelabels.mat, setid.mat",
                        "102flowers.tgz and 2 .mat files, 330 MB", 102, "1,020 (+1,020 val) / 6,149", 224,
                        splits=(*_SPLIT[:1], ("val", {"split": "val"}), _SPLIT[1])),
    "oxford-pets": Named("OxfordIIITPet", "oxford-iiit-pet", "images/, annotations/ (trainval.txt, test.txt)",
                         "images.tar.gz and annotations.tar.gz, 800 MB", 37, "3,680 / 3,669", 224,
                         splits=(("train", {"split": "trainval"}), ("test", {"split": "test"}))),
    "food101": Named("Food101", "food-101", "images/, meta/ (classes.txt, train.json, test.json)",
                     "food-101.tar.gz, 5 GB", 101, "75,750 / 25,250", 224, splits=_SPLIT),
    "imagenette": Named("Imagenette", "imagenette2-320", "train/ and val/, one folder per WordNet id (n01440764, ...)",
                        "imagenette2-320.tgz, 326 MB", 10, "9,469 / 3,925", 224,
                        splits=(("train", {"split": "train"}), ("test", {"split": "val"})),
                        kwargs=(("size", "320px"),)),
    "imagenet": Named("", "imagenet", "train/ and val/, one folder per WordNet id (ILSVRC2012 extracted)",
                      "nothing (licence: download it from image-net.org yourself)", 1000, "1,281,167 / 50,000", 224),
}


def data_root(root: str | os.PathLike | None = None) -> Path:
    """`root`, else $CNNZOO_DATA, else ~/.cache/cnnzoo/data."""
    return Path(root or os.environ.get(ENV_ROOT) or Path.home() / ".cache" / "cnnzoo" / "data").expanduser()


def is_present(name: str, root: str | os.PathLike | None = None) -> bool:
    """Whether the data set's folder is in the root (a cheap look; the checksums are checked on loading)."""
    return (data_root(root) / DATASETS[name].folder).is_dir()


def missing_message(name: str, root: Path) -> str:
    d = DATASETS[name]
    if not d.cls:
        return (f"{name} is not in {root}: put ImageNet's {d.files} into {root / d.folder} "
                f"(or pass --data-root DIR); it cannot be downloaded for you")
    return (f"{name} is not in {root}: put {d.files} into {root / d.folder}, "
            f"or add --download to fetch {d.fetches} (or pass --data-root DIR)")


def load_named(name: str, *, root: str | os.PathLike | None = None, download: bool = False, val: float = 0.1,
               split_seed: int = 0):
    """A `DataSource` for the named data set (see the module docstring). Raises `CnnzooError` when absent."""
    d, base = DATASETS[name], data_root(root)
    if not d.cls:
        return _imagenet(name, base, val, split_seed)
    if download and not is_present(name, base):
        fetch(name, base)
    parts = {split: _open(name, base, args) for split, args in d.splits}
    return _source(name, d, parts, val, split_seed)


def _open(name: str, base: Path, split_args: dict):
    """torchvision's data set object for one split (it checks the files' checksums where it knows them)."""
    import torchvision.datasets as tvd

    d = DATASETS[name]
    try:
        return getattr(tvd, d.cls)(str(base / d.sub if d.sub else base), **split_args, **dict(d.kwargs))
    except RuntimeError as exc:  # "Dataset not found or corrupted. You can use download=True ..."
        if is_present(name, base):
            raise CnnzooError(f"{base / d.folder} is incomplete or fails torchvision's checksum check "
                              f"({str(exc).splitlines()[0]}); remove it and run again with --download") from None
        raise CnnzooError(missing_message(name, base)) from None


def fetch(name: str, root: str | os.PathLike | None = None) -> Path:
    """Download the named data set into the root: fetched and MD5-checked by torchvision in a staging folder,
    then renamed into place, so an interrupted download leaves no half folder where the data set belongs."""
    import torchvision.datasets as tvd

    d, base = DATASETS[name], data_root(root)
    if not d.cls:
        raise CnnzooError(missing_message(name, base))
    base.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".download-{name}-", dir=base))
    top = d.folder.split("/")[0]
    try:
        for _, args in d.splits:
            getattr(tvd, d.cls)(str(stage / d.sub if d.sub else stage), **args, **dict(d.kwargs), download=True)
        if (base / top).exists():
            raise CnnzooError(f"{base / top} exists but is incomplete; remove it and run again with --download")
        os.replace(stage / top, base / top)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a wrong checksum is a RuntimeError
        raise CnnzooError(f"downloading {name} failed ({type(exc).__name__}: {exc}); nothing was written to "
                          f"{base}; {missing_message(name, base).split(': ', 1)[1]}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return base / top


def _source(name: str, d: Named, parts: dict, val: float, split_seed: int):
    from .datasets import DataSource

    splits = {split: _split_of(ds) for split, ds in parts.items()}
    if "val" not in splits:
        splits = _carve_val(splits, val, split_seed)
    classes = _class_names(parts["train"], d.classes)
    size = d.size
    return DataSource(name, "named", classes, splits, in_chans=d.chans, input_size=size, hflip=d.hflip,
                      crop_pct=1.0 if d.small else 0.875, crop_scale=(0.5, 1.0) if d.small else (0.08, 1.0),
                      normalize="dataset" if d.mean else "imagenet",
                      stats=(list(d.mean), list(d.std)) if d.mean else None)


def _split_of(ds):
    """A `Split` from torchvision's object: its arrays as uint8 N x C x H x W, or its file list."""
    import numpy as np
    import torch

    from .datasets import Split

    if hasattr(ds, "data"):  # MNIST family (N, H, W), CIFAR (N, H, W, 3), SVHN and STL-10 (N, 3, H, W)
        x = torch.as_tensor(np.asarray(ds.data), dtype=torch.uint8)
        x = x[:, None] if x.ndim == 3 else x
        x = x.permute(0, 3, 1, 2) if x.shape[-1] == 3 and x.shape[1] != 3 else x
        labels = ds.targets if hasattr(ds, "targets") else ds.labels
        return Split([int(v) for v in labels], images=x.contiguous())
    # Photo sets keep their file lists in private attributes (torchvision 0.15-0.2x); read, not changed.
    if hasattr(ds, "_samples"):
        pairs = list(ds._samples)
    else:
        files = ds._image_files if hasattr(ds, "_image_files") else ds._images
        pairs = list(zip(files, ds._labels))
    return Split([int(y) for _, y in pairs], paths=[str(p) for p, _ in pairs])


def _carve_val(splits: dict, val: float, split_seed: int) -> dict:
    """A stratified, seeded validation split taken from train (the test split stays the set's own)."""
    from .datasets import Split
    from .split import stratified_split

    train = splits["train"]
    if val <= 0:
        return splits
    idx = stratified_split(train.labels, val=val, test=0.0, seed=split_seed)

    def pick(ids):
        labels = [train.labels[i] for i in ids]
        if train.images is not None:
            return Split(labels, images=train.images[ids])
        return Split(labels, paths=[train.paths[i] for i in ids])

    carved = {name: pick(ids) for name, ids in idx.items()}  # no "val" when no class has 3 images
    return carved | {k: v for k, v in splits.items() if k != "train"}


def _class_names(ds, n: int) -> list[str]:
    names = getattr(ds, "classes", None) or [str(i) for i in range(n)]  # SVHN has none: its labels are digits
    return [c[0] if isinstance(c, tuple) else str(c) for c in names]  # Imagenette: (name, synonyms...)


def _imagenet(name: str, base: Path, val: float, split_seed: int):
    """ImageNet from its extracted folder layout: its val/ is the test split, a val split is carved from train/."""
    from .datasets import DataSource, Split, _check_classes, scan_class_folders

    root = base / DATASETS[name].folder
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise CnnzooError(missing_message(name, base))
    train, test = scan_class_folders(root / "train"), scan_class_folders(root / "val")
    _check_classes(train, root / "train")
    classes = list(train)
    parts = {}
    for split, found in (("train", train), ("test", test)):
        pairs = [(str(p), i) for i, c in enumerate(classes) for p in found.get(c, [])]
        parts[split] = Split([y for _, y in pairs], paths=[p for p, _ in pairs])
    return DataSource(name, "named", classes, _carve_val(parts, val, split_seed), input_size=224)


def catalogue(root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """One row per data set, for `cnnzoo data list`."""
    base = data_root(root)
    return [{"name": name, "classes": d.classes, "images": d.images, "size": d.size, "chans": d.chans,
             "download": d.fetches, "present": is_present(name, base), "folder": str(base / d.folder)}
            for name, d in DATASETS.items()]


def format_catalogue(rows: list[dict[str, Any]], root: Path) -> str:
    head = ("name", "classes", "train / test", "size", "--download fetches", "here")
    table = [head] + [(r["name"], str(r["classes"]), r["images"], f"{r['size']} px" + (" grey" if r["chans"] == 1 else ""),
                       r["download"], "yes" if r["present"] else "no") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    return "\n".join(lines + [f"data root: {root} (--data-root DIR or ${ENV_ROOT} to change it)"])
