"""Data: the embedded digits, image folders, CSVs, splits, transforms, `data check` and `data split`."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image

from cnnzoo.cli import main
from cnnzoo.data import (ImageDataset, Unreadable, check_data, collate, dataset_mean_std, eval_transform, load_data,
                         split_to_csv, stratified_split, train_transform)
from cnnzoo.errors import CnnzooError


def make_folder(root: Path, counts: dict[str, int], size: int = 12) -> Path:
    """Class folders of small PNGs, each image different (its class and index are painted into it)."""
    for ci, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = Image.new("RGB", (size, size), (40 * ci % 256, 7 * i % 256, 100))
            img.putpixel((i % size, i // size % size), (255, 255, 255))
            img.save(root / name / f"img{i}.png")
    return root


def corrupt_jpeg(path: Path) -> Path:
    """A JPEG cut in half: its header reads, its pixels do not."""
    Image.new("RGB", (32, 32), (200, 10, 10)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


# --- digits ------------------------------------------------------------------------------------------------

def test_digits_split_is_stratified_and_fixed():
    a, b = load_data("digits"), load_data("digits")
    sizes = {k: len(v) for k, v in a.splits.items()}
    assert sizes == {"train": 1259, "val": 179, "test": 359}  # 70/10/20 of 1,797, per class
    assert a.classes == [str(d) for d in range(10)]
    assert (a.in_chans, a.input_size, a.hflip) == (1, 32, False)
    for name, split in a.splits.items():
        assert torch.equal(split.images, b.splits[name].images)
        assert set(split.labels) == set(range(10))
        assert split.images.shape[1:] == (1, 32, 32) and 0 <= split.images.min() and split.images.max() <= 1
    test_counts = Counter(a.splits["test"].labels)
    assert max(test_counts.values()) - min(test_counts.values()) <= 2  # 35..37 of each digit


def test_digits_augmentation_is_seeded_per_sample():
    split = load_data("digits").splits["train"]
    tf = train_transform(32, [0.3], [0.3], in_chans=1, hflip=False, scale=(0.7, 1.0))
    ds = ImageDataset(split, tf, in_chans=1, seed=5)
    x, y = ds[(0, 3)]
    assert x.shape == (1, 32, 32) and y == split.labels[3]
    torch.manual_seed(123)  # the global generator does not matter ...
    assert torch.equal(ds[(0, 3)][0], x)
    state = torch.get_rng_state()
    ds[(1, 3)]
    assert torch.equal(torch.get_rng_state(), state)  # ... and is left untouched
    assert not torch.equal(ds[(1, 3)][0], x)  # another epoch, another crop


def test_eval_transform_and_channels():
    split = load_data("digits").splits["val"]
    tf = eval_transform(16, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], in_chans=3, crop_pct=1.0)
    x, _ = ImageDataset(split, tf, in_chans=3)[0]
    assert x.shape == (3, 16, 16) and torch.equal(x[0], x[2])  # grey replicated to 3 channels
    down = torch.nn.functional.interpolate(split.images[:1], size=16, mode="bilinear", antialias=True)
    assert torch.allclose((x[0] * 0.5 + 0.5), down[0, 0], atol=1e-5)
    tf = eval_transform(24, [0.0], [1.0], crop_pct=0.75, in_chans=1)  # resize to 32, keep the centre 24
    assert torch.equal(ImageDataset(split, tf, in_chans=1)[0][0], split.images[0, :, 4:28, 4:28])


def test_dataset_mean_std_matches_direct_computation():
    split = load_data("digits").splits["train"]
    plain = eval_transform(32, [0.0], [1.0], in_chans=1, crop_pct=1.0)
    mean, std = dataset_mean_std(ImageDataset(split, plain, in_chans=1), limit=10_000)
    assert mean[0] == pytest.approx(split.images.mean().item(), abs=1e-4)
    assert std[0] == pytest.approx(split.images.std().item(), abs=1e-3)


# --- splits ------------------------------------------------------------------------------------------------

def test_stratified_split_is_disjoint_balanced_and_seeded():
    labels = [0] * 50 + [1] * 30 + [2] * 20
    parts = stratified_split(labels, val=0.1, test=0.2, seed=3)
    assert sorted(i for idx in parts.values() for i in idx) == list(range(100))
    assert [Counter(labels[i] for i in parts["test"])[c] for c in range(3)] == [10, 6, 4]
    assert [Counter(labels[i] for i in parts["val"])[c] for c in range(3)] == [5, 3, 2]
    assert parts == stratified_split(labels, val=0.1, test=0.2, seed=3)
    assert parts != stratified_split(labels, val=0.1, test=0.2, seed=4)
    assert stratified_split([0, 0, 1, 1], val=0.0, test=0.0, seed=0) == {"train": [0, 1, 2, 3]}
    with pytest.raises(CnnzooError, match="sum to less than 1"):
        stratified_split(labels, val=0.5, test=0.5)


# --- folders and CSVs --------------------------------------------------------------------------------------

def test_single_folder_is_split_and_imagenet_layout_is_kept(tmp_path):
    src = load_data(str(make_folder(tmp_path / "flat", {"cat": 10, "dog": 10, "eel": 10})))
    assert src.classes == ["cat", "dog", "eel"] and src.kind == "folder"
    assert {k: len(v) for k, v in src.splits.items()} == {"train": 24, "val": 3, "test": 3}
    root = tmp_path / "imnet"
    make_folder(root / "train", {"a": 4, "b": 4})
    make_folder(root / "val", {"a": 2, "b": 2})
    src = load_data(str(root))
    assert {k: len(v) for k, v in src.splits.items()} == {"train": 8, "val": 4}
    x, y = ImageDataset(src.splits["val"], eval_transform(16, [0.5] * 3, [0.5] * 3))[3]
    assert x.shape == (3, 16, 16) and y == 1


def test_class_folders_sort_naturally(tmp_path):
    src = load_data(str(make_folder(tmp_path, {"10": 3, "2": 3, "1": 3})))
    assert src.classes == ["1", "2", "10"]


def test_csv_with_and_without_split_column(tmp_path):
    make_folder(tmp_path / "img", {"x": 6, "y": 6})
    rows = [(f"img/{c}/img{i}.png", c) for c in "xy" for i in range(6)]
    with open(tmp_path / "plain.csv", "w", newline="") as f:
        csv.writer(f).writerows([("path", "label"), *rows])
    assert sum(map(len, load_data(str(tmp_path / "plain.csv")).splits.values())) == 12
    with open(tmp_path / "split.csv", "w", newline="") as f:
        csv.writer(f).writerows([("path", "label", "split")] + [(p, c, "test" if p.endswith("0.png") else "train")
                                                               for p, c in rows])
    src = load_data(str(tmp_path / "split.csv"))
    assert {k: len(v) for k, v in src.splits.items()} == {"train": 10, "test": 2}
    assert src.splits["test"].paths[0] == str(tmp_path / "img/x/img0.png")


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "does not exist"),
    (lambda p: make_folder(p, {"a": 3}) and (p / "b").mkdir(), "has no images"),
    (lambda p: make_folder(p, {"a": 3}), "single class folder"),
    (lambda p: p.mkdir(), "holds no class folders"),
])
def test_bad_folders_fail_in_one_line(tmp_path, setup, message):
    target = tmp_path / "data"
    setup(target)
    with pytest.raises(CnnzooError, match=message) as exc:
        load_data(str(target))
    assert "\n" not in str(exc.value)


def test_bad_csv(tmp_path):
    (tmp_path / "a.csv").write_text("file,class\nx.png,1\n")
    with pytest.raises(CnnzooError, match="header line 'path,label"):
        load_data(str(tmp_path / "a.csv"))
    (tmp_path / "b.txt").write_text("")
    with pytest.raises(CnnzooError, match="not a .csv"):
        load_data(str(tmp_path / "b.txt"))


def test_corrupt_image_is_returned_as_unreadable_and_dropped_by_collate(tmp_path):
    root = make_folder(tmp_path, {"a": 2, "b": 2})
    bad = corrupt_jpeg(root / "a" / "broken.jpg")
    src = load_data(str(root), val=0, test=0)
    ds = ImageDataset(src.splits["train"], eval_transform(8, [0.5] * 3, [0.5] * 3))
    items = [ds[i] for i in range(len(ds))]
    assert [type(i) for i in items].count(Unreadable) == 1
    x, y, skipped = collate(items)
    assert x.shape == (4, 3, 8, 8) and len(y) == 4 and skipped[0].path == str(bad)
    assert "truncated" in skipped[0].reason or "OSError" in skipped[0].reason


# --- data check and data split -----------------------------------------------------------------------------

def test_check_reports_corrupt_files_leakage_and_imbalance(tmp_path, capsys):
    root = tmp_path / "d"
    make_folder(root / "train", {"a": 20, "b": 3})
    make_folder(root / "test", {"a": 2, "b": 2})  # same pixels as train's img0/img1: leakage
    corrupt_jpeg(root / "train" / "a" / "broken.jpg")
    report = check_data(str(root))
    assert not report.ok
    text = str(report)
    assert "1 unreadable or corrupt file(s)" in text and "broken.jpg" in text
    assert "4 image(s) appear in more than one split (leakage)" in text
    assert "class imbalance" in text and "fewer than 5 training images: b (3)" in text
    assert main(["data", "check", str(root)]) == 1
    assert "FAILED: 2 fatal problem(s)" in capsys.readouterr().out


def test_check_passes_clean_data(capsys):
    assert main(["data", "check", "digits"]) == 0
    out = capsys.readouterr().out
    assert "train     1259" in out and "OK: no fatal problem" in out


def test_split_writes_a_csv_that_loads_back(tmp_path, capsys):
    root = make_folder(tmp_path / "pets", {"cat": 10, "dog": 20})
    assert main(["data", "split", str(root), "--val", "0.1", "--test", "0.2"]) == 0
    assert "train 21, val 3, test 6" in capsys.readouterr().out
    rows = list(csv.DictReader(open(root / "split.csv")))
    assert len(rows) == 30 and rows[0]["path"].startswith("cat/img")
    src = load_data(str(root / "split.csv"))
    assert {k: len(v) for k, v in src.splits.items()} == {"train": 21, "val": 3, "test": 6}
    before = (root / "split.csv").read_bytes()
    assert main(["data", "split", str(root)]) == 2  # nothing already written is lost
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0]
    assert (root / "split.csv").read_bytes() == before
    path, _ = split_to_csv(str(root), out=str(tmp_path / "other.csv"), seed=1)
    assert path.read_bytes() != before  # another seed, another split
