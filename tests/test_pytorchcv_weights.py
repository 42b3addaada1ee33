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
        assert 50 < row.top1 < row.top5 < 100


def test_the_table_is_pytorchcv_s_own():
    # Every row as pytorchcv's installed model_metainfos.csv and README state it: the error column is the README's
    # top-5 error (resnet50: 0633 and "22.28 |  6.33"), and the README's top-1 error is the table's top-1.
    import csv
    import importlib.metadata
    import importlib.resources

    table = importlib.resources.files("pytorchcv") / "models" / "common" / "model_metainfos.csv"
    rows = {r["model_name"]: r for r in csv.DictReader(table.read_text().splitlines())}
    readme = importlib.metadata.metadata("pytorchcv").get_payload()
    for w in TABLE.values():
        row = rows[w.cv_name]
        assert (row["error_value"], row["checksum"], row["repo_release_tag"]) == (f"{w.error:04d}", w.sha1, w.release)
        published = re.search(rf"\| ([\d.]+) \| +([\d.]+) \|[^\n]*/{re.escape(w.file)}\.log", readme)
        assert published, w.file
        assert (100 - float(published[1]), 100 - float(published[2])) == pytest.approx((w.top1, w.top5), abs=1e-9)


def test_layout_recognised_and_other_architectures_refused():
    import torchvision

    cv = cv_provider.get_model("mobilenet_wd4", pretrained=False).state_dict()
    assert looks_like_pytorchcv(cv)
    assert not looks_like_pytorchcv(torchvision.models.resnet18().state_dict())
    with pytest.raises(CnnzooError, match="another architecture"):
        convert("resnet50_v1", cv)


@pytest.mark.parametrize("name", ["zfnet_paper", "mobilenet_v1_025", "shufflenet_v1_g3_x0_5", "seresnet18",
                                  "preact_resnet18_gluon"])
def test_names_not_order_decide_where_a_tensor_goes(name):
    # One model per layout. A file whose keys come sorted (as safetensors stores them) converts to the same
    # tensors under the same names; a key no rule knows is named in the error.
    with torch.device("meta"):
        cv = cv_provider.get_model(TABLE[name].cv_name, pretrained=False).state_dict()
    assert pytorchcv.layout_of(name) in pytorchcv.LAYOUTS.values()
    as_saved, sorted_keys = convert(name, cv), convert(name, dict(sorted(cv.items())))
    assert as_saved.keys() == sorted_keys.keys()
    assert all(as_saved[k] is sorted_keys[k] for k in as_saved if not k.endswith("num_batches_tracked"))
    with pytest.raises(CnnzooError, match="features.stage9.unit1.extra.weight"):
        convert(name, {**cv, "features.stage9.unit1.extra.weight": torch.zeros(1)})


def test_models_without_weights_say_why():
    with pytest.raises(CnnzooError, match="lecture's reading"):
        create_model("zfnet", pretrained=True)
    assert set(pytorchcv.NO_WEIGHTS).isdisjoint(TABLE)
