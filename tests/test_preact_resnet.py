"""Pre-activation ResNet: parameter counts from three sources, the identity-unit property, strides, a training step."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnzoo.models import create_model, get_card
from cnnzoo.models.preact_resnet import PreActBasicBlock, PreActBottleneck
from parity import count_params, randomize_batchnorm

NAMES = ["preact_resnet18", "preact_resnet34", "preact_resnet50", "preact_resnet101", "preact_resnet152",
         "preact_resnet200"]

# (block, units per stage) from the ResNet paper's Table 1, and [3, 24, 36, 3] for the pre-activation paper's
# ResNet-200, written here independently of the model file.
STAGES = {
    "preact_resnet18": ("basic", [2, 2, 2, 2]),
    "preact_resnet34": ("basic", [3, 4, 6, 3]),
    "preact_resnet50": ("bottleneck", [3, 4, 6, 3]),
    "preact_resnet101": ("bottleneck", [3, 4, 23, 3]),
    "preact_resnet152": ("bottleneck", [3, 8, 36, 3]),
    "preact_resnet200": ("bottleneck", [3, 24, 36, 3]),
}


def formula_params(block: str, layers: list[int], num_classes: int = 1000) -> int:
    """Weights of the stem, each unit (pre-activation BN, convs, inner BNs, projection), the last BN, the fc."""
    total = 3 * 64 * 7 * 7 + 2 * 64  # conv1 (no bias) + its BN (gamma, beta)
    cin = 64
    for stage, depth in enumerate(layers):
        w = 64 * 2**stage
        cout = w if block == "basic" else 4 * w
        for unit in range(depth):
            if (stage, unit) != (0, 0):
                total += 2 * cin  # the unit's own BN; the first unit reuses the stem's
            if block == "basic":
                total += 9 * cin * w + 2 * w + 9 * w * w
            else:
                total += cin * w + 2 * w + 9 * w * w + 2 * w + w * cout
            if cin != cout or (stage > 0 and unit == 0):
                total += cin * cout  # 1x1 projection, no bias, no BN
            cin = cout
    return total + 2 * cin + cin * num_classes + num_classes


def meta_model(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kwargs)


# The counts, as measured; each test below derives them a different way.
PARAMS = {
    "preact_resnet18": 11_687_720,
    "preact_resnet34": 21_795_880,
    "preact_resnet50": 25_549_352,
    "preact_resnet101": 44_541_480,
    "preact_resnet152": 60_185_128,
    "preact_resnet200": 64_666_152,
}


@pytest.mark.parametrize("name", NAMES)
def test_param_count_matches_block_formulas(name):
    assert formula_params(*STAGES[name]) == PARAMS[name]
    assert count_params(meta_model(name)) == PARAMS[name]
    assert count_params(meta_model(name, num_classes=10)) == formula_params(*STAGES[name], num_classes=10)


# torchvision's published num_params (ResNet*_Weights.IMAGENET1K_V1.meta, /work/shared/research/zoo-anchors.md).
# Moving each BN in front of its conv turns a unit's last BN (width = its output) into the next unit's first
# (width = its input): over the network that telescopes to "minus the last stage's width", which the final
# BN-ReLU puts back, and the stem's BN serves the first unit. What is left: pre-activated projections have no
# BN of their own, so a pre-activation ResNet has exactly 2 * (sum of projection widths) fewer parameters.
TORCHVISION = {
    "preact_resnet18": (11_689_512, 128 + 256 + 512),
    "preact_resnet34": (21_797_672, 128 + 256 + 512),
    "preact_resnet50": (25_557_032, 256 + 512 + 1024 + 2048),
    "preact_resnet101": (44_549_160, 256 + 512 + 1024 + 2048),
    "preact_resnet152": (60_192_808, 256 + 512 + 1024 + 2048),
}


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_param_count_is_torchvision_resnet_minus_projection_bns(name):
    tv_params, projection_widths = TORCHVISION[name]
    assert count_params(meta_model(name)) == tv_params - 2 * projection_widths


# timm's published counts, huggingface/pytorch-image-models results/results-imagenet.csv (commit 0173a13),
# param_count column in millions, 2 decimals: "resnetv2_50.a1h_in1k,...,25.55,288,..." and
# "resnetv2_101.a1h_in1k,...,44.54,288,...". timm's resnetv2_50/101 (BatchNormAct2d, plain conv) differ in
# layout but not in count: its stem has no BN and its first unit pre-activates itself (one BN(64) either way);
# it strides on the bottleneck's 3x3 (same weights); its projection is a bias-free 1x1 conv without BN, like
# ours; its classifier is a 1x1 conv with bias (same count as the Linear).
TIMM_MILLIONS = {"preact_resnet50": 25.55, "preact_resnet101": 44.54}


@pytest.mark.parametrize("name", list(TIMM_MILLIONS))
def test_param_count_matches_timm_resnetv2(name):
    assert round(count_params(meta_model(name)) / 1e6, 2) == TIMM_MILLIONS[name]


def _zero_convs(block: nn.Module) -> None:
    with torch.no_grad():
        for name, m in block.named_modules():
            if isinstance(m, nn.Conv2d) and not name.startswith("downsample"):
                m.weight.zero_()


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("make", [lambda: PreActBasicBlock(64, 64), lambda: PreActBottleneck(256, 64)],
                         ids=["basic", "bottleneck"])
def test_unit_with_zero_convs_is_exactly_the_identity(make, train):
    """The lecture's point: with nothing after the addition, zero residual weights give y = x, negatives included."""
    block = make()
    randomize_batchnorm(block)
    _zero_convs(block)
    x = torch.randn(2, block.bn1.num_features, 8, 8)
    assert (x < 0).any()
    block.train(train)
    with torch.no_grad():
        assert torch.equal(block(x), x)


