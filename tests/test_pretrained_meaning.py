"""What published weights mean: the preprocessing a set records is the one that makes cnnzoo's network compute
what the publisher's computed, and docs/weights.md is the current table."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
import torchvision

from cnnzoo import create_model
from cnnzoo.pretrained import tables

ROOT = Path(__file__).resolve().parent.parent


def test_googlenet_weights_record_the_caffe_normalisation(tmp_path):
    """torchvision's googlenet re-normalises inside the model (transform_input); cnnzoo's does not, so the recorded
    mean/std must turn an image into what torchvision's network sees after its own step."""
    torch.manual_seed(0)
    tv = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False, transform_input=True).eval()
    torch.save(tv.state_dict(), tmp_path / "googlenet.pth")
    ours = create_model("googlenet", pretrained=str(tmp_path / "googlenet.pth")).eval()
    p = tables.default("googlenet")
    image = torch.rand(2, 3, 64, 64)

    def norm(mean, std):
        return (image - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)

    with torch.no_grad():
        want = tv(norm(tables.MEAN, tables.STD))
        got = ours(norm(p.mean, p.std))
    # random weights give small logits: compare relative to their scale (ImageNet's mean/std are off by ~1e-4 of it)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6 * float(want.abs().max()))
    assert tables.default("resnet18").mean == tables.MEAN  # the others keep torchvision's own


def test_weights_doc_is_current():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_weights_doc.py"), "--check"])
    assert result.returncode == 0, "docs/weights.md is out of date: run scripts/make_weights_doc.py"
