"""Named data sets (cnnzoo.data.named): each format's files built here, in tmp_path, in the layout torchvision reads.

No network: the download test serves MNIST's idx files from a local HTTP server on 127.0.0.1.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import json
import pickle
import struct
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets as tvd
from PIL import Image

from cnnzoo.cli import main
from cnnzoo.data import load_data
from cnnzoo.data.named import DATASETS, fetch
from cnnzoo.errors import CnnzooError

MNIST_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def idx_files(n_train: int = 40, n_test: int = 10) -> dict[str, bytes]:
    """MNIST's idx format: a magic number (0, 0, type 8 = ubyte, dims), big-endian sizes, then the bytes."""
    rng = np.random.default_rng(0)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        out[f"{prefix}-images-idx3-ubyte"] = struct.pack(">4B3I", 0, 0, 8, 3, n, 28, 28) + images.tobytes()
        out[f"{prefix}-labels-idx1-ubyte"] = struct.pack(">4B1I", 0, 0, 8, 1, n) + labels.tobytes()
    return out


def make_mnist(root: Path, folder: str = "MNIST") -> Path:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for name, data in idx_files().items():
        (raw / name).write_bytes(data)
    return root


def jpeg(path: Path, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), (value, 50, 200)).save(path)


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST"), ("kmnist", "KMNIST")])
def test_mnist_family_from_idx_files(tmp_path, name, folder):
    src = load_data(name, root=make_mnist(tmp_path, folder), val=0.25, split_seed=3)
    assert {k: len(v) for k, v in src.splits.items()} == {"train": 30, "val": 10, "test": 10}
    assert Counter(src.splits["val"].labels) == Counter(range(10))  # stratified: one per class
    assert src.splits["train"].images.shape[1:] == (1, 28, 28) and src.in_chans == 1 and src.input_size == 28
    assert src.stats == (list(DATASETS[name].mean), list(DATASETS[name].std)) and len(src.classes) == 10
    again = load_data(name, root=tmp_path, val=0.25, split_seed=3)
    assert again.splits["val"].labels == src.splits["val"].labels  # seeded
    assert (src.splits["val"].images == again.splits["val"].images).all()


