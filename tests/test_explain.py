"""cnnzoo.explain: the Grad-CAM layer table, heat maps in the file's pixels, the CLI's pictures, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import cnnzoo
from cnnzoo.cli import main
from cnnzoo.deploy.meta import ModelMeta, Source
from cnnzoo.explain import GRADCAM_LAYERS, explain
from cnnzoo.explain.attribution import to_file_pixels
from cnnzoo.data import eval_transform

PNG = b"\x89PNG\r\n\x1a\n"


def test_every_family_declares_gradcam_layers_that_exist_and_give_maps():
    for name in cnnzoo.list_models():
        card = cnnzoo.get_card(name)
        stages = GRADCAM_LAYERS[card.family]  # a family missing from the table fails here
        with torch.device("meta"):
            model = cnnzoo.create_model(name).eval()
            shapes = {}
            for stage in stages:
                model.get_submodule(stage).register_forward_hook(
                    lambda m, i, o, stage=stage: shapes.__setitem__(stage, tuple(o.shape)))
            model(torch.empty(1, 3, card.input_size, card.input_size))
        for stage in stages:
            assert len(shapes[stage]) == 4, (name, stage, shapes[stage])
        assert shapes[stages[0]][-1] < shapes[stages[-1]][-1] or len(stages) == 1, (name, "last stage first")


def test_heatmap_maps_back_through_resize_and_centre_crop_of_a_non_square_image():
    """The eval transform's own crop of a ramp image, mapped back, is the ramp where the crop came from and 0
    outside it. 90x50 at input 32, crop_pct 0.8: resized to 72x40, the crop's columns 20-52 and rows 4-36 are
    the file's columns 25-65 and rows 5-45."""
    w, h = 90, 50
    ramp = np.add.outer(np.linspace(0.2, 0.6, h), np.linspace(0, 0.4, w))
    img = Image.fromarray((ramp * 255).round().astype(np.uint8), mode="L")
    crop = eval_transform(32, [0.0], [1.0], in_chans=1, crop_pct=0.8)(img)[0]
    heat = to_file_pixels(crop, img.size, 32, 0.8)
    assert heat.shape == (h, w) and float(heat.min()) >= 0 and float(heat.max()) == pytest.approx(1)
    assert float(heat[:, :24].abs().max()) == 0 and float(heat[:, 67:].abs().max()) == 0
    assert float(heat[:4].abs().max()) == 0 and float(heat[47:].abs().max()) == 0
    inside = torch.tensor(ramp[8:42, 28:62] / ramp[5:45, 25:65].max(), dtype=torch.float32)
    assert torch.allclose(heat[8:42, 28:62], inside, atol=0.04)


@pytest.fixture(scope="module")
def small() -> Source:
    torch.manual_seed(0)
    model = cnnzoo.create_model("resnet18", num_classes=3, in_chans=3).eval()
    meta = ModelMeta.untrained("resnet18", 3, input_size=32)
    meta.classes = ["cat", "dog", "fox"]
    return Source("torch", meta, "random", model)


@pytest.mark.parametrize("method", ["gradcam", "occlusion", "saliency", "integrated_gradients"])
def test_every_method_gives_a_unit_map_of_the_files_size(small, method):
    img = Image.fromarray((np.random.default_rng(0).random((45, 70, 3)) * 255).astype(np.uint8))
    e = explain(small, img, method, target="dog", patch=16)
    assert e.heatmap.shape == (45, 70) and e.heatmap.dtype == torch.float32
    assert float(e.heatmap.min()) >= 0 and float(e.heatmap.max()) == pytest.approx(1)
    assert (e.target, e.label) == (1, "dog") and 0 < e.probability < 1
    assert e.layer == ("layer1" if method == "gradcam" else None)  # 32 px: layer1 is the last with 7x7 or more


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A model name with a weights file (3 classes) and two grey images (read as RGB): what the CLI gets."""
    folder = tmp_path_factory.mktemp("explain")
    torch.manual_seed(0)
    torch.save(cnnzoo.create_model("resnet18", num_classes=3).state_dict(), folder / "w.pth")
    rng = np.random.default_rng(0)
    for name, size in (("a.png", (40, 30)), ("b.png", (24, 24))):
        Image.fromarray((rng.random(size) * 255).astype(np.uint8), mode="L").save(folder / name)
    return folder


def _cli(folder, *words):
    return main([words[0], "resnet18", "--weights", str(folder / "w.pth"), *words[1:]])


def test_explain_writes_an_overlay_per_image_and_method_and_an_index(weights, tmp_path):
    code = _cli(weights, "explain", str(weights / "a.png"), str(weights / "b.png"), "--method", "gradcam",
                "saliency", "--target", "class2", "--out", str(tmp_path))
    assert code == 0
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["a-gradcam.png", "a-saliency.png", "b-gradcam.png", "b-saliency.png"]
    assert all((tmp_path / p).read_bytes().startswith(PNG) for p in pngs)
    page = (tmp_path / "index.html").read_text()
    assert all(f"src='{p}'" in page for p in pngs) and "class2" in page
    assert not list(tmp_path.glob(".*.tmp"))


def test_filters_and_activations_write_pngs(weights, tmp_path, capsys):
    assert _cli(weights, "filters", "--out", str(tmp_path / "f.png")) == 0
    assert _cli(weights, "activations", str(weights / "a.png"), "--layer", "layer1", "--strongest", "4",
                "--out", str(tmp_path / "act.png")) == 0
    assert (tmp_path / "f.png").read_bytes().startswith(PNG) and (tmp_path / "act.png").read_bytes().startswith(PNG)
    with Image.open(tmp_path / "f.png") as f:
        assert min(f.size) > 200  # 64 filters of 7x7 drawn large enough to see


@pytest.mark.parametrize("words, says", [
    (["explain", "a.png", "--layer", "layer9", "--out", "o"], "no layer 'layer9'"),
    (["explain", "a.png", "--layer", "fc", "--out", "o"], "needs a layer with a spatial map"),
    (["explain", "a.png", "--layer", "pool", "--out", "o"], "is the pooled vector"),
    (["explain", "a.png", "--method", "gradcam++", "--out", "o"], "captum"),
    (["explain", "a.png", "--method", "lime", "--out", "o"], "the methods are gradcam, occlusion"),
    (["explain", "missing.png", "--out", "o"], "no such file"),
    (["explain", "a.png", "--target", "zebra", "--out", "o"], "unknown class 'zebra'"),
    (["explain", "a.png", "--method", "saliency", "--layer", "layer1", "--out", "o"], "applies to gradcam only"),
    (["activations", "missing.png", "--layer", "layer1", "--out", "o.png"], "no such file"),
    (["activations", "a.png", "--layer", "fc", "--out", "o.png"], "needs a layer with a spatial map"),
])
def test_bad_input_is_one_line(weights, tmp_path, capsys, monkeypatch, words, says):
    monkeypatch.chdir(weights)
    words = [w if w not in ("o", "o.png") else str(tmp_path / w) for w in words]
    assert _cli(weights, *words) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnzoo: error: ") and err.count("\n") == 1 and says in err, err
    assert "Traceback" not in err
