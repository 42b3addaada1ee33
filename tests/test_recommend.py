"""cnnzoo recommend on recorded bench data (tests/data/bench_sample.json: the tour's eight candidates, 224x224,
batch 1, one thread of the 2-core development machine), so that every decision below is deterministic."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from cnnzoo.bench import BenchResult, decide, pareto_front, recommend
from cnnzoo.cli import main
from cnnzoo.errors import CnnzooError

SAMPLE = Path(__file__).parent / "data" / "bench_sample.json"


@pytest.fixture(scope="module")
def sample() -> BenchResult:
    return BenchResult.load(SAMPLE)


def test_pareto_front():
    pts = [("a", 10, 60), ("b", 20, 70), ("c", 30, 65), ("d", 40, 75), ("e", 40, 74), ("f", 5, 60)]
    # a ties f on accuracy but is slower; c and e are beaten by faster, more accurate points
    assert pareto_front(pts) == ["f", "b", "d"]
    assert pareto_front([("x", 1, 50)]) == ["x"] and pareto_front([]) == []
    assert pareto_front([("p", 3, 70), ("q", 3, 71)]) == ["q"]  # same speed: the more accurate one


def test_the_sample_is_what_the_tests_assume(sample):
    assert sample.device.device == "cpu" and sample.device.threads == 1
    ours = {r.model: r.latency_ms for r in sample.rows if r.impl == "cnnzoo"}
    assert list(ours) == ["alexnet", "vgg16", "googlenet", "resnet18", "resnet50", "densenet121", "mobilenet_v2",
                          "shufflenet_v2_x1_0"]
    assert ours["resnet50"] == pytest.approx(615.2, abs=0.05) and ours["mobilenet_v2"] == pytest.approx(86.7, abs=0.05)


def test_unconstrained_recommendation(sample):
    rec = decide(sample, source="recorded")
    assert rec.choice == "resnet50"  # the most accurate of the eight: 76.13% (torchvision)
    assert [c.model for c in rec.front] == ["shufflenet_v2_x1_0", "mobilenet_v2", "densenet121", "resnet50"]
    status = {c.model: c.status for c in rec.candidates}
    assert status == {"shufflenet_v2_x1_0": "front", "alexnet": "dominated", "mobilenet_v2": "front",
                      "resnet18": "dominated", "googlenet": "dominated", "densenet121": "front",
                      "resnet50": "choice", "vgg16": "dominated"}
    why = {c.model: c.reason for c in rec.candidates}
    assert why["vgg16"] == "resnet50 is 1.5x faster and +4.5 points top-1"
    assert why["alexnet"] == "shufflenet_v2_x1_0 is 1.2x faster and +12.8 points top-1"
    assert rec.inputs() == "224x224 (alexnet 227x227)"
    text = "\n".join(rec.reasons)
    assert "Recommended: resnet50, the highest published top-1 of those that fit (76.1%" in text
    assert "mobilenet_v2 is 7.1x faster (86.7 ms) for 4.3 points less top-1 (71.9%)" in text
    assert "Never the right pick on this machine" in text and "on cpu (AMD EPYC, 1 thread)" in text


def test_constraints_move_the_choice(sample):
    rec = decide(sample, max_latency_ms=100)
    assert rec.choice == "mobilenet_v2"
    assert {c.model for c in rec.candidates if c.status == "excluded"} == {
        "resnet18", "googlenet", "densenet121", "resnet50", "vgg16"}
    assert "Constraints: latency <= 100 ms: 3 of 8 candidates fit." in rec.reasons
    assert "Left out, over 100 ms: resnet18, googlenet, densenet121, resnet50, vgg16." in rec.reasons

    rec = decide(sample, max_params=10e6)  # 10 M parameters: resnet50, vgg16, alexnet, googlenet, resnet18 out
    assert rec.choice == "densenet121"
    assert next(c for c in rec.candidates if c.model == "vgg16").reason == "138.4 M params > 10 M"

    rec = decide(sample, max_gflops=1.0)  # the lecture's GFLOP: multiply-adds per image
    assert rec.choice == "mobilenet_v2" and "alexnet" in [c.model for c in rec.candidates if c.status == "dominated"]

    rec = decide(sample, max_latency_ms=10)
    assert rec.choice is None and rec.front == []
    assert rec.reasons[-1] == "No candidate fits. The fastest measured is shufflenet_v2_x1_0 at 58.9 ms."


def test_models_subset_and_missing_rows(sample):
    rec = decide(sample, models=["vgg16", "alexnet", "resnet18", "zfnet"])  # zfnet was not benched
    assert rec.choice == "vgg16" and [c.model for c in rec.front] == ["alexnet", "resnet18", "vgg16"]
    assert "Not in the bench, so not considered: zfnet." in rec.reasons
    with pytest.raises(CnnzooError, match="no inference rows .* 32; it has batch 1 at 224x224, batch 1 at 227x227"):
        decide(sample, batch_size=32)


def test_recommend_reuses_a_saved_bench_and_plots(sample, tmp_path):
    rec = recommend(bench_file=SAMPLE, max_latency_ms=500)
    assert rec.choice == "densenet121" and rec.source == f"from {SAMPLE}"
    png = rec.plot(tmp_path / "front.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    d = rec.to_dict()
    assert d["choice"] == "densenet121" and len(d["candidates"]) == 8 and json.dumps(d)
    roof = rec.bench.figure()  # the roofline of the same measurements: a roof line and eight points
    ax = roof.axes[0]
    assert len(ax.lines) == 1 and len(ax.collections[0].get_offsets()) == 8
    assert max(ax.lines[0].get_ydata()) == pytest.approx(sample.device.matmul_gflops)


def test_recommend_measures_when_no_bench_is_given():
    info = dataclasses.replace(BenchResult.load(SAMPLE).device, threads=torch.get_num_threads())
    rec = recommend(["shufflenet_v2_x0_5", "mobilenet_v2_050"], input_size=32, repeats=2, warmup=1, info=info)
    assert {c.model for c in rec.candidates} == {"shufflenet_v2_x0_5", "mobilenet_v2_050"}
    assert all(c.latency_ms > 0 and c.input_size == (3, 32, 32) for c in rec.candidates)
    # mobilenet_v2_050 (65.4%) is more accurate than shufflenet_v2_x0_5 (60.6%): the choice whatever the timings
    assert rec.choice == "mobilenet_v2_050" and rec.source.startswith("measured now")


def test_cli_recommend(tmp_path, capsys):
    rc = main(["recommend", "--bench", str(SAMPLE), "--max-params", "20M", "--out", str(tmp_path)])
    out = capsys.readouterr()
    assert rc == 0 and "Recommended: densenet121" in out.out
    assert (tmp_path / "recommend.png").is_file()
    assert json.loads((tmp_path / "recommend.json").read_text())["constraints"] == {"max_params": 20e6}
    assert main(["recommend", "--bench", str(SAMPLE), "--max-latency-ms", "1", "--out", str(tmp_path)]) == 1
    assert "No candidate fits" in capsys.readouterr().out
    assert main(["recommend", "--bench", str(tmp_path / "nope.json")]) == 2
    assert "no bench file" in capsys.readouterr().err
