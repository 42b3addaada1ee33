"""Explanations point at the evidence: on images whose class is decided by one object in a known box, a trained
model's Grad-CAM and occlusion heat falls mostly inside that box (the energy pointing game, Wang et al. 2020:
the fraction of the heat map's total inside the box).

The images: 40x40 grey noise (mean 0.5, sd 0.15) with one 10x10 square at a random place, white for class
"bright" and black for class "dark"; nothing else differs between the classes. The box covers 1/16 of the image,
so heat spread without regard to the box puts 6.25% of its energy there (chance). The thresholds:
- Grad-CAM's map is resnet18's layer1 at 40x40 (the default: the last stage with at least 7x7 positions), 10x10
  positions of 4 pixels, upsampled bilinearly: even a perfect map smears a cell beyond the box on each side
  (a 14x14 square holds the 10x10 box: half the energy at most), so we ask for 2.5x chance (>= 15.6%) in at
  least 3/4 of the correctly classified images. (layer2, 5x5 cells of 8 pixels, gives only 11-19%.)
- occlusion with a 10-pixel patch (the box's size) and stride 5 credits a pixel with every patch covering it,
  so heat reaches up to a patch beyond the box; its map is finer than Grad-CAM's: 4x chance (>= 25%).
Measured here: Grad-CAM 18-43% per image, occlusion 31-50% (12 of 12 test images classified correctly).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import cnnzoo
from cnnzoo.deploy.meta import ModelMeta, Source
from cnnzoo.explain import explain

SIDE, BOX = 40, 10
CHANCE = BOX * BOX / SIDE**2
THRESHOLD = {"gradcam": 2.5, "occlusion": 4.0}  # times chance; see above


def boxes(n: int, seed: int):
    """n images (uint8 H x W), labels (0 dark, 1 bright) and box corners (row, col)."""
    rng = np.random.default_rng(seed)
    images, labels, corners = [], [], []
    for i in range(n):
        img = 0.5 + 0.15 * rng.standard_normal((SIDE, SIDE))
        r, c = (int(v) for v in rng.integers(0, SIDE - BOX + 1, 2))
        img[r:r + BOX, c:c + BOX] = i % 2  # the class is the box's content and nothing else
        images.append((np.clip(img, 0, 1) * 255).round().astype(np.uint8))
        labels.append(i % 2)
        corners.append((r, c))
    return images, labels, corners


@pytest.fixture(scope="module")
def trained() -> Source:
    return train_box_model()


def train_box_model() -> Source:
    torch.manual_seed(0)
    images, labels, _ = boxes(128, seed=1)
    x = (torch.tensor(np.stack(images), dtype=torch.float32)[:, None] / 255 - 0.5) / 0.25
    y = torch.tensor(labels)
    model = cnnzoo.create_model("resnet18", num_classes=2, in_chans=1)
    opt = torch.optim.AdamW(model.parameters(), 2e-3)
    model.train()
    for step in range(12):  # 1.5 passes over 128 images: the task is learned within the first pass
        idx = torch.arange(step * 16, step * 16 + 16) % len(x)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    meta = ModelMeta(model="resnet18", classes=["dark", "bright"], in_chans=1, input_size=SIDE, mean=[0.5],
                     std=[0.25], crop_pct=1.0)
    return Source("torch", meta, "trained-in-test", model.eval())


@pytest.mark.parametrize("method", ["gradcam", "occlusion"])
def test_heat_falls_inside_the_box(trained, method):
    images, labels, corners = boxes(12, seed=2)
    fractions = []
    for img, label, (r, c) in zip(images, labels, corners):
        e = explain(trained, Image.fromarray(img), method, patch=BOX)
        if e.predicted != trained.meta.classes[label]:
            continue
        assert method != "gradcam" or e.layer == "layer1"
        heat = e.heatmap
        assert heat.shape == (SIDE, SIDE) and float(heat.min()) >= 0 and float(heat.max()) == pytest.approx(1)
        fractions.append(float(heat[r:r + BOX, c:c + BOX].sum() / heat.sum()))
    assert len(fractions) >= 10, f"the model classified only {len(fractions)} of 12 test images; it did not learn"
    hits = sum(f >= THRESHOLD[method] * CHANCE for f in fractions)
    assert hits >= 0.75 * len(fractions), (method, [round(f, 2) for f in fractions])
