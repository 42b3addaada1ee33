"""Pre-activation ResNet.

Paper: Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun, "Identity Mappings in Deep Residual Networks",
ECCV 2016, https://arxiv.org/abs/1603.05027 (reference code: https://github.com/KaimingHe/resnet-1k-layers).

The original residual unit ends with a ReLU after the addition, x_{l+1} = relu(x_l + F(x_l)), so its output
is never negative and it cannot be the identity. The paper moves BN and ReLU in front of each convolution
("full pre-activation") and puts nothing after the addition:

    x_{l+1} = x_l + F(x_l)   =>   x_L = x_l + sum_{i=l}^{L-1} F(x_i)
    dE/dx_l = dE/dx_L * (1 + d/dx_l sum_{i=l}^{L-1} F(x_i))

Any unit's output reaches every deeper unit unchanged, the gradient reaches every shallower unit through
the "1", and a unit with an identity shortcut and zero convolutions is exactly the identity (see
tests/test_preact_resnet.py; the original unit gives relu(x) instead).

The ImageNet network as the paper's appendix describes it, its units as the paper's code
(resnet-pre-act.lua, written for CIFAR) builds them:
- stem conv7x7/2 - BN - ReLU - maxpool3x3/2. The stem's BN-ReLU is the first unit's pre-activation (the
  appendix puts that activation right after conv1), so that unit has no BN-ReLU of its own.
- A unit that changes shape applies BN-ReLU once to its input and feeds both branches from it: the
  projection shortcut, a bias-free 1x1 conv without BN, reads the pre-activated input (resnet-pre-act.lua's
  "common BN, ReLU"; timm's resnetv2 does the same; fb.resnet.torch's preresnet.lua instead projects the raw
  input and adds a BN).
- A bottleneck strides on its first 1x1 conv, as resnet-pre-act.lua does. timm's resnetv2 (and torchvision's
  "v1.5" ResNet) stride on the 3x3 instead, which reads every input position where a strided 1x1 skips
  three in four; the weights are the same.
- After the last unit an extra BN-ReLU (the last unit's "post-activation"), because every unit now ends
  with a convolution; then global average pooling and the classifier.

Deviations from the paper: the global average pool is adaptive (any input size), where the paper's network
pools a fixed 7x7 map; identical at 224x224. Depths 18-101 are not in the paper's ImageNet table (it
trains pre-activation ResNet-152 and -200): they put the paper's unit into the original ResNet's stage table.
"""
from __future__ import annotations

from typing import Type

import torch
import torch.nn.functional as F
from torch import nn

from .base import Card, ZooModel, classifier
from .registry import register_model
from .resnet import CFGS as RESNET_CFGS

# Residual units per stage: the original ResNet's Table 1 for 18-152, plus the paper's ImageNet ResNet-200.
CFGS: dict[int, tuple[str, tuple[int, int, int, int]]] = {**RESNET_CFGS, 200: ("bottleneck", (3, 24, 36, 3))}

PREACT_RESNET = Card(
    name="preact_resnet",
    family="Pre-activation ResNet",
    paper="Identity Mappings in Deep Residual Networks",
    authors="Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun",
    year=2016,
    venue="ECCV",
    url="https://arxiv.org/abs/1603.05027",
    lecture=(
        "Pre-Activation ResNet block: BN -> ReLU -> conv, twice, then add; no ReLU after the addition, "
        "so the block can learn a true identity. ResNet-152: 21.3 vs 21.1 top-1 error; ResNet-200: 21.8 vs 20.7."
    ),
    torchvision=None,
    deviations=("Adaptive global average pooling instead of the fixed 7x7 pool: any input size works; "
                "the same at 224x224.",),
)


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False)  # bias-free: a BN follows or the sum does


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride, bias=False)


class PreActBlock(nn.Module):
    """The shared pattern: pre-activate once, shortcut, residual branch, add.

    a = relu(BN(x))                      (skipped when the stem already did it: `preact=False`)
    y = x + F(a)                         when the shape is kept
    y = W_s a + F(a)                     when it changes: a strided 1x1 projection of the pre-activated input
    """

    expansion = 1

    def __init__(self, cin: int, preact: bool) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin) if preact else None

    def add_shortcut(self, cin: int, cout: int, stride: int) -> None:
        """The paper's shortcut B: a projection only where the identity cannot be added. Registered after the
        residual branch, the order in which the published (pytorchcv) files list the tensors."""
        self.downsample = conv1x1(cin, cout, stride) if stride != 1 or cin != cout else None

    def residual(self, a: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x if self.bn1 is None else F.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(a)
        return shortcut + self.residual(a)  # no ReLU after the sum: the unit can be the identity


class PreActBasicBlock(PreActBlock):
    """F(a) = conv3x3(relu(BN(conv3x3/s(a)))): BN-ReLU-conv3x3-BN-ReLU-conv3x3 with the first BN-ReLU shared.

    Parameters: 2*cin (BN, if preact) + 9*cin*cout + 2*cout + 9*cout^2 (+ cin*cout for a projection).
    """

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1, preact: bool = True) -> None:
        super().__init__(cin, preact)
        self.conv1 = conv3x3(cin, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width)
        self.add_shortcut(cin, width, stride)

    def residual(self, a: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.bn2(self.conv1(a))))


