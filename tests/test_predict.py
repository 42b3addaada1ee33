"""`cnnzoo predict` and the backends: real digit images, unreadable files, and the fastest-correct rule."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from cnnzoo.cli import main
from cnnzoo.deploy import backends
from cnnzoo.deploy.backends import Backend, TorchBackend, select_backend
from cnnzoo.deploy.export import export_run
from cnnzoo.deploy.images import ImageRejected, decode_image, real_images
from cnnzoo.deploy.meta import load_source
from cnnzoo.deploy.predict import Predictor, predict
from cnnzoo.errors import CnnzooError
from deploy_run import shared_run, write_digit_pngs


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return shared_run(tmp_path_factory)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """10 real digits in a folder with two broken files; (folder, [(path, label)])."""
    folder = tmp_path_factory.mktemp("images")
    digits = write_digit_pngs(folder / "good", 10)
    (folder / "good" / "notes.png").write_text("this is not an image")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
    (folder / "good" / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return folder, digits


@pytest.fixture(scope="module")
def onnx_file(run, tmp_path_factory):
    return export_run(run, "onnx", tmp_path_factory.mktemp("onnx") / "digits.onnx", dynamic_batch=True).path


def test_predict_folder_with_unreadable_files(run, images):
    folder, digits = images
    r = predict(run, [str(folder / "good")], top_k=3)
    assert len(r.predictions) == 10 and len(r.failures) == 2
    assert {f.input.rsplit("/", 1)[-1] for f in r.failures} == {"notes.png", "cut.jpg"}
    assert any("truncated" in f.error for f in r.failures) and any("allowed format" in f.error for f in r.failures)
    truth = {str(p): str(label) for p, label in digits}
    right = sum(p.top[0][0] == truth[p.input] for p in r.predictions)
    assert right >= 8  # about 94% test accuracy
    for p in r.predictions:
        probs = [pr for _, pr in p.top]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert r.backend == "eager" and "12 image(s)" in r.backend_reason  # few images: no measuring


def test_files_globs_and_missing_inputs(run, images):
    folder, digits = images
    r = predict(run, [str(digits[0][0]), str(folder / "good" / "digit170[12]_*.png"), str(folder / "nope.png"),
                      str(folder / "*.gif")])
    assert [p.input for p in r.predictions] == [str(digits[i][0]) for i in (0, 1, 2)]
    assert [(f.input.rsplit("/", 1)[-1], f.error) for f in r.failures] == [
        ("nope.png", "no such file or folder"), ("*.gif", "no file matches the pattern")]
    with pytest.raises(CnnzooError, match="no image to predict"):
        predict(run, [str(folder / "nope.png")])


def test_onnx_file_predicts_what_the_checkpoint_predicts(run, images, onnx_file):
    folder, _ = images
    a = predict(run, [str(folder / "good")], top_k=10, backend="eager")
    b = predict(onnx_file, [str(folder / "good")], top_k=10)
    assert b.backend == "onnxruntime" and b.model == "resnet18"
    for p, q in zip(a.predictions, b.predictions):
        assert [c for c, _ in p.top] == [c for c, _ in q.top]
        assert np.allclose([pr for _, pr in p.top], [pr for _, pr in q.top], atol=1e-4)


def test_a_fixed_batch_onnx_file_predicts_any_number_of_images(run, images, tmp_path):
    """Exported without --dynamic-batch the file takes one image at a time; predict feeds it 10 images in
    chunks (the last one padded) and gets what the checkpoint gets."""
    folder, _ = images
    fixed = export_run(run, "onnx", tmp_path / "fixed.onnx").path
    a = predict(run, [str(folder / "good")], top_k=10, backend="eager")
    b = predict(fixed, [str(folder / "good")], top_k=10, batch_size=4)
    assert len(b.predictions) == 10 and [p.input for p in b.predictions] == [p.input for p in a.predictions]
    for p, q in zip(a.predictions, b.predictions):
        assert [c for c, _ in p.top] == [c for c, _ in q.top]
        assert np.allclose([pr for _, pr in p.top], [pr for _, pr in q.top], atol=1e-4)


def test_auto_takes_the_fastest_backend_that_agrees(run):
    pred = Predictor(run, "auto", batch_size=16)  # expected_images=None: a server, so it measures
    names = {m.name for m in pred.measured}
    assert {"eager", "onnxruntime", "int8"} <= names
    chosen = next(m for m in pred.measured if m.name == pred.backend.name)
    assert chosen.ok and chosen.agreement >= 0.99 and "test images of digits" in pred.reason
    timed = [m for m in pred.measured if m.seconds]
    assert chosen.seconds == min(m.seconds for m in timed if m.ok or m.agreement is None or m.name == chosen.name)
    for m in pred.measured:  # every faster candidate was checked and rejected
        if m.seconds and m.seconds < chosen.seconds:
            assert m.agreement is not None and not m.ok and "rejected" in m.note


class _FastButWrong(Backend):
    name = "bf16"

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        return np.tile(np.arange(10, dtype=np.float32), (len(x), 1))  # always class 9, instantly


def test_a_fast_wrong_backend_is_rejected(run, monkeypatch):
    source = load_source(run)
    probe, what = real_images(source.meta, 64)
    real_build = backends.build_backend
    monkeypatch.setattr(backends, "build_backend",
                        lambda name, *a, **k: _FastButWrong() if name == "bf16" else real_build(name, *a, **k))
    sel = select_backend(source, probe, batch_size=8, probe_what=what, names=["eager", "bf16"])
    wrong = next(m for m in sel.measured if m.name == "bf16")
    assert sel.backend.name == "eager" and isinstance(sel.backend, TorchBackend)
    assert wrong.seconds < next(m for m in sel.measured if m.name == "eager").seconds
    assert not wrong.ok and wrong.agreement < 0.5 and "rejected: top-1 agreement" in wrong.note


def test_cli_predict_json_and_exit_status(run, images, capsys):
    folder, digits = images
    assert main(["predict", str(run), str(digits[0][0]), "--json", "--top-k", "2"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"] == "resnet18" and len(doc["predictions"]) == 1
    assert [t["label"] for t in doc["predictions"][0]["top"]][0] == str(digits[0][1])
    assert main(["predict", str(run), str(folder / "good")]) == 1  # some unreadable: reported, rest predicted
    out = capsys.readouterr()
    assert len(out.out.strip().splitlines()) == 10 and "cannot read" in out.err and "backend eager" in out.err
    assert main(["predict", str(folder), str(digits[0][0])]) == 2  # a folder that is no run
    assert "holds no checkpoint" in capsys.readouterr().err


def test_decode_rejects_hostile_bytes():
    png = io.BytesIO()
    Image.new("L", (4000, 3000)).save(png, format="PNG")
    cut = png.getvalue()[: len(png.getvalue()) // 2]
    cases = {b"": 400, b"GIF89a-not-really": 415, b"%PDF-1.4 hello": 415, cut: 422}
    for data, status in cases.items():
        with pytest.raises(ImageRejected) as err:
            decode_image(data, "RGB")
        assert err.value.status == status, data[:20]
    with pytest.raises(ImageRejected, match="4000x3000 = 12 MP exceeds the limit of 10 MP") as err:
        decode_image(png.getvalue(), "L", max_pixels=10_000_000)
    assert err.value.status == 413
    assert decode_image(png.getvalue(), "RGB").size == (4000, 3000)


def test_sample_images_writes_real_test_images(run, tmp_path):
    from cnnzoo.deploy.images import sample_images

    files = sample_images(load_source(run).meta, tmp_path, 6)
    assert len(files) == 6 and all(p.is_file() and p.suffix == ".png" for p, _ in files)
    assert [label for _, label in files] == ["0", "1", "2", "3", "4", "5"]  # the classes take turns
    assert Image.open(files[0][0]).mode == "L"  # digits are grey
    r = predict(run, [str(tmp_path)], top_k=1)
    truth = {str(p): label for p, label in files}
    assert sum(p.top[0][0] == truth[p.input] for p in r.predictions) >= 4


def test_torchvision_weights_predict_imagenet_classes(tmp_path, capsys):
    """`cnnzoo predict MODEL --weights FILE`: a file written by torchvision (no training run), its 1000 classes
    named as torchvision names them, the same probabilities as torchvision's own model on the same input."""
    import torchvision
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    torch.manual_seed(0)
    reference = torchvision.models.resnet18().eval()
    weights = tmp_path / "resnet18-tv.pth"
    torch.save(reference.state_dict(), weights)
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 260, 3), dtype=np.uint8)).save(image)

    assert main(["predict", "resnet18", str(image), "--weights", str(weights), "--json", "--backend", "eager"]) == 0
    top = json.loads(capsys.readouterr().out)["predictions"][0]["top"]
    src = load_source("resnet18", weights)
    assert src.meta.classes == list(_IMAGENET_CATEGORIES) and src.meta.input_size == 224
    x = Predictor(src, "eager").load_batch([image])[0]
    with torch.no_grad():
        expected = torch.softmax(reference(x), 1)[0].double()
    best = expected.topk(5)
    assert [t["label"] for t in top] == [_IMAGENET_CATEGORIES[i] for i in best.indices]
    assert np.allclose([t["probability"] for t in top], best.values.numpy(), atol=1e-5)

    assert main(["predict", "resnet18", str(image)]) == 2  # an architecture alone is no trained model
    assert "add --weights" in capsys.readouterr().err
