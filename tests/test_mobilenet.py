"""MobileNet V1 (paper's Tables 1, 6, 7) and V2 (torchvision parity, Table 2, published complexity)."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnzoo.models import create_model
from parity import assert_parity, count_params


def mult_adds(name: str, size: int = 224, **kwargs) -> float:
    """Multiply-adds of one forward pass (convolutions and the classifier), counted on the meta device."""
    with torch.device("meta"):
        model = create_model(name, **kwargs).eval()
        x = torch.empty(1, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 2


def params_without_bn(model: nn.Module) -> int:
    return sum(
        p.numel() for m in model.modules() if not isinstance(m, nn.BatchNorm2d) for p in m.parameters(recurse=False)
    )


# ---------------------------------------------------------------- MobileNet V1

V1_NAMES = {1.0: "mobilenet_v1", 0.75: "mobilenet_v1_075", 0.5: "mobilenet_v1_050", 0.25: "mobilenet_v1_025"}

# Table 1, written out again independently of the model code: (type, stride, output channels).
TABLE_1 = [("conv", 2, 32)] + [
    ("dw_sep", s, c)
    for s, c in [(1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512)] + [(1, 512)] * 5 + [(2, 1024), (1, 1024)]
]  # the table prints "s2" for the last row, but its map stays 7x7: stride 1


def v1_params_from_table(alpha: float, num_classes: int = 1000) -> int:
    """Conv weights (k*k*cin*cout, depthwise k*k*c), 2 batch-norm parameters per channel, FC weights + bias."""
    total, cin = 0, 3
    for kind, _, c in TABLE_1:
        c = int(c * alpha)
        if kind == "conv":
            total += 3 * 3 * cin * c + 2 * c
        else:
            total += 3 * 3 * cin + 2 * cin + cin * c + 2 * c
        cin = c
    return total + cin * num_classes + num_classes


# Table 6 (224 pixels): width multiplier -> (million mult-adds, million parameters).
V1_TABLE_6 = {1.0: (569, 4.2), 0.75: (325, 2.6), 0.5: (149, 1.3), 0.25: (41, 0.5)}
# Table 7 (width 1.0): input side -> million mult-adds.
V1_TABLE_7 = {224: 569, 192: 418, 160: 290, 128: 186}
# pytorchcv (osmr/imgclsmob, pytorch/README.md) MobileNet x1.0 / x0.75 / x0.5 / x0.25; 4,231,976 is also timm's
# mobilenetv1_100 (4.23M in its results-imagenet.csv) and TF-slim's mobilenet_v1 (research/slim README).
V1_PYTORCHCV = {1.0: 4_231_976, 0.75: 2_585_560, 0.5: 1_331_592, 0.25: 470_072}


@pytest.mark.parametrize("alpha", sorted(V1_NAMES))
def test_v1_num_params(alpha):
    with torch.device("meta"):
        model = create_model(V1_NAMES[alpha])
    n = count_params(model)
    assert n == v1_params_from_table(alpha) == V1_PYTORCHCV[alpha]
    assert round(n / 1e6, 1) == V1_TABLE_6[alpha][1]


@pytest.mark.parametrize("alpha", sorted(V1_NAMES))
def test_v1_mult_adds_table_6(alpha):
    assert abs(mult_adds(V1_NAMES[alpha]) / 1e6 - V1_TABLE_6[alpha][0]) < 1


@pytest.mark.parametrize("size", sorted(V1_TABLE_7))
def test_v1_mult_adds_table_7(size):
    # The resolution multiplier is the input size: cost scales ~ rho^2, parameters do not change.
    assert abs(mult_adds("mobilenet_v1", size) / 1e6 - V1_TABLE_7[size]) < 1


def test_v1_layers():
    model = create_model("mobilenet_v1")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 2 * 13  # Table 1: 28 layers counting the FC
    depthwise = [m for m in convs if m.groups > 1]
    assert len(depthwise) == 13 and all(m.groups == m.in_channels == m.out_channels for m in depthwise)
    assert [m.stride[0] for m in depthwise] == [s for kind, s, _ in TABLE_1 if kind == "dw_sep"]
    assert [m.kernel_size for m in convs if m.groups == 1][1:] == [(1, 1)] * 13  # pointwise
    with torch.device("meta"):
        assert model.to("meta").forward_features(torch.empty(1, 3, 224, 224)).shape == (1, 1024, 7, 7)


# ---------------------------------------------------------------- MobileNet V2

V2_NAMES = {1.0: "mobilenet_v2", 0.5: "mobilenet_v2_050", 0.75: "mobilenet_v2_075", 1.4: "mobilenet_v2_140"}


@pytest.mark.parametrize("width", sorted(V2_NAMES))
def test_v2_parity_with_torchvision(width):
    reference = torchvision.models.mobilenet_v2(weights=None, width_mult=width)
    assert_parity(create_model(V2_NAMES[width]), reference, input_size=(3, 32, 32))


def test_v2_num_params():
    with torch.device("meta"):
        model = create_model("mobilenet_v2")
    assert count_params(model) == 3_504_872  # torchvision's MobileNet_V2_Weights meta["num_params"]
    assert torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["num_params"] == 3_504_872


def test_v2_mult_adds_paper():
    # Table 4: MobileNetV2 300M mult-adds; torchvision reports 0.301 GFLOPS (its "_ops", multiply-adds).
    ops = mult_adds("mobilenet_v2")
    assert abs(ops / 1e6 - 300) < 1
    assert round(ops / 1e9, 3) == torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["_ops"]


# The authors' released models (tensorflow/models research/slim/nets/mobilenet/README.md): width ->
# (million MACs, million parameters). TF-slim counts 1001 classes and no batch-norm parameters.
V2_TF_SLIM = {1.4: (582, 6.06), 1.0: (300, 3.47), 0.75: (209, 2.61), 0.5: (97, 1.95)}


@pytest.mark.parametrize("width", sorted(V2_TF_SLIM))
def test_v2_matches_released_models(width):
    macs, params = V2_TF_SLIM[width]
    assert abs(mult_adds(V2_NAMES[width]) / 1e6 - macs) < 1
    with torch.device("meta"):
        model = create_model(V2_NAMES[width], num_classes=1001)
    assert round(params_without_bn(model) / 1e6, 2) == params


def test_v2_table_2():
    """Stride 2 at the stem and at the first block of the 24, 32, 64 and 160 stages; residuals exactly where
    the stride is 1 and the width is unchanged; 7x7x1280 at 224 pixels; the 1280 only grows with width."""
    model = create_model("mobilenet_v2")
    blocks = list(model.features)[1:-1]
    assert len(blocks) == 1 + 2 + 3 + 4 + 3 + 3 + 1
    assert [b.use_res_connect for b in blocks] == [
        False, False, True, False, True, True, False, True, True, True, False, True, True, False, True, True, False
    ]
    with torch.device("meta"):
        assert model.to("meta").forward_features(torch.empty(1, 3, 224, 224)).shape == (1, 1280, 7, 7)
    assert create_model("mobilenet_v2_050").num_features == 1280
    assert create_model("mobilenet_v2_140").num_features == 1792
    assert not isinstance(blocks[5].conv[-1], (nn.ReLU, nn.ReLU6))  # linear bottleneck


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2"])
def test_one_pixel_input(name):
    model = create_model(name).train()
    assert model.card.min_input_size == 1
    model(torch.randn(2, 3, 1, 1)).sum().backward()  # two samples: batch norm needs more than one value
