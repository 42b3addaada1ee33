"""AlexNet (torchvision's and the 2012 paper's) and the lecture's ZFNet: parity, parameter counts, map sizes."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import cnnzoo
from cnnzoo.models.alexnet import CFGS, local_response_norm, make_features
from parity import assert_parity, count_params


def meta_model(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return cnnzoo.create_model(name, **kwargs)


def layer_params(layers: list[tuple[int, int, int]]) -> int:
    """Weights and biases of (kernel, input depth per filter, filters) convs and FCs: k*k*depth*n + n."""
    return sum(k * k * depth * n + n for k, depth, n in layers)


def fc_layers(flat: int, classes: int = 1000) -> list[tuple[int, int, int]]:
    return [(1, flat, 4096), (1, 4096, 4096), (1, 4096, classes)]


def test_alexnet_matches_torchvision():
    # 64 pixels: just above the 63 that torchvision documents as AlexNet's minimum.
    assert_parity(cnnzoo.create_model("alexnet"), torchvision.models.alexnet(weights=None), input_size=(3, 64, 64))


def test_alexnet_param_count():
    # torchvision AlexNet_Weights.IMAGENET1K_V1 meta["num_params"].
    assert count_params(meta_model("alexnet")) == 61_100_840
    assert count_params(meta_model("alexnet")) == torchvision.models.get_weight(
        "AlexNet_Weights.IMAGENET1K_V1"
    ).meta["num_params"]


def test_alexnet_2012_param_count_from_paper():
    # Section 3.5 of the paper, kernels as it lists them: each tower's kernels see only its half of the maps
    # below (depth 48 in conv2, 192 in conv4 and conv5); conv3 and the FC layers see both towers.
    paper = [
        (11, 3, 96),  # conv1: 96 kernels of 11x11x3
        (5, 48, 256),  # conv2: 256 kernels of 5x5x48
        (3, 256, 384),  # conv3: 384 kernels of 3x3x256
        (3, 192, 384),  # conv4: 384 kernels of 3x3x192
        (3, 192, 256),  # conv5: 256 kernels of 3x3x192
    ] + fc_layers(256 * 6 * 6)
    expected = layer_params(paper)
    assert expected == 60_965_224  # the paper's "60 million parameters"
    assert count_params(meta_model("alexnet_2012")) == expected
    # pytorchcv's `alexnet` (96-256-384-384-256 + LRN) has 62,378,344: the same layers without the towers,
    # i.e. conv2, conv4 and conv5 seeing all of their input maps, which doubles exactly their weights.
    halved = 256 * 48 * 5 * 5 + 384 * 192 * 3 * 3 + 256 * 192 * 3 * 3
    assert expected + halved == 62_378_344


def test_alexnet_2012_layers_are_the_papers():
    model = cnnzoo.create_model("alexnet_2012")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [tuple(c.weight.shape) for c in convs] == [
        (96, 3, 11, 11), (256, 48, 5, 5), (384, 256, 3, 3), (384, 192, 3, 3), (256, 192, 3, 3)
    ]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    # conv -> ReLU -> LRN -> pool in the first two layers (section 3.3: LRN after the ReLU; 3.4: pools after LRN).
    kinds = [type(m).__name__ for m in model.features]
    assert kinds[:8] == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d"] * 2
    assert kinds.count("LocalResponseNorm") == 2 and kinds.count("MaxPool2d") == 3
    # Dropout on the outputs of fc6 and fc7, as in the paper and Caffe.
    assert [type(m).__name__ for m in model.classifier] == [
        "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"
    ]
    # Section 5: N(0, 0.01) weights; biases 1 in conv2, conv4, conv5 and the hidden FC layers, else 0.
    layers = convs + [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [m.bias.unique().tolist() for m in layers] == [[0.0], [1.0], [0.0], [1.0], [1.0], [1.0], [1.0], [0.0]]
    assert layers[5].weight.std().item() == pytest.approx(0.01, rel=0.01)


def test_alexnet_2012_towers_do_not_mix_in_conv2():
    # The first tower's conv2 maps (0-127) read only the first 48 of conv1's maps (the first GPU's).
    conv2 = make_features(CFGS["alexnet_2012"], in_chans=3)[4]
    x = torch.randn(1, 96, 9, 9)
    y = x.clone()
    y[:, 48:] += 1.0
    out_x, out_y = conv2(x), conv2(y)
    assert torch.equal(out_x[:, :128], out_y[:, :128])
    assert not torch.allclose(out_x[:, 128:], out_y[:, 128:])


def test_lrn_is_the_papers_formula():
    # b_i = a_i / (k + alpha * sum_{j=i-2..i+2} a_j^2)^beta with k=2, alpha=1e-4, beta=0.75 (section 3.3).
    a = torch.randn(2, 11, 3, 3, generator=torch.Generator().manual_seed(0)) * 30  # large, so alpha matters
    sq = nn.functional.pad(a.pow(2), (0, 0, 0, 0, 2, 2))
    window = sum(sq[:, j : j + 11] for j in range(5))
    expected = a / (2 + 1e-4 * window).pow(0.75)
    torch.testing.assert_close(local_response_norm()(a), expected, rtol=1e-6, atol=1e-6)


def test_zfnet_param_count_from_the_lecture():
    # The lecture's AlexNet table (3-64-192-384-256-256) with its ZFNet changes: conv1 7x7, conv3-5 512-1024-512.
    lecture = [(7, 3, 64), (5, 64, 192), (3, 192, 512), (3, 512, 1024), (3, 1024, 512)]
    expected = layer_params(lecture + fc_layers(512 * 6 * 6))
    assert expected == 107_020_712
    assert count_params(meta_model("zfnet")) == expected
    # pytorchcv's zfnetb (ZF paper layout, 96-256 in conv1-conv2, 512-1024-512) has 107,627,624: the difference
    # is conv1's 32 and conv2's 64 extra filters, and conv3 reading 256 maps instead of 192.
    extra = (96 - 64) * (7 * 7 * 3 + 1) + (256 * 96 - 192 * 64) * 5 * 5 + (256 - 192) + (256 - 192) * 512 * 3 * 3
    assert expected + extra == 107_627_624


@pytest.mark.parametrize(
    "name, side, conv1, pool5",
    [
        ("alexnet", 227, 56, 6),  # the lecture's table: 227 -> 56 -> ... -> 6
        ("alexnet", 224, 55, 6),
        ("alexnet_2012", 227, 55, 6),  # the paper's 55x55 conv1 maps
        ("zfnet", 224, 110, 12),  # the ZF paper's 110x110 conv1 maps; conv2 at stride 1 leaves 12x12 at pool5
    ],
)
def test_map_sizes(name, side, conv1, pool5):
    model = meta_model(name)
    x = torch.empty(1, 3, side, side, device="meta")
    assert model.features[0](x).shape[-1] == conv1
    assert model.forward_features(x).shape[-2:] == (pool5, pool5)


@pytest.mark.parametrize("name, minimum", [("alexnet", 63), ("alexnet_2012", 67), ("zfnet", 33)])
def test_min_input_size(name, minimum):
    assert cnnzoo.get_card(name).min_input_size == minimum
    model = meta_model(name)
    for mode in (model.eval, model.train):
        mode()
        assert model(torch.empty(2, 3, minimum, minimum, device="meta")).shape == (2, 1000)
        with pytest.raises(RuntimeError):
            model(torch.empty(2, 3, minimum - 1, minimum - 1, device="meta"))
