"""ResNet, ResNeXt, Wide ResNet and SE-ResNet: torchvision parity, published parameter counts, the paper's FLOPs,
v1 vs v1.5, and what the squeeze-and-excitation gate does."""
from __future__ import annotations

import math

import pytest
import torch
import torchvision
from parity import assert_parity, count_params
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import cnnzoo
from cnnzoo.models.resnet import ResNet, SqueezeExcite

# torchvision's published `num_params` (weights meta, IMAGENET1K_V1), written out so a change on either side shows.
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "resnext101_64x4d": 83_455_272,
    "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696,
}
# torchvision's `_ops` (GFLOPS in its docs, in fact conv+matmul multiply-adds at 224) for the same weights.
TORCHVISION_GMACS = {
    "resnet18": 1.814, "resnet34": 3.664, "resnet50": 4.089, "resnet101": 7.801, "resnet152": 11.514,
    "resnext50_32x4d": 4.23, "resnext101_32x8d": 16.414, "resnext101_64x4d": 15.46,
    "wide_resnet50_2": 11.398, "wide_resnet101_2": 22.753,
}
_WEIGHTS = {
    "resnet18": "ResNet18", "resnet34": "ResNet34", "resnet50": "ResNet50", "resnet101": "ResNet101",
    "resnet152": "ResNet152", "resnext50_32x4d": "ResNeXt50_32X4D", "resnext101_32x8d": "ResNeXt101_32X8D",
    "resnext101_64x4d": "ResNeXt101_64X4D", "wide_resnet50_2": "Wide_ResNet50_2",
    "wide_resnet101_2": "Wide_ResNet101_2",
}

# He et al., Table 1, written independently of the model code: blocks per stage and the output width of a block.
TABLE1 = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def meta_model(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return cnnzoo.create_model(name, **kwargs)


def gmacs_at_224(model: nn.Module) -> float:
    """Multiply-adds of the convolutions and the linear layer for one 224x224 image, on the meta device."""
    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.empty(1, 3, 224, 224, device="meta"))
    return counter.get_total_flops() / 2 / 1e9  # the counter reports 2 FLOPs per multiply-add


# ---- torchvision's models ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TORCHVISION_PARAMS))
def test_param_count_equals_torchvision(name):
    meta = torchvision.models.get_weight(f"{_WEIGHTS[name]}_Weights.IMAGENET1K_V1").meta  # packaged: no download
    assert meta["num_params"] == TORCHVISION_PARAMS[name]
    assert count_params(meta_model(name)) == TORCHVISION_PARAMS[name]
    assert round(gmacs_at_224(meta_model(name)), 3) == TORCHVISION_GMACS[name] == meta["_ops"]


@pytest.mark.parametrize("name", list(TORCHVISION_PARAMS))
def test_parity_with_torchvision(name):
    reference = getattr(torchvision.models, name)(weights=None)
    ours = meta_model(name).to_empty(device="cpu")  # skip our own init: every tensor comes from the reference
    assert list(ours.state_dict()) == list(reference.state_dict())  # same names, in the same order
    assert_parity(ours, reference, input_size=(3, 32, 32), batch=2)


# ---- the paper's v1 (stride on the first 1x1) against torchvision's v1.5 (stride on the 3x3) -----------------


