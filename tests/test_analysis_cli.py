"""`cnnzoo profile` and `cnnzoo compare`: every format, the documented JSON, the plots."""
from __future__ import annotations

import csv
import io
import json

import pytest

from cnnzoo.cli import main


def run(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_profile_table_is_the_lecture_table(capsys):
    out = run(capsys, "profile", "alexnet", "--input-size", "227", "--only", "lecture")
    lines = out.splitlines()
    assert lines[0] == "alexnet at 3x227x227, batch 1"
    conv1 = next(line for line in lines if line.startswith("features.0 "))
    assert conv1.split() == ["features.0", "conv", "3", "227", "64", "11", "4", "2", "64", "56", "784", "23,296",
                             "72.9", "11", "4"]
    assert "convention (the lecture's): flop = multiply-adds (MAC)" in out
    assert "not shown (not in the total): act 7 rows" in out


def test_profile_json_schema(capsys):
    out = json.loads(run(capsys, "profile", "googlenet", "--format", "json"))
    assert out["model"] == "googlenet" and out["input"] == [3, 224, 224]
    assert set(out) >= {"model", "input", "convention", "layers", "total", "unused_params"}
    assert out["convention"]["flops"].startswith("multiply-adds")
    keys = {"name", "type", "input", "output", "filters", "kernel", "stride", "pad", "memory_kb", "params", "flops",
            "receptive_field"}
    assert all(keys <= set(layer) for layer in out["layers"])
    assert {layer["type"] for layer in out["layers"]} == {"conv", "norm", "act", "pool", "concat", "flatten", "fc"}
    for key in ("memory_kb", "params", "flops"):
        assert sum(layer[key] for layer in out["layers"]) == out["total"][key]
    assert out["total"]["conv_fc_flops"] == 1_498_376_192
    assert out["unused_params"] == {"params": 6_379_984, "modules": ["aux1", "aux2"]}


def test_profile_csv_and_flop_convention(capsys):
    out = run(capsys, "profile", "vgg16", "--format", "csv", "--flops", "flop")
    rows = list(csv.DictReader(line for line in io.StringIO(out) if not line.startswith("#")))
    assert "flops_2x_macs" in rows[0]
    total = rows[-1]
    assert total["name"] == "total" and int(total["flops_2x_macs"]) == 2 * 15_476_410_880
    assert sum(int(r["params"]) for r in rows[:-1]) == int(total["params"]) == 138_357_544
    assert "# convention (the lecture's): FLOP = 2 x multiply-adds" in out


def test_profile_markdown_depth_and_training_memory(capsys):
    out = run(capsys, "profile", "resnet18", "--input-size", "3x97x75", "--depth", "2", "--format", "markdown",
              "--batch-size", "4", "--train-memory", "adam")
    assert "| layer1.0 | BasicBlock | 64 | 25x19 |" in out
    assert "training memory of resnet18 at 3x97x75, batch 4, adam:" in out


def test_profile_errors_are_one_line(capsys):
    assert main(["profile", "alexnet", "--input-size", "40"]) == 2
    assert "needs at least 63x63" in capsys.readouterr().err
    assert main(["profile", "alexnet", "--only", "convs"]) == 2
    assert "unknown row type(s) convs" in capsys.readouterr().err


def test_compare_ratios_and_plots(capsys, tmp_path):
    out = run(capsys, "compare", "alexnet", "vgg16", "googlenet", "--plot", str(tmp_path))
    vgg = next(line for line in out.splitlines() if line.startswith("vgg16 "))
    cells = vgg.split()
    assert cells[2:4] == ["138,357,544", "2.26"] and cells[5] == "21.57" and cells[9] == "27.04"
    assert "googlenet: 6,379,984 parameters never used in eval mode (aux1, aux2)" in out
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {f"{stem}.{ext}" for stem in ("layers-alexnet", "layers-vgg16", "layers-googlenet",
                                                   "compare-totals", "canziani") for ext in ("png", "svg")}
    assert (tmp_path / "canziani.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "canziani.svg").read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize("fmt", ["markdown", "csv", "json"])
def test_compare_formats(capsys, fmt):
    out = run(capsys, "compare", "resnet18", "resnet34", "--input-size", "64", "--format", fmt)
    assert "resnet34" in out
    if fmt == "json":
        rows = json.loads(out)["models"]
        assert rows[1]["ratio"]["params"] == pytest.approx(21_797_672 / 11_689_512)