def make_cifar10(root: Path, monkeypatch, per_batch: int = 6) -> Path:
    """cifar-10-batches-py: pickled dicts (data: N x 3072 uint8 in CHW order, labels) and batches.meta."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(1)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        entry = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "labels": [(k * per_batch + i) % 10 for i in range(per_batch)]}
        (base / name).write_bytes(pickle.dumps(entry))
    (base / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    # torchvision checks each file's MD5 before unpickling it: point its table at ours
    monkeypatch.setattr(tvd.CIFAR10, "train_list", [[n, md5(base / n)] for n in names[:5]])
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", md5(base / "test_batch")]])
    monkeypatch.setattr(tvd.CIFAR10, "meta", {**tvd.CIFAR10.meta, "md5": md5(base / "batches.meta")})
    return root


def test_cifar10_from_pickled_batches(tmp_path, monkeypatch):
    src = load_data("cifar10", root=make_cifar10(tmp_path, monkeypatch), val=0.1)
    assert {k: len(v) for k, v in src.splits.items()} == {"train": 20, "val": 10, "test": 6}
    x = src.splits["train"].images
    assert x.shape[1:] == (3, 32, 32) and x.dtype.is_floating_point is False and src.classes[:2] == ["c0", "c1"]
    assert (src.in_chans, src.hflip, src.normalize) == (3, True, "dataset")


def test_tampered_cifar_is_refused_before_unpickling(tmp_path, monkeypatch):
    root = make_cifar10(tmp_path, monkeypatch)
    (root / "cifar-10-batches-py" / "data_batch_2").write_bytes(pickle.dumps({"data": 1}))  # MD5 no longer matches
    with pytest.raises(CnnzooError, match="checksum.*--download"):
        load_data("cifar10", root=root)


def test_svhn_from_mat_files(tmp_path, monkeypatch):
    sio = pytest.importorskip("scipy.io")
    folder = tmp_path / "svhn"
    folder.mkdir()
    table = {}
    for split, n in (("train", 30), ("test", 5)):
        x = np.random.default_rng(2).integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(-1, 1)  # SVHN labels digit 0 as 10
        path = folder / f"{split}_32x32.mat"
        sio.savemat(path, {"X": x, "y": y})
        table[split] = ["http://127.0.0.1:9/unused", path.name, md5(path)]
    monkeypatch.setattr(tvd.SVHN, "split_list", table)
    src = load_data("svhn", root=tmp_path, val=0.1)
    assert src.splits["test"].labels == [1, 2, 3, 4, 5] and 0 in src.splits["train"].labels + src.splits["val"].labels
    assert src.splits["test"].images.shape == (5, 3, 32, 32) and src.hflip is False


def test_imagenette_folder_layout(tmp_path):
    for split, n in (("train", 5), ("val", 2)):
        for wnid, value in (("n01440764", 10), ("n02102040", 200)):
            for i in range(n):
                jpeg(tmp_path / "imagenette2-320" / split / wnid / f"{wnid}_{i}.JPEG", value)
    src = load_data("imagenette", root=tmp_path, val=0.2)
    assert src.classes == ["tench", "English springer"]
    assert {k: len(v) for k, v in src.splits.items()} == {"train": 8, "val": 2, "test": 4}
    assert all(Path(p).is_file() for p in src.splits["test"].paths) and src.normalize == "imagenet"


def test_pets_and_food101_layouts(tmp_path):
    pets = tmp_path / "oxford-iiit-pet"
    (pets / "annotations").mkdir(parents=True)
    for split, ids in (("trainval", range(1, 5)), ("test", range(5, 7))):
        lines = [f"{breed}_{i} {label} 1 1" for breed, label in (("Abyssinian", 1), ("great_pyrenees", 2)) for i in ids]
        (pets / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
        for line in lines:
            jpeg(pets / "images" / f"{line.split()[0]}.jpg")
    src = load_data("oxford-pets", root=tmp_path, val=0.25)
    assert src.classes == ["Abyssinian", "Great Pyrenees"] and len(src.splits["test"]) == 4
    food = tmp_path / "food-101"
    (food / "meta").mkdir(parents=True)
    for split, ids in (("train", range(4)), ("test", range(4, 6))):
        meta = {c: [f"{c}/{i}" for i in ids] for c in ("apple_pie", "ramen")}
        (food / "meta" / f"{split}.json").write_text(json.dumps(meta))
        for c, paths in meta.items():
            for p in paths:
                jpeg(food / "images" / f"{p}.jpg")
    src = load_data("food101", root=tmp_path, val=0.25)
    assert src.classes == ["apple_pie", "ramen"] and {k: len(v) for k, v in src.splits.items()} == \
        {"train": 6, "val": 2, "test": 4}


def test_imagenet_from_its_folder_layout(tmp_path):
    for split in ("train", "val"):
        for wnid in ("n01440764", "n01443537"):
            for i in range(3):
                jpeg(tmp_path / "imagenet" / split / wnid / f"{i}.JPEG")
    src = load_data("imagenet", root=tmp_path, val=0.34)
    assert src.classes == ["n01440764", "n01443537"] and len(src.splits["test"]) == 6 and len(src.splits["val"]) == 2


def test_missing_data_set_says_what_to_put_where(tmp_path):
    with pytest.raises(CnnzooError) as err:
        load_data("mnist", root=tmp_path)
    text = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in text and "t10k-labels-idx1-ubyte" in text and "--download" in text
    assert "\n" not in text
    with pytest.raises(CnnzooError, match="cannot be downloaded"):
        load_data("imagenet", root=tmp_path, download=True)


@pytest.fixture
def mnist_mirror(tmp_path, monkeypatch):
    """MNIST's four .gz files served from 127.0.0.1, with torchvision's table pointed at them."""
    served = tmp_path / "served"
    served.mkdir()
    resources = []
    for name, data in idx_files().items():
        (served / f"{name}.gz").write_bytes(gzip.compress(data))
        resources.append((f"{name}.gz", md5(served / f"{name}.gz")))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(tvd.MNIST, "mirrors", [f"http://127.0.0.1:{server.server_address[1]}/"])
    monkeypatch.setattr(tvd.MNIST, "resources", resources)
    yield resources
    server.shutdown()


def test_download_is_checked_then_renamed_into_place(tmp_path, mnist_mirror):
    root = tmp_path / "root"
    src = load_data("mnist", root=root, download=True)
    assert len(src.splits["test"]) == 10 and sorted(p.name for p in root.iterdir()) == ["MNIST"]  # no staging left
    assert {p.name for p in (root / "MNIST" / "raw").iterdir()} >= set(MNIST_NAMES)


def test_download_with_a_wrong_checksum_writes_nothing(tmp_path, mnist_mirror, monkeypatch):
    monkeypatch.setattr(tvd.MNIST, "resources", [(n, "0" * 32) for n, _ in mnist_mirror])
    root = tmp_path / "root"
    with pytest.raises(CnnzooError, match="downloading mnist failed"):
        fetch("mnist", root)
    assert list(root.iterdir()) == []


def test_data_list_shows_what_is_present(tmp_path, capsys):
    make_mnist(tmp_path)
    assert main(["data", "list", "--data-root", str(tmp_path), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(DATASETS) and rows["mnist"]["present"] and not rows["cifar10"]["present"]
    assert main(["data", "list", "--data-root", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "cifar-10-python.tar.gz" in table and str(tmp_path) in table
    assert next(line for line in table.splitlines() if line.startswith("mnist ")).endswith("yes")


def test_a_misspelt_name_gets_a_suggestion(tmp_path):
    with pytest.raises(CnnzooError, match="did you mean cifar10"):
        load_data("cifar-10")


def test_the_parser_knows_the_same_names():
    from cnnzoo.cli.training import NAMED_DATA

    assert NAMED_DATA == tuple(DATASETS)
