"""VGG: torchvision parity for A, B, D, E (with and without batch norm), the paper's Table 1 and Table 2."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import cnnzoo
from parity import assert_parity, count_params

TORCHVISION_VGGS = ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]
TORCHVISION_CFG = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}  # torchvision.models.vgg's cfgs keys


def meta_model(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return cnnzoo.create_model(name, **kwargs)


def uninitialized(name: str) -> nn.Module:
    # Every weight is about to be overwritten by the reference's, so skip the (slow) initialization of ~130M.
    return meta_model(name).to_empty(device="cpu")


@pytest.fixture(scope="module")
def torchvision_vgg() -> nn.Module:
    return torchvision.models.vgg11(weights=None, init_weights=False)


@pytest.mark.parametrize("name", TORCHVISION_VGGS)
def test_matches_torchvision(name, torchvision_vgg):
    # One torchvision VGG with each builder's trunk swapped in: its 120M-parameter head is built once, not 8 times.
    reference = torchvision_vgg
    cfg = torchvision.models.vgg.cfgs[TORCHVISION_CFG[name.removesuffix("_bn")]]
    reference.features = torchvision.models.vgg.make_layers(cfg, batch_norm=name.endswith("_bn"))
    reference.zero_grad(set_to_none=True)
    # 32 pixels leave a 1x1 map that the 7x7 average pool copies; vgg11 at 64 also checks a real 2x2 -> 7x7 pool.
    side = 64 if name == "vgg11" else 32
    assert_parity(uninitialized(name), reference, input_size=(3, side, side))


def test_torchvision_builders_are_the_swapped_reference():
    # What the shared reference above stands for: each torchvision builder's trunk is that cfgs column.
    for name in TORCHVISION_VGGS:
        with torch.device("meta"):
            built = getattr(torchvision.models, name)(weights=None, init_weights=False)
            cfg = torchvision.models.vgg.cfgs[TORCHVISION_CFG[name.removesuffix("_bn")]]
            made = torchvision.models.vgg.make_layers(cfg, batch_norm=name.endswith("_bn"))
        assert str(built.features) == str(made), name


@pytest.mark.parametrize(
    "name, num_params",
    [  # torchvision VGG*_Weights.IMAGENET1K_V1 meta["num_params"]
        ("vgg11", 132_863_336),
        ("vgg11_bn", 132_868_840),
        ("vgg13", 133_047_848),
        ("vgg13_bn", 133_053_736),
        ("vgg16", 138_357_544),
        ("vgg16_bn", 138_365_992),
        ("vgg19", 143_667_240),
        ("vgg19_bn", 143_678_248),
    ],
)
def test_param_count_is_torchvisions(name, num_params):
    assert count_params(meta_model(name)) == num_params
    assert torchvision.models.get_model_weights(name).IMAGENET1K_V1.meta["num_params"] == num_params


# Table 1 written out stage by stage as (kernel, width) per conv, independently of the model's CFGS.
def _column(*stages: list[int]) -> list[tuple[int, int]]:
    widths = [64, 128, 256, 512, 512]
    return [(k, w) for w, kernels in zip(widths, stages) for k in kernels]


TABLE_1 = {
    "vgg11": _column([3], [3], [3, 3], [3, 3], [3, 3]),  # A
    "vgg11_lrn": _column([3], [3], [3, 3], [3, 3], [3, 3]),  # A-LRN (LRN has no weights)
    "vgg13": _column([3, 3], [3, 3], [3, 3], [3, 3], [3, 3]),  # B
    "vgg16_c": _column([3, 3], [3, 3], [3, 3, 1], [3, 3, 1], [3, 3, 1]),  # C: conv1-256, conv1-512 x2
    "vgg16": _column([3, 3], [3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]),  # D
    "vgg19": _column([3, 3], [3, 3], [3, 3, 3, 3], [3, 3, 3, 3], [3, 3, 3, 3]),  # E
}
WEIGHT_LAYERS = {"vgg11": 11, "vgg11_lrn": 11, "vgg13": 13, "vgg16_c": 16, "vgg16": 16, "vgg19": 19}
TABLE_2_MILLIONS = {"vgg11": 133, "vgg11_lrn": 133, "vgg13": 133, "vgg16_c": 134, "vgg16": 138, "vgg19": 144}


def table_1_params(column: list[tuple[int, int]]) -> int:
    convs, cin = 0, 3
    for k, w in column:
        convs, cin = convs + k * k * cin * w + w, w
    fcs = (512 * 7 * 7 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    return convs + fcs


@pytest.mark.parametrize("name", TABLE_1)
def test_table_1_and_table_2(name):
    model = meta_model(name)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size[0], c.out_channels) for c in convs] == TABLE_1[name]
    assert all(c.stride == (1, 1) and c.padding == (c.kernel_size[0] // 2,) * 2 for c in convs)
    assert len(convs) + 3 == WEIGHT_LAYERS[name]  # Table 1's header counts the three FC layers
    n = count_params(model)
    assert n == table_1_params(TABLE_1[name])
    assert round(n / 1e6) == TABLE_2_MILLIONS[name]


def test_vgg16_c_exact_count():
    # B plus one conv1-256 and two conv1-512 (weights and biases), from Table 1 by hand.
    assert count_params(meta_model("vgg16_c")) == 133_047_848 + (256 * 256 + 256) + 2 * (512 * 512 + 512)
    assert count_params(meta_model("vgg16_c")) == 133_638_952


def test_a_lrn_has_alexnets_lrn_after_the_first_relu():
    model = meta_model("vgg11_lrn")
    kinds = [type(m).__name__ for m in model.features[:4]]
    assert kinds == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d"]
    lrn = model.features[2]
    # torch divides alpha by the window size; the paper's (Krizhevsky's) alpha is 1e-4 without that division.
    assert (lrn.size, lrn.alpha / lrn.size, lrn.beta, lrn.k) == (5, pytest.approx(1e-4), 0.75, 2.0)
    # The rest of the trunk is column A's, module for module after the LRN.
    a = [type(m).__name__ for m in meta_model("vgg11").features]
    assert kinds[:2] + [type(m).__name__ for m in model.features[3:]] == a


def test_no_batch_norm_outside_the_bn_variants():
    for name in cnnzoo.list_models("vgg*"):
        has_bn = any(isinstance(m, nn.BatchNorm2d) for m in meta_model(name).modules())
        assert has_bn == name.endswith("_bn"), name
    assert "vgg11_lrn_bn" not in cnnzoo.list_models() and "vgg16_c_bn" not in cnnzoo.list_models()


@pytest.mark.parametrize("name", ["vgg11", "vgg16_c", "vgg19_bn"])
def test_min_input_size_is_32(name):
    card = cnnzoo.get_card(name)
    assert card.min_input_size == 32 and card.input_size == 224
    model = meta_model(name)
    for mode in (model.eval, model.train):
        mode()
        assert model(torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 1000)
        with pytest.raises(RuntimeError):  # 31 -> 15 -> 7 -> 3 -> 1 -> 0 after the fifth pool
            model(torch.empty(2, 3, 31, 31, device="meta"))


def test_default_input_reaches_the_head_at_7x7():
    assert meta_model("vgg16").forward_features(torch.empty(1, 3, 224, 224, device="meta")).shape == (1, 512, 7, 7)


def test_init_is_torchvisions():
    # Kaiming-normal (fan_out) convolutions and N(0, 0.01) linear layers, zero biases, as torchvision.
    model = cnnzoo.create_model("vgg11", num_classes=10)
    conv = model.features[-3]  # 512 -> 512, 3x3: fan_out 4608, std sqrt(2 / 4608)
    assert conv.weight.std().item() == pytest.approx((2 / (512 * 9)) ** 0.5, rel=0.02)
    assert model.classifier[3].weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert all(not m.bias.any() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
