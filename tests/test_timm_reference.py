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