def test_original_resnet_unit_with_zero_convs_is_not_the_identity():
    """Contrast: the original unit's ReLU after the addition leaves relu(x), so it cannot pass negatives."""
    from torchvision.models.resnet import BasicBlock

    block = BasicBlock(64, 64).eval()
    _zero_convs(block)
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        y = block(x)
    assert torch.equal(y, torch.relu(x))
    assert not torch.equal(y, x)


def test_projection_reads_the_preactivated_input():
    block = PreActBottleneck(256, 128, stride=2).eval()
    randomize_batchnorm(block)
    _zero_convs(block)
    x = torch.randn(2, 256, 8, 8)
    with torch.no_grad():
        expected = block.downsample(torch.relu(block.bn1(x)))
        assert torch.equal(block(x), expected)
        assert not torch.allclose(block(x), block.downsample(x))


def test_strides_units_and_preactivations():
    m = meta_model("preact_resnet50")
    first = m.layer2[0]
    assert first.conv1.stride == (2, 2) and first.conv2.stride == (1, 1)  # stride on the 1x1, as the paper's code
    assert first.downsample.stride == (2, 2) and first.downsample.bias is None
    assert m.layer1[0].bn1 is None  # the stem's BN-ReLU is the first unit's pre-activation
    assert isinstance(m.layer1[1].bn1, nn.BatchNorm2d) and isinstance(m.layer2[0].bn1, nn.BatchNorm2d)
    assert [len(s) for s in (m.layer1, m.layer2, m.layer3, m.layer4)] == [3, 4, 6, 3]
    assert sum(b.downsample is not None for s in (m.layer1, m.layer2, m.layer3, m.layer4) for b in s) == 4
    r18 = meta_model("preact_resnet18")
    assert r18.layer1[0].downsample is None and r18.layer2[0].conv1.stride == (2, 2)
    assert sum(isinstance(x, nn.Conv2d) for x in meta_model("preact_resnet200").modules()) == 1 + 3 * 66 + 4


@pytest.mark.parametrize("name", NAMES)
def test_shapes_at_224(name):
    m = meta_model(name).eval()
    width = 512 if STAGES[name][0] == "basic" else 2048
    feats = m.forward_features(torch.empty(1, 3, 224, 224, device="meta"))
    assert feats.shape == (1, width, 7, 7)
    assert m.forward_head(feats).shape == (1, 1000)
    assert m.forward_head(feats, pre_logits=True).shape == (1, width)
    assert m.num_features == width and get_card(name).torchvision is None


@pytest.mark.parametrize("name", ["preact_resnet18", "preact_resnet50"])
def test_forward_backward_small_input(name):
    m = create_model(name, num_classes=5).train()
    x = torch.randn(2, 3, 32, 32)
    feats = m.forward_features(x)
    assert feats.shape[-2:] == (1, 1) and (feats >= 0).all()  # the final BN-ReLU post-activates
    logits = m.forward_head(feats)
    assert logits.shape == (2, 5)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    assert m.conv1.weight.grad.abs().sum() > 0
