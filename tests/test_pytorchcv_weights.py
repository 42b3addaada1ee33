"""pytorchcv's published weights, converted: for every row of the table, pytorchcv's own module with random weights
and random batch-norm statistics, saved as pytorchcv saves it (a plain state_dict), loaded by cnnzoo through
`create_model(name, pretrained=PATH)`, computes the same logits. Random statistics make a misplaced tensor show."""
from __future__ import annotations

import re

import pytest
import torch

from cnnzoo import CnnzooError, create_model, get_card
from cnnzoo.pretrained import pytorchcv
from cnnzoo.pretrained.pytorchcv import TABLE, convert, looks_like_pytorchcv

cv_provider = pytest.importorskip("pytorchcv.model_provider", reason="pytorchcv is a test extra")


def randomised(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.is_floating_point():
                fresh = torch.rand(t.shape, generator=g) + 0.5 if name.endswith("running_var") else \
                    torch.randn(t.shape, generator=g) * (0.1 if t.ndim > 1 else 0.5)
                t.copy_(fresh)
    return module.eval()


@pytest.mark.parametrize("name", sorted(TABLE))
def test_pytorchcv_file_loads_and_computes_the_same(name, tmp_path):
    row = TABLE[name]
    theirs = randomised(cv_provider.get_model(row.cv_name, pretrained=False), seed=len(name))
    path = tmp_path / row.file
    torch.save(theirs.state_dict(), path)  # pytorchcv's files are exactly this
    ours = create_model(name, pretrained=str(path)).eval()
    size = get_card(name).input_size  # pytorchcv's networks end in a fixed 7x7 pool: 224 only
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, got = theirs(x), ours(x)
    assert (got - want).abs().max() <= 1e-5 * want.abs().max().clamp(min=1)


def test_the_table_follows_pytorchcv_file_names():
    for row in TABLE.values():
        assert re.fullmatch(rf"{re.escape(row.cv_name)}-\d{{4}}-{row.sha1[:8]}\.pth", row.file)
        assert row.url.endswith(f"/{row.release}/{row.file}.zip") and len(row.sha1) == 40
        assert 70 < row.top5 < 100


def test_layout_recognised_and_other_architectures_refused():
    import torchvision

    cv = cv_provider.get_model("mobilenet_wd4", pretrained=False).state_dict()
    assert looks_like_pytorchcv(cv)
    assert not looks_like_pytorchcv(torchvision.models.resnet18().state_dict())
    with pytest.raises(CnnzooError, match="another architecture"):
        convert("resnet50_v1", cv)


def test_models_without_weights_say_why():
    with pytest.raises(CnnzooError, match="lecture's reading"):
        create_model("zfnet", pretrained=True)
    assert set(pytorchcv.NO_WEIGHTS).isdisjoint(TABLE)