def strided(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_v1_moves_only_the_stride(depth):
    v15, v1 = meta_model(f"resnet{depth}"), meta_model(f"resnet{depth}_v1")
    shapes = {k: v.shape for k, v in v15.state_dict().items()}
    assert {k: v.shape for k, v in v1.state_dict().items()} == shapes
    # The stem, then per stage 2..4 the first block's main path and its projection shortcut.
    stages = ("layer2.0", "layer3.0", "layer4.0")
    assert strided(v15) == ["conv1"] + [f"{s}.{c}" for s in stages for c in ("conv2", "downsample.0")]
    assert strided(v1) == ["conv1"] + [f"{s}.{c}" for s in stages for c in ("conv1", "downsample.0")]


def test_v1_and_v15_compute_different_functions_from_the_same_weights():
    reference = torchvision.models.resnet50(weights=None).eval()
    v1 = meta_model("resnet50_v1").to_empty(device="cpu").eval()
    v1.load_state_dict(reference.state_dict(), strict=True)  # torchvision's weights load unchanged
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = v1(x), reference(x)
    assert a.shape == b.shape and not torch.allclose(a, b, rtol=1e-3, atol=1e-3)


def test_basic_blocks_have_no_v1_variant():
    # A basic block has no 1x1 in its main path, so v1 and v1.5 are the same network.
    assert not cnnzoo.list_models("resnet18_v1") and not cnnzoo.list_models("resnet34_v1")
    for name in ("resnet18", "resnet34"):
        assert any("coincide for basic blocks" in d for d in cnnzoo.get_card(name).deviations)
        assert strided(meta_model(name))[1:4] == ["layer2.0.conv1", "layer2.0.downsample.0", "layer3.0.conv1"]


# ---- the papers' complexity tables -------------------------------------------------------------------------


@pytest.mark.parametrize("name, gflops", [
    ("resnet18", 1.8), ("resnet34", 3.6), ("resnet50_v1", 3.8), ("resnet101_v1", 7.6), ("resnet152_v1", 11.3)])
def test_flops_match_resnet_paper_table1(name, gflops):
    # He et al., Table 1, "FLOPs" = multiply-adds at 224. We count 1.814, 3.664, 3.858, 7.570, 11.282: the table
    # truncates the first three (3.664 -> 3.6, 3.858 -> 3.8; the SE paper prints ResNet-50 as 3.86) and rounds
    # the last two (7.570 -> 7.6), so each printed figure is our count truncated or rounded to one decimal.
    g = gmacs_at_224(meta_model(name))
    assert gflops in (math.floor(g * 10) / 10, round(g, 1)), g


def test_v15_costs_more_than_v1():
    # Striding the 3x3 instead of the 1x1 runs each stage's first 1x1 at 4x the positions: 4.089 vs 3.858.
    assert round(gmacs_at_224(meta_model("resnet50")), 2) == 4.09
    assert round(gmacs_at_224(meta_model("resnet50_v1")), 2) == 3.86


def test_resnext_paper_table1():
    # Xie et al., Table 1: ResNeXt-50 (32x4d) has 25.0 x 10^6 parameters and 4.2 x 10^9 FLOPs (multiply-adds).
    model = meta_model("resnext50_32x4d")
    assert round(count_params(model) / 1e6, 1) == 25.0
    assert round(gmacs_at_224(model), 1) == 4.2
    conv2 = model.layer1[0].conv2  # conv2 stage: 128 channels of the 3x3 in C = 32 groups
    assert (conv2.in_channels, conv2.out_channels, conv2.groups) == (128, 128, 32)
    wide = meta_model("wide_resnet50_2").layer4[0]  # Wide ResNet-50-2: 2x the inner width, same 2048 output
    assert (wide.conv2.out_channels, wide.conv3.out_channels) == (1024, 2048)


# ---- squeeze-and-excitation ----------------------------------------------------------------------------------


def paper_se_width(channels: int) -> int:
    """The SE paper's C/r with r = 16 (its released models, and pytorchcv's, agree; timm rounds up to 8s)."""
    return channels // 16


def se_params(depth: int) -> int:
    """Parameters all SE modules add: per block two 1x1 convs with bias, C -> C/16 -> C (C = block output)."""
    expansion = 1 if depth < 50 else 4
    total = 0
    for blocks, width in zip(TABLE1[depth], (64, 128, 256, 512)):
        c = width * expansion
        r = paper_se_width(c)
        total += blocks * (c * r + r + r * c + c)
    return total


@pytest.mark.parametrize("name, base, depth", [
    ("seresnet18", "resnet18", 18), ("seresnet34", "resnet34", 34), ("seresnet50", "resnet50", 50),
    ("seresnet101", "resnet101", 101), ("seresnet152", "resnet152", 152),
    ("seresnext50_32x4d", "resnext50_32x4d", 50)])
def test_se_param_counts(name, base, depth):
    assert count_params(meta_model(name)) == TORCHVISION_PARAMS[base] + se_params(depth)


def test_se_counts_equal_timm():
    # timm's seresnet50 (and legacy_seresnet50, the authors' layout): 28,088,024 parameters. Its SE is
    # timm/layers/squeeze_excite.py SEModule (1x1 convs with bias, after bn3, before the sum, in
    # timm/models/resnet.py Bottleneck). The SE paper: "~2.5 million additional parameters" over ResNet-50.
    n = count_params(meta_model("seresnet50"))
    assert n == 28_088_024
    assert round((n - TORCHVISION_PARAMS["resnet50"]) / 1e6, 1) == 2.5
    # timm's model card for seresnext50_32x4d.racm_in1k: Params (M) 27.6.
    assert round(count_params(meta_model("seresnext50_32x4d")) / 1e6, 1) == 27.6


def test_se_widths_follow_the_paper():
    r18, r50 = meta_model("seresnet18"), meta_model("seresnet50")
    assert [r18.get_submodule(f"layer{i}.0.se.fc1").out_channels for i in (1, 2, 3, 4)] == [4, 8, 16, 32]
    assert [r50.get_submodule(f"layer{i}.0.se.fc1").out_channels for i in (1, 2, 3, 4)] == [16, 32, 64, 128]


def test_se_adds_almost_no_computation():
    # The gate runs on 1x1 pooled maps: per block 2*C*C/16 multiply-adds, nothing per pixel. The SE paper
    # reports +0.26% for SE-ResNet-50 (3.87 vs 3.86 GFLOPs, counting the pooling and scaling as well).
    # SE-ResNet-50 strides its bottlenecks' first 1x1, as the paper's ResNet-50 (v1) does.
    plain, se = gmacs_at_224(meta_model("resnet50_v1")), gmacs_at_224(meta_model("seresnet50"))
    fc_macs = sum(b * 2 * (w * 4) * paper_se_width(w * 4) for b, w in zip(TABLE1[50], (64, 128, 256, 512)))
    assert se - plain == pytest.approx(fc_macs / 1e9, abs=1e-9)
    assert 0 < (se - plain) / plain < 0.0026


def test_se_module_formula():
    se = SqueezeExcite(32, reduction=16).eval()
    nn.init.normal_(se.fc2.bias)
    u = torch.randn(2, 32, 5, 5)
    z = u.mean((2, 3))  # squeeze
    w1, b1 = se.fc1.weight.flatten(1), se.fc1.bias
    w2, b2 = se.fc2.weight.flatten(1), se.fc2.bias
    s = torch.sigmoid(torch.relu(z @ w1.T + b1) @ w2.T + b2)  # excite
    torch.testing.assert_close(se(u), u * s[:, :, None, None])


def test_se_gates_the_residual_branch_before_the_sum():
    # With W2 = 0 and b2 = 0 every gate is sigmoid(0) = 1/2, so an SE block is relu(F(x)/2 + shortcut(x)):
    # the torchvision block with its last BN's scale and shift halved. Gating after the sum would differ.
    reference = torchvision.models.resnet18(weights=None)
    ours = meta_model("seresnet18").to_empty(device="cpu")
    missing = ours.load_state_dict(reference.state_dict(), strict=False).missing_keys
    assert missing and all(".se.fc" in k for k in missing)
    assert len(missing) == 4 * sum(TABLE1[18])  # fc1, fc2 weight and bias in every block
    with torch.no_grad():
        for name, m in ours.named_modules():
            if isinstance(m, SqueezeExcite):
                nn.init.normal_(m.fc1.weight), nn.init.zeros_(m.fc1.bias)
                nn.init.zeros_(m.fc2.weight), nn.init.zeros_(m.fc2.bias)
                bn2 = reference.get_submodule(name.rsplit(".", 1)[0]).bn2
                bn2.weight /= 2
                bn2.bias /= 2
    x = torch.randn(2, 3, 64, 64)
    ours.eval(), reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)


# ---- construction options ------------------------------------------------------------------------------------


def test_zero_init_residual_starts_every_block_as_identity():
    model = cnnzoo.create_model("resnet50", zero_init_residual=True).eval()
    assert all(not b.bn3.weight.any() for layer in (model.layer1, model.layer4) for b in layer)
    x = torch.relu(torch.randn(1, 256, 8, 8))  # a block's input is a ReLU output
    with torch.no_grad():
        torch.testing.assert_close(model.layer1[1](x), x)
    assert cnnzoo.create_model("resnet18", zero_init_residual=False).layer1[0].bn2.weight.all()


def test_basic_block_has_no_grouped_form():
    with pytest.raises(ValueError, match="BasicBlock"):
        ResNet("basic", (2, 2, 2, 2), groups=32, width_per_group=4)
