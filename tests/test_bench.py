"""cnnzoo.bench: the timing protocol, the work and memory figures, the result files, the CLI. Tiny models only."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnzoo import create_model
from cnnzoo.analysis import profile
from cnnzoo.bench import BenchResult, DeviceInfo, LiveStorages, bench, device_info, peak_memory
from cnnzoo.bench.bench import Step, train_flops
from cnnzoo.cli import main
from cnnzoo.errors import CnnzooError

bench_mod = importlib.import_module("cnnzoo.bench.bench")  # the package's `bench` is the function

# A made-up device, so that the tests time models without measuring the machine's peak each time.
FAKE = DeviceInfo("cpu", "test cpu", 1, torch.__version__, matmul_gflops=100.0, matmul_precision="fp32",
                  bf16_gflops=None, bandwidth_gbs=10.0, date="2024-01-01T00:00:00", host="test")


def test_device_info_measures_the_cpu():
    info = device_info("cpu", quick=True)
    assert info.device == "cpu" and info.threads == torch.get_num_threads() and info.name
    assert 0.1 < info.matmul_gflops < 1e5 and 0.1 < info.bandwidth_gbs < 1e4
    assert "GFLOP/s" in str(info)


def test_live_storages_counts_each_storage_until_it_dies():
    x = torch.randn(1000)  # 4000 bytes
    with LiveStorages([x, x[:10]]) as live:  # a view of x is the same storage: counted once
        assert live.start == 4000
        a = x * 2
        b = a + 1
        del a  # freed before the next operator: only b and c are live with x below
        c = b * 3
        d = c.view(10, 100)  # a view: no new storage
        e = d.add_(1)  # in place: no new storage
    assert live.peak == 4000 * 3  # x + a + b at once, then x + b + c
    assert e is d and c.shape == (1000,)


def test_peak_memory_of_a_linear_layer_is_exact():
    torch.manual_seed(0)
    fc = nn.Linear(256, 512)
    x = torch.randn(8, 256)
    step = Step(fc, x, "infer")
    weights = (256 * 512 + 512) * 4
    assert peak_memory(step, x.device, step.live_tensors()) == weights + 8 * 256 * 4 + 8 * 512 * 4  # + in + out


def test_training_step_memory_holds_grads_and_momentum():
    fc = nn.Linear(256, 512)
    x = torch.randn(8, 256)
    step = Step(fc, x, "train")
    step()  # the first step creates the momentum buffers
    weights = (256 * 512 + 512) * 4
    peak = peak_memory(step, x.device, step.live_tensors())
    # weights + momentum + gradients + activations: at least three copies of the weights
    assert 3 * weights < peak < 3 * weights + 200_000


def test_interleaved_timing_and_the_ratio(monkeypatch):
    """Rounds alternate AB, BA, ...; vs_torchvision is the median of the per-round ratios."""
    order, times = [], {"cnnzoo": iter([0.02, 0.02, 0.03, 0.05]), "torchvision": iter([0.01, 0.04, 0.03, 0.10])}

    def fake_time(step, device):
        impl = "torchvision" if step.model.__class__.__module__.startswith("torchvision") else "cnnzoo"
        order.append(impl[0])
        return next(times[impl], 0.01)

    monkeypatch.setattr(bench_mod, "_time", fake_time)
    res = bench(["shufflenet_v2_x0_5"], input_size=32, repeats=3, warmup=1, info=FAKE, memory=False)
    assert "".join(order) == "ct" + "ct" + "tc" + "ct"  # one warm-up round, then AB BA AB
    ours, tv = res.get("shufflenet_v2_x0_5"), res.get("shufflenet_v2_x0_5", "torchvision")
    assert ours.latency_ms == pytest.approx(30.0) and tv.latency_ms == pytest.approx(40.0)
    # per-round ratios 0.02/0.04, 0.03/0.03, 0.05/0.10: median 0.5 (the ratio of the medians would be 0.75)
    assert ours.vs_torchvision == pytest.approx(0.5)
    assert tv.vs_torchvision is None and ours.repeats == 3


def test_bench_figures_of_a_small_model():
    res = bench(["shufflenet_v2_x0_5"], batch_sizes=(1, 2), input_size=32, repeats=3, warmup=1, info=FAKE)
    macs = profile("shufflenet_v2_x0_5", input_size=32).conv_fc_macs
    params = sum(p.numel() for p in create_model("shufflenet_v2_x0_5").parameters())
    assert [(r.impl, r.batch_size) for r in res.rows] == [("cnnzoo", 1), ("torchvision", 1), ("cnnzoo", 2),
                                                            ("torchvision", 2)]
    for r in res.rows:
        assert r.input_size == (3, 32, 32) and r.macs == macs and r.params == params == 1_366_792
        assert r.flops == 2 * macs * r.batch_size
        assert r.latency_q1_ms <= r.latency_ms <= r.latency_q3_ms
        assert r.throughput == pytest.approx(r.batch_size / (r.latency_ms / 1e3))
        assert r.gflops == pytest.approx(r.flops / (r.latency_ms / 1e3) / 1e9)
        assert r.peak_fraction == pytest.approx(r.gflops / FAKE.matmul_gflops)
        assert r.roof_gflops == pytest.approx(min(100.0, r.intensity * 10.0))
        assert 4 * params + 3 * 32 * 32 * 4 * r.batch_size < r.peak_memory_bytes < 4 * params + 2**20 * r.batch_size
        assert (r.vs_torchvision is not None) == (r.impl == "cnnzoo")
    assert "shufflenet_v2_x0_5" in res.table() and "test cpu" in res.table()


def test_train_mode_counts_forward_and_backward():
    fwd = 2 * profile("resnet18", input_size=32).conv_fc_macs * 2
    total = train_flops("resnet18", (3, 32, 32), 2)
    assert 2.5 * fwd < total < 3 * fwd  # backward = 2x forward, less the first conv's unneeded input gradient
    res = bench(["resnet18"], batch_sizes=(2,), mode="train", input_size=32, repeats=2, warmup=1, info=FAKE,
                torchvision=False)
    (row,) = res.rows
    assert row.flops == total and row.intensity is None
    assert row.peak_memory_bytes > 3 * 4 * row.params  # weights, gradients, momentum


def test_bench_refuses_bad_input():
    with pytest.raises(CnnzooError, match="mode"):
        bench(["resnet18"], mode="fit", info=FAKE)
    with pytest.raises(CnnzooError, match="at least 63x63"):
        bench(["alexnet"], input_size=32, info=FAKE)
    with pytest.raises(CnnzooError, match="batch sizes"):
        bench(["resnet18"], batch_sizes=(0,), info=FAKE)
    with pytest.raises(CnnzooError, match="unknown model"):
        bench(["resnet19"], info=FAKE)
    with pytest.raises(CnnzooError, match="one value per channel|Expected more than 1"):
        bench(["resnet18"], mode="train", input_size=32, info=FAKE, torchvision=False)  # BN on a 1x1 map


def test_with_peak_recomputes_the_roofline():
    res = BenchResult.load(Path(__file__).parent / "data" / "bench_sample.json")
    again = res.with_peak(2 * res.device.matmul_gflops)
    for a, b in zip(res.rows, again.rows):
        assert b.peak_fraction == pytest.approx(a.peak_fraction / 2) and b.latency_ms == a.latency_ms
        assert b.roof_gflops == pytest.approx(min(2 * res.device.matmul_gflops, a.intensity * res.device.bandwidth_gbs))
    assert again.device.matmul_gflops == 2 * res.device.matmul_gflops and res.rows[0] is not again.rows[0]


def test_save_and_load(tmp_path):
    res = bench(["shufflenet_v2_x0_5"], input_size=32, repeats=2, warmup=1, info=FAKE)
    js, cs = res.save(tmp_path)
    assert BenchResult.load(js) == res
    lines = cs.read_text().splitlines()
    assert lines[0].startswith("device,model,impl,mode,batch_size,input_size") and len(lines) == 3
    assert lines[1].startswith("cpu,shufflenet_v2_x0_5,cnnzoo,infer,1,3x32x32,")
    with pytest.raises(CnnzooError, match="no bench file"):
        BenchResult.load(tmp_path / "missing.json")


def test_cli_bench(tmp_path, capsys):
    rc = main(["bench", "shufflenet_v2_x0_*", "--input-size", "32", "--repeats", "2", "--warmup", "1",
               "--no-torchvision", "--no-memory", "--out", str(tmp_path)])
    out = capsys.readouterr()
    assert rc == 0 and "shufflenet_v2_x0_5" in out.out and "wrote" in out.err
    data = json.loads((tmp_path / "bench.json").read_text())
    assert [r["model"] for r in data["rows"]] == ["shufflenet_v2_x0_5"]
    assert main(["bench", "resnet18", "--batch-size", "1,x"]) == 2
    assert "expected whole numbers" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the GPU path runs only where one is lent")
def test_cuda_bench():
    info = device_info("cuda", quick=True)
    assert info.device.startswith("cuda") and info.matmul_gflops > 1000 and info.bf16_gflops > info.matmul_gflops / 4
    res = bench(["resnet18"], device="cuda", batch_sizes=(4,), input_size=64, repeats=3, warmup=2, info=info)
    ours = res.get("resnet18")
    assert ours.peak_memory_bytes > 4 * ours.params and ours.vs_torchvision > 0
