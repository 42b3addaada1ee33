"""timm as the reference for the networks torchvision does not ship (issue 4: SE-ResNet, MobileNet V1)."""
import pytest
import torch

import cnnzoo
from parity import assert_parity, count_params

timm = pytest.importorskip("timm", reason="timm is a test extra: pip install -e '.[test]'")


@pytest.mark.parametrize(
    "ours, theirs",
    [
        # The SE paper's layout (C/16 squeeze, stride on the first 1x1) is timm's port of the authors' Caffe models.
        ("seresnet18", "legacy_seresnet18"),
        ("seresnet34", "legacy_seresnet34"),
        ("seresnet50", "legacy_seresnet50"),
        ("seresnet101", "legacy_seresnet101"),
        ("seresnet152", "legacy_seresnet152"),
        ("seresnext50_32x4d", "seresnext50_32x4d"),
        ("mobilenet_v1", "mobilenetv1_100"),
    ],
)
def test_parameter_counts_equal_timm(ours, theirs):
    with torch.device("meta"):
        assert count_params(cnnzoo.create_model(ours)) == count_params(timm.create_model(theirs, pretrained=False))


@pytest.mark.parametrize("name", ["seresnext50_32x4d"])
def test_se_resnets_load_timm_weights_and_compute_the_same(name):
    # Same module names as timm (se.fc1/se.fc2 on the residual branch), so timm's checkpoints load unchanged.
    # The SE-ResNets follow the paper's layout instead: tests/test_pytorchcv_weights.py holds them to its weights.
    assert_parity(cnnzoo.create_model(name), timm.create_model(name, pretrained=False), input_size=(3, 64, 64))


@pytest.mark.parametrize("name", ["seresnet50", "seresnext50_32x4d"])
def test_se_resnets_compute_the_authors_network_but_for_the_stem_pool(name):
    # timm's legacy_seresnet50 and legacy_seresnext50_32x4d port the SE authors' Caffe models: other names, listed
    # in the same order. Its stem max-pool keeps Caffe's rounding (unpadded, ceil), where ours pads by 1 as
    # torchvision and the published pytorchcv weights do: the same 56x56 map, windows shifted by a pixel.
    # With that one pool swapped the two networks compute the same logits; without it they do not.
    # (The authors released no SE-ResNet-18/34; timm's legacy_seresnet18/34 add a ReLU before the gate.)
    from torch import nn

    from parity import max_rel_diff, randomize_batchnorm

    ours, theirs = cnnzoo.create_model(name).eval(), timm.create_model(f"legacy_{name}", pretrained=False).eval()
    randomize_batchnorm(theirs)
    mine = [k for k in ours.state_dict() if not k.endswith("num_batches_tracked")]
    tensors = [v for k, v in theirs.state_dict().items() if not k.endswith("num_batches_tracked")]
    assert [tuple(ours.state_dict()[k].shape) for k in mine] == [tuple(v.shape) for v in tensors]
    ours.load_state_dict(dict(zip(mine, tensors)), strict=False)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        caffe_pool = max_rel_diff(ours(x), theirs(x))
        theirs.pool0 = nn.MaxPool2d(3, stride=2, padding=1)
        padded_pool = max_rel_diff(ours(x), theirs(x))
    assert padded_pool <= 1e-5 < caffe_pool
