"""`cnnzoo export`: ONNX and torch.export programs, verified against PyTorch; untranslatable layers named.

The ONNX parity set covers what the exporter must get right: residual blocks (resnet18, the trained
run), depthwise separable convolutions (mobilenet_v1/v2), grouped convolutions with channel shuffle
(shufflenet v1 and v2), LocalResponseNorm with grouped convolutions and an adaptive pool to a size that
does not divide its map (alexnet_2012 at 96 px: 1x1 -> 6x6), inception branches with LRN (googlenet_paper).
"""
from __future__ import annotations

import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from cnnzoo import ZooModel, create_model
from cnnzoo.cli import main
from cnnzoo.deploy import export as export_mod
from cnnzoo.deploy.export import ExportError, export_model, export_run
from cnnzoo.deploy.meta import META_KEY, ModelMeta, read_onnx_meta
from deploy_run import shared_run, write_digit_pngs
from parity import randomize_batchnorm

PARITY = [  # (model, input size, dynamic batch); resnet18 is covered by the run tests below
    ("mobilenet_v1_050", 32, False),
    ("mobilenet_v2", 32, True),
    ("shufflenet_v1_g3_x1_0", 32, False),
    ("shufflenet_v2_x0_5", 32, True),
    ("alexnet_2012", 96, True),
    ("googlenet_paper", 32, False),
]


@pytest.fixture(scope="module")
def pngs(tmp_path_factory):
    return [str(p) for p, _ in write_digit_pngs(tmp_path_factory.mktemp("digits"), 4)]


@pytest.mark.parametrize("name,size,dynamic", PARITY)
def test_onnx_parity(name, size, dynamic, tmp_path, pngs):
    model = create_model(name, num_classes=10).eval()
    randomize_batchnorm(model)  # identity batch norms would hide a misplaced one
    meta = ModelMeta.untrained(name, num_classes=10, input_size=size)
    out = tmp_path / f"{name}.onnx"
    report = export_model(model, meta, "onnx", out, dynamic_batch=dynamic, images=pngs)
    assert [c.ok for c in report.checks] == [True] * len(report.checks)
    assert report.checks[-1].inputs == "4 given images" and report.checks[-1].max_abs_diff is not None
    onnx.checker.check_model(str(out), full_check=True)
    # an independent check: onnxruntime against PyTorch on inputs the export never saw
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randn(3 if dynamic else 1, 3, size, size)
    with torch.no_grad():
        ref = model(x)
    got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
    assert (got - ref).abs().max() <= 1e-4 * max(1.0, float(ref.abs().max())), name
    assert session.get_inputs()[0].shape[0] == ("batch" if dynamic else 1)
    if name in ("alexnet_2012", "googlenet_paper"):
        assert any("LocalResponseNorm(size=5)" in n for n in report.notes)
    if name == "alexnet_2012":
        assert any("avgpool AdaptiveAvgPool2d 1x1 -> 6x6 (not a divisor)" in n for n in report.notes)


def test_run_to_onnx_carries_its_metadata_and_is_checked_on_the_runs_images(tmp_path_factory, tmp_path):
    run = shared_run(tmp_path_factory)
    report = export_run(run, "onnx", tmp_path / "digits.onnx", dynamic_batch=True)
    real = report.checks[-1]
    assert real.inputs == "16 test images of digits" and real.ok and real.max_abs_diff < 1e-3
    assert report.input_shape == ["batch", 1, 32, 32] and report.opset >= 18
    meta = read_onnx_meta(report.path)
    assert meta.model == "resnet18" and meta.classes == [str(i) for i in range(10)]
    assert meta.input_size == 32 and meta.in_chans == 1 and meta.data == "digits"


def test_run_to_pt2(tmp_path_factory, tmp_path):
    run = shared_run(tmp_path_factory)
    report = export_run(run, "pt2", tmp_path / "digits.pt2")
    assert all(c.ok for c in report.checks) and report.checks[-1].max_abs_diff is not None
    extra = {META_KEY: ""}
    program = torch.export.load(report.path, extra_files=extra)
    assert ModelMeta.from_json(extra[META_KEY]).model == "resnet18"
    assert program.module()(torch.zeros(1, 1, 32, 32)).shape == (1, 10)


class _Unexportable(ZooModel):
    """A conv net with a layer the ONNX exporter has no translation for."""

    def __init__(self, data_dependent: bool = False) -> None:
        super().__init__()
        self.data_dependent = data_dependent
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.FractionalMaxPool2d(2, output_size=4))
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.data_dependent and x.mean() > 0:  # control flow on values: torch.export cannot trace it
            x = -x
        return self.fc(self.features(x).mean((2, 3)))


def test_a_layer_the_exporter_cannot_express_is_named(tmp_path):
    meta = ModelMeta("toy", ["a", "b"], 3, 16, [0.0] * 3, [1.0] * 3)
    out = tmp_path / "toy.onnx"
    with pytest.raises(ExportError, match=r"cannot express layer features\.2 \(FractionalMaxPool2d\).*fractional_max_pool2d"):
        export_model(_Unexportable().eval(), meta, "onnx", out)
    with pytest.raises(ExportError, match=r"torch.export cannot trace the model in layer _Unexportable\.forward"):
        export_model(_Unexportable(data_dependent=True).eval(), meta, "pt2", tmp_path / "toy.pt2")
    assert not out.exists() and not (tmp_path / "toy.pt2").exists()


def test_a_parity_failure_removes_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(export_mod, "ATOL", -1.0)  # no difference can pass a negative tolerance
    out = tmp_path / "m.pt2"
    meta = ModelMeta.untrained("mobilenet_v1_025", num_classes=3, input_size=32)
    with pytest.raises(ExportError, match="differs from PyTorch on random, batch 1"):
        export_model(create_model("mobilenet_v1_025", num_classes=3), meta, "pt2", out)
    assert not out.exists()


def test_cli_export(tmp_path_factory, tmp_path, capsys):
    run = shared_run(tmp_path_factory)
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    text = capsys.readouterr().out
    assert "exported resnet18 to" in text and "opset" in text
    assert "16 test images of digits" in text and "max |diff|" in text
    assert main(["export", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "again.onnx")]) == 2
    assert "already an ONNX file" in capsys.readouterr().err
