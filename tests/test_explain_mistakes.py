"""Evaluation's mistakes: the most-confused pairs, the top losses (in the evaluation's order, unreadable files
skipped) and their Grad-CAM grid."""
from __future__ import annotations

import numpy as np
import torch

import cnnzoo
from cnnzoo.data.datasets import Split
from cnnzoo.explain.mistakes import add_mistakes, confused_pairs, format_mistakes, top_losses


def test_confused_pairs_are_the_largest_off_diagonal_cells():
    cm = np.array([[9, 3, 0], [1, 7, 5], [0, 2, 8]])
    pairs = confused_pairs(cm, ["a", "b", "c"], n=3)
    assert pairs == [{"true": "b", "predicted": "c", "count": 5}, {"true": "a", "predicted": "b", "count": 3},
                     {"true": "c", "predicted": "b", "count": 2}]


def test_top_losses_are_the_wrong_ones_largest_loss_first_with_skipped_files_accounted():
    split = Split([0, 1, 1, 0, 1], paths=["p0", "bad", "p2", "p3", "p4"])
    result = {"pred": torch.tensor([0, 0, 0, 0]), "target": torch.tensor([0, 1, 0, 1]),
              "losses": torch.tensor([0.1, 2.0, 0.2, 5.0]), "confidence": torch.tensor([.9, .8, .7, .99]),
              "skipped": [["bad", "corrupt"]]}
    got = top_losses(result, split, ["zero", "one"])
    assert [(t["image"], t["loss"]) for t in got] == [("p4", 5.0), ("p2", 2.0)]  # "bad" was never scored
    assert got[0]["true"] == "one" and got[0]["predicted"] == "zero"


def test_add_mistakes_writes_the_grid_and_report_lines(tmp_path):
    torch.manual_seed(0)
    model = cnnzoo.create_model("resnet18", num_classes=2, in_chans=1).eval()
    split = Split([0, 1, 1], images=torch.rand(3, 1, 16, 16))
    info = {"model": "resnet18", "classes": ["zero", "one"], "num_classes": 2, "in_chans": 1, "input_size": 32,
            "mean": [0.5], "std": [0.25], "crop_pct": 1.0, "path": "x.pt"}
    result = {"pred": torch.tensor([1, 0, 1]), "target": torch.tensor([0, 1, 1]),
              "losses": torch.tensor([1.5, 0.9, 0.1]), "confidence": torch.tensor([.8, .6, .9]), "skipped": []}
    report: dict = {}
    add_mistakes(report, model, info, split, result, np.array([[0, 1], [1, 1]]), tmp_path, "test")
    assert [t["image"] for t in report["top_losses"]] == ["#0", "#1"]
    assert (tmp_path / "top-losses-test.png").read_bytes().startswith(b"\x89PNG")
    text = "\n".join(format_mistakes(report))
    assert "zero -> one: 1" in text and "#0: said one (80.0%), true zero, loss 1.50" in text