class PreActBottleneck(PreActBlock):
    """F(a) = conv1x1(relu(BN(conv3x3(relu(BN(conv1x1/s(a))))))): 1x1 reduces to `width`, 3x3, 1x1 expands 4x.

    The stride sits on the first 1x1, as in resnet-pre-act.lua (the paper's code).
    Parameters: 2*cin (BN, if preact) + cin*w + 2*w + 9*w^2 + 2*w + 4*w^2 (+ cin*4w for a projection).
    """

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, preact: bool = True) -> None:
        super().__init__(cin, preact)
        self.conv1 = conv1x1(cin, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, width * self.expansion)
        self.add_shortcut(cin, width * self.expansion, stride)

    def residual(self, a: torch.Tensor) -> torch.Tensor:
        a = self.conv1(a)
        a = self.conv2(F.relu(self.bn2(a)))
        return self.conv3(F.relu(self.bn3(a)))


BLOCKS: dict[str, Type[PreActBlock]] = {"basic": PreActBasicBlock, "bottleneck": PreActBottleneck}


class PreActResNet(ZooModel):
    """stem (conv7x7/2, BN, ReLU, maxpool) -> four stages of pre-activation units -> BN, ReLU -> pool -> fc.

    Stage i (i = 1..4) has width 64 * 2^(i-1) and halves the map in its first unit (except stage 1, which
    follows the max-pool): 224 -> 56 -> 28 -> 14 -> 7.
    """

    def __init__(
        self,
        block: str,
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
        in_chans: int = 3,
        first_unit_preact: bool = False,
    ) -> None:
        super().__init__()
        unit = BLOCKS[block]
        self.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        stages = []
        for i, depth in enumerate(layers):
            width = 64 * 2**i
            units = []
            for j in range(depth):
                # The network's very first unit reads the stem's BN-ReLU output: no pre-activation of its own.
                preact = first_unit_preact or (i, j) != (0, 0)
                units.append(unit(cin, width, stride=2 if i > 0 and j == 0 else 1, preact=preact))
                cin = width * unit.expansion
            stages.append(nn.Sequential(*units))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn = nn.BatchNorm2d(cin)  # the last unit's post-activation, since every unit ends with a conv
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_classes, self.num_features, self.classifier_path = num_classes, cin, "fc"
        self.fc = classifier(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He init, as the paper's code (std sqrt(2 / (k*k*cout)))
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.relu(self.bn(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)


_NOT_IN_PAPER = ("Depth not trained in the paper (its ImageNet results are for pre-activation ResNet-152 "
                 "and -200): the paper's unit in the original ResNet's stage table, as fb.resnet.torch's "
                 "preresnet.lua and timm's resnetv2 build it.",)


@register_model(PREACT_RESNET, deviations=_NOT_IN_PAPER)
def preact_resnet18(**kwargs) -> PreActResNet:
    return PreActResNet(*CFGS[18], **kwargs)


@register_model(PREACT_RESNET, deviations=_NOT_IN_PAPER)
def preact_resnet34(**kwargs) -> PreActResNet:
    return PreActResNet(*CFGS[34], **kwargs)


@register_model(PREACT_RESNET, deviations=_NOT_IN_PAPER)
def preact_resnet50(**kwargs) -> PreActResNet:
    return PreActResNet(*CFGS[50], **kwargs)


@register_model(PREACT_RESNET, deviations=_NOT_IN_PAPER)
def preact_resnet101(**kwargs) -> PreActResNet:
    return PreActResNet(*CFGS[101], **kwargs)


@register_model(PREACT_RESNET)
def preact_resnet152(**kwargs) -> PreActResNet:
    return PreActResNet(*CFGS[152], **kwargs)


@register_model(PREACT_RESNET)
def preact_resnet200(**kwargs) -> PreActResNet:
    return PreActResNet(*CFGS[200], **kwargs)


# ---- The published variant: imgclsmob's Gluon-trained pre-activation ResNets, served by pytorchcv ------------

_GLUON = ("The published ImageNet variant (imgclsmob's, trained with MXNet Gluon, served by pytorchcv): the first "
          "unit pre-activates its input again (BN-ReLU) after the stem's BN-ReLU and max-pool, 128 parameters more "
          "than the paper's network, where the stem's BN-ReLU is that unit's pre-activation. Otherwise the same network "
          "(tests/test_pytorchcv_weights.py: equal logits).",)


@register_model(PREACT_RESNET, deviations=_NOT_IN_PAPER + _GLUON)
def preact_resnet18_gluon(**kwargs) -> PreActResNet:
    return PreActResNet(*CFGS[18], first_unit_preact=True, **kwargs)


@register_model(PREACT_RESNET, deviations=_NOT_IN_PAPER + _GLUON)
def preact_resnet34_gluon(**kwargs) -> PreActResNet:
    return PreActResNet(*CFGS[34], first_unit_preact=True, **kwargs)


@register_model(PREACT_RESNET, deviations=_NOT_IN_PAPER + _GLUON)
def preact_resnet50_gluon(**kwargs) -> PreActResNet:
    return PreActResNet(*CFGS[50], first_unit_preact=True, **kwargs)


@register_model(PREACT_RESNET, deviations=_NOT_IN_PAPER + _GLUON)
def preact_resnet101_gluon(**kwargs) -> PreActResNet:
    return PreActResNet(*CFGS[101], first_unit_preact=True, **kwargs)


@register_model(PREACT_RESNET, deviations=_GLUON)
def preact_resnet152_gluon(**kwargs) -> PreActResNet:
    return PreActResNet(*CFGS[152], first_unit_preact=True, **kwargs)
