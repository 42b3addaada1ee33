"""ResNet, and the three ways the lecture's "improving ResNets" grows it: ResNeXt, Wide ResNet, SE-ResNet.

Papers:
- Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun, "Deep Residual Learning for Image Recognition",
  CVPR 2016, https://arxiv.org/abs/1512.03385
- Saining Xie, Ross Girshick, Piotr Dollar, Zhuowen Tu, Kaiming He, "Aggregated Residual Transformations for
  Deep Neural Networks", CVPR 2017, https://arxiv.org/abs/1611.05431
- Sergey Zagoruyko, Nikos Komodakis, "Wide Residual Networks", BMVC 2016, https://arxiv.org/abs/1605.07146
- Jie Hu, Li Shen, Gang Sun, "Squeeze-and-Excitation Networks", CVPR 2018, https://arxiv.org/abs/1709.01507

A deep plain network trains worse than a shallow one (the degradation problem), though it could copy the
shallow one and make its extra layers the identity. A residual block makes the identity the easy default:

    y = relu(F(x) + shortcut(x))

F is two 3x3 convolutions (BasicBlock) or 1x1-3x3-1x1 (Bottleneck); shortcut(x) is x itself, or a
strided 1x1 projection W_s x where the block halves the map and widens the channels (the paper's option B).
When F's weights are zero the block passes x through, and the gradient reaches earlier blocks through "+".

The relatives change one thing each inside the block, so they are arguments of the same class:
- ResNeXt: the 3x3 becomes `groups` parallel paths of `width_per_group` channels (Xie et al., Fig. 3c).
- Wide ResNet (torchvision's ImageNet form): the bottleneck's inner width doubles (`width_per_group=128`).
- SE-ResNet: the residual branch is rescaled per channel before the addition (`se_reduction=16`).

Deviations: the stride of a bottleneck sits on its 3x3 (torchvision's "v1.5", also ResNeXt's and timm's
SE-ResNet's choice); the paper's Caffe models ("v1") stride the first 1x1, built here by `resnet50_v1`,
`resnet101_v1` and `resnet152_v1`. The final average pool is adaptive (any input size; the same at 224).
Each model's card lists its own.
"""
from __future__ import annotations

from typing import Type

import torch
from torch import nn

from .base import Card, ZooModel, classifier
from .registry import register_model

# He et al., Table 1: residual blocks per stage, conv2_x..conv5_x, whose 3x3 convolutions are 64, 128, 256
# and 512 wide (a bottleneck's output is 4x that). Each stage after the first halves the map: 56-28-14-7.
CFGS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}

_ADAPTIVE_POOL = ("Adaptive global average pooling instead of the paper's fixed 7x7 pool, so any input from "
                  "32 pixels works; identical at 224x224.")
_MIN_REASON = ("the network's stride is 32, so 32 pixels leave a 1x1 map for the global average pool; every "
               "strided layer pads, so smaller inputs run too, on 1x1 maps")

RESNET = Card(
    name="resnet",
    family="ResNet",
    paper="Deep Residual Learning for Image Recognition",
    authors="Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun",
    year=2016,
    venue="CVPR",
    url="https://arxiv.org/abs/1512.03385",
    min_input_reason=_MIN_REASON,
    deviations=(_ADAPTIVE_POOL,),
)

RESNEXT = Card(
    name="resnext",
    family="ResNeXt",
    paper="Aggregated Residual Transformations for Deep Neural Networks",
    authors="Saining Xie, Ross Girshick, Piotr Dollar, Zhuowen Tu, Kaiming He",
    year=2017,
    venue="CVPR",
    url="https://arxiv.org/abs/1611.05431",
    min_input_reason=_MIN_REASON,
    lecture="Named in the lecture's 'Improving ResNets' slide: ResNeXt, 'the next generation of ResNet'.",
    deviations=(_ADAPTIVE_POOL, "The aggregated transformations are built as one grouped 3x3 convolution, the "
                "paper's form (c), which it shows equivalent to (a) and (b)."),
)

WIDE_RESNET = Card(
    name="wide_resnet",
    family="Wide ResNet",
    paper="Wide Residual Networks",
    authors="Sergey Zagoruyko, Nikos Komodakis",
    year=2016,
    venue="BMVC",
    url="https://arxiv.org/abs/1605.07146",
    min_input_reason=_MIN_REASON,
    deviations=(_ADAPTIVE_POOL, "torchvision's ImageNet form (the paper's WRN-50-2-bottleneck): a ResNet "
                "bottleneck whose inner 1x1/3x3 width is doubled while its 4x-wide output is not; the paper's "
                "CIFAR WRN-d-k networks are pre-activation basic blocks instead."),
)

SE_RESNET = Card(
    name="seresnet",
    family="SE-ResNet",
    paper="Squeeze-and-Excitation Networks",
    authors="Jie Hu, Li Shen, Gang Sun",
    year=2018,
    venue="CVPR",
    url="https://arxiv.org/abs/1709.01507",
    min_input_reason=_MIN_REASON,
    lecture="Named in the lecture's 'Other CNN architectures' slide: Squeeze-and-Excitation Networks.",
    deviations=(_ADAPTIVE_POOL, "timm's parameter names for the gate (se.fc1, se.fc2, 1x1 convolutions); the "
                "squeeze width is the paper's C/16 exactly (timm rounds it up to a multiple of 8)."),
)


def conv3x3(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, padding=1, groups=groups, bias=False)  # a BN follows: no bias


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride, bias=False)


def se_width(channels: int, reduction: int) -> int:
    """C/r, the paper's squeeze width (64 channels give 4; the authors' release and pytorchcv agree)."""
    return channels // reduction


class SqueezeExcite(nn.Module):
    """Hu et al., Fig. 3: rescale each channel of the residual branch u by a gate computed from all channels.

        z = mean_{h,w} u                      squeeze: one number per channel (global average pool)
        s = sigmoid(W2 relu(W1 z + b1) + b2)  excite: C -> C/r -> C, a gate in (0, 1) per channel
        output = s * u

    W1 and W2 are the paper's two FC layers, written as 1x1 convolutions on the 1x1 map (as timm does), so
    the parameter count is 2*C*C/r + C/r + C, the same as two nn.Linear with bias.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = se_width(channels, reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        z = u.mean((2, 3), keepdim=True)
        return u * torch.sigmoid(self.fc2(self.relu(self.fc1(z))))


class ResidualBlock(nn.Module):
    """The pattern both blocks share: y = relu(se(F(x)) + shortcut(x)).

    shortcut(x) = x where the shape is kept, else downsample(x) = BN(W_s x): a strided 1x1 projection
    (the paper's option B). `se` is skipped unless the block is an SE block.
    """

    expansion: int

    def add_gate_and_shortcut(self, cin: int, cout: int, stride: int, se_reduction: int | None) -> None:
        """Registered after the branch's layers, so the module prints (and its state_dict lists) in order."""
        self.se = SqueezeExcite(cout, se_reduction) if se_reduction else None
        self.relu = nn.ReLU(inplace=True)
        needs_projection = stride != 1 or cin != cout
        projection = nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))
        self.downsample = projection if needs_projection else None

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def last_bn(self) -> nn.BatchNorm2d:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.residual(x)
        if self.se is not None:
            f = self.se(f)  # gates the branch only, before the sum: the shortcut stays an identity path
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(f + shortcut)


class BasicBlock(ResidualBlock):
    """He et al., Fig. 2: F(x) = BN(W2 * relu(BN(W1 * x))), two 3x3 convolutions of `width` channels.

    W1 carries the stride. There is no 1x1 in the main path, so the paper's v1 and torchvision's v1.5
    (which differ only in which bottleneck convolution strides) are the same block here.
    """

    expansion = 1

    def __init__(
        self, cin: int, width: int, stride: int = 1, groups: int = 1, width_per_group: int = 64,
        stride_in_1x1: bool = False, se_reduction: int | None = None,
    ) -> None:
        if groups != 1 or width_per_group != 64:
            raise ValueError("BasicBlock has no grouped or widened form: use groups=1, width_per_group=64")
        super().__init__()
        self.conv1 = conv3x3(cin, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.add_gate_and_shortcut(cin, width, stride, se_reduction)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2


class Bottleneck(ResidualBlock):
    """He et al., Fig. 5 right: F(x) = BN(W3 * relu(BN(W2 * relu(BN(W1 * x))))), 1x1 -> 3x3 -> 1x1.

    W1 (1x1) reduces to d = width * width_per_group/64 * groups channels, W2 (3x3, in `groups` groups) works
    at that width, W3 (1x1) expands to 4*width. ResNet: d = width; ResNeXt 32x4d: 32 groups of 4 at
    width 64 (d = 128, Xie et al. Table 1); Wide ResNet-50-2: width_per_group = 128 (d = 2*width).
    The stride goes on W2, torchvision's "v1.5" (every 3x3 position of the input is seen), or on W1 with
    `stride_in_1x1=True`, the paper's v1, whose 1x1 skips 3 of every 4 input positions.
    """

    expansion = 4

    def __init__(
        self, cin: int, width: int, stride: int = 1, groups: int = 1, width_per_group: int = 64,
        stride_in_1x1: bool = False, se_reduction: int | None = None,
    ) -> None:
        super().__init__()
        d = int(width * (width_per_group / 64.0)) * groups
        s1, s2 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(cin, d, s1)
        self.bn1 = nn.BatchNorm2d(d)
        self.conv2 = conv3x3(d, d, s2, groups)
        self.bn2 = nn.BatchNorm2d(d)
        self.conv3 = conv1x1(d, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.add_gate_and_shortcut(cin, width * self.expansion, stride, se_reduction)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        return self.bn3(self.conv3(x))

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3


BLOCKS: dict[str, Type[ResidualBlock]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(ZooModel):
    """stem (conv7x7/2, BN, ReLU, maxpool3x3/2) -> layer1..layer4 of residual blocks -> avgpool -> fc.

    Stage i (i = 1..4) is 64 * 2^(i-1) wide; its first block halves the map (except layer1's, which follows
    the max-pool) and projects the shortcut: 224 -> 112 -> 56 -> 28 -> 14 -> 7. The names and shapes of
    every parameter are torchvision's, so its state_dicts load unchanged.

    Args: `groups`/`width_per_group` (ResNeXt, Wide ResNet), `stride_in_1x1` (the paper's v1),
    `se_reduction` (SE blocks with that reduction ratio r), `zero_init_residual` (each block's last BN
    starts at zero, so every block starts as the identity: Goyal et al. 2017, as torchvision offers).
    """

    def __init__(
        self,
        block: str,
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
        in_chans: int = 3,
        groups: int = 1,
        width_per_group: int = 64,
        stride_in_1x1: bool = False,
        se_reduction: int | None = None,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        unit = BLOCKS[block]
        self.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)  # with the stem, the lecture's 4x "aggressive stem"
        cin = 64
        stages = []
        for i, depth in enumerate(layers):
            width = 64 * 2**i
            blocks = []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(unit(cin, width, stride, groups, width_per_group, stride_in_1x1, se_reduction))
                cin = width * unit.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_classes, self.num_features, self.classifier_path = num_classes, cin, "fc"
        self.fc = classifier(cin, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He init (the paper's Sec. 3.4), fan-out as torchvision
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, ResidualBlock):
                    nn.init.zeros_(m.last_bn().weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)


# ---- ResNet, torchvision's v1.5: the ILSVRC 2015 winner's architecture (ensemble top-5 error 3.57%) ----------

_V1_IS_V15 = ("v1 and v1.5 coincide for basic blocks (no 1x1 in the main path), so there is no separate "
              "_v1 model for this depth.",)
_V15 = ("torchvision's 'v1.5': stride 2 on each stage's first 3x3 convolution, where the paper strides the "
        "first 1x1 (about +0.5% top-1 by NVIDIA's note that torchvision cites; 4.1 instead of 3.8 GFLOPs for "
        "ResNet-50); the paper's form is the _v1 model of the same depth.",)
_TOP5 = "ImageNet top-5 error {}% (torchvision, 224 single crop); {} GFLOP in the lecture's table"


@register_model(RESNET, lecture=_TOP5.format(10.92, 1.8), torchvision="resnet18", deviations=_V1_IS_V15)
def resnet18(**kwargs) -> ResNet:
    return ResNet(*CFGS[18], **kwargs)


@register_model(RESNET, lecture=_TOP5.format(8.58, 3.6), torchvision="resnet34", deviations=_V1_IS_V15)
def resnet34(**kwargs) -> ResNet:
    return ResNet(*CFGS[34], **kwargs)


@register_model(RESNET, lecture=_TOP5.format(7.13, 3.8) + " (the paper's v1 count; v1.5 is 4.1)",
                torchvision="resnet50", deviations=_V15)
def resnet50(**kwargs) -> ResNet:
    return ResNet(*CFGS[50], **kwargs)


@register_model(RESNET, lecture=_TOP5.format(6.44, 7.6) + " (the paper's v1 count; v1.5 is 7.8)",
                torchvision="resnet101", deviations=_V15)
def resnet101(**kwargs) -> ResNet:
    return ResNet(*CFGS[101], **kwargs)


@register_model(RESNET, lecture=_TOP5.format(5.94, 11.3) + " (the paper's v1 count; v1.5 is 11.5); "
                "the 152-layer network won ILSVRC 2015 (ensemble top-5 error 3.57%)",
                torchvision="resnet152", deviations=_V15)
def resnet152(**kwargs) -> ResNet:
    return ResNet(*CFGS[152], **kwargs)


# ---- ResNet v1, the paper's own: stride 2 on the bottleneck's first 1x1 --------------------------------------

_V1_WEIGHTS = ("Same parameter names and shapes as torchvision's v1.5 model, so its weights load unchanged; "
               "they were trained with the stride on the 3x3, so they are not the paper's v1 weights.",)
_V1_LECTURE = "{} GFLOP in the lecture's table, this model's count; its top-5 error {}% is torchvision's v1.5 figure"


@register_model(RESNET, lecture=_V1_LECTURE.format(3.8, 7.13), torchvision="resnet50", deviations=_V1_WEIGHTS)
def resnet50_v1(**kwargs) -> ResNet:
    return ResNet(*CFGS[50], stride_in_1x1=True, **kwargs)


@register_model(RESNET, lecture=_V1_LECTURE.format(7.6, 6.44), torchvision="resnet101", deviations=_V1_WEIGHTS)
def resnet101_v1(**kwargs) -> ResNet:
    return ResNet(*CFGS[101], stride_in_1x1=True, **kwargs)


@register_model(RESNET, lecture=_V1_LECTURE.format(11.3, 5.94) + "; the 152-layer network won ILSVRC 2015 "
                "(ensemble top-5 error 3.57%)", torchvision="resnet152", deviations=_V1_WEIGHTS)
def resnet152_v1(**kwargs) -> ResNet:
    return ResNet(*CFGS[152], stride_in_1x1=True, **kwargs)


# ---- ResNeXt: cardinality x width of each group, e.g. 32x4d = 32 groups of 4 channels at width 64 ----------


@register_model(RESNEXT, torchvision="resnext50_32x4d")
def resnext50_32x4d(**kwargs) -> ResNet:
    return ResNet(*CFGS[50], groups=32, width_per_group=4, **kwargs)


@register_model(RESNEXT, torchvision="resnext101_32x8d", deviations=(
    "32x8d is not in the paper's tables (it has 101-layer 32x4d, 2x64d and 64x4d): torchvision's configuration, "
    "twice the paper's 32x4d group width.",))
def resnext101_32x8d(**kwargs) -> ResNet:
    return ResNet(*CFGS[101], groups=32, width_per_group=8, **kwargs)


@register_model(RESNEXT, torchvision="resnext101_64x4d")
def resnext101_64x4d(**kwargs) -> ResNet:
    return ResNet(*CFGS[101], groups=64, width_per_group=4, **kwargs)


# ---- Wide ResNet: the bottleneck's inner width doubled --------------------------------------------------------


@register_model(WIDE_RESNET, torchvision="wide_resnet50_2")
def wide_resnet50_2(**kwargs) -> ResNet:
    return ResNet(*CFGS[50], width_per_group=64 * 2, **kwargs)


@register_model(WIDE_RESNET, torchvision="wide_resnet101_2", deviations=(
    "torchvision's extension of the same widening to ResNet-101.",))
def wide_resnet101_2(**kwargs) -> ResNet:
    return ResNet(*CFGS[101], width_per_group=64 * 2, **kwargs)


# ---- SE-ResNet and SE-ResNeXt: every block's residual branch gated, reduction r = 16 --------------------------


_SE_POOL = ("The stem's max-pool pads by 1 (torchvision's, and the published pytorchcv weights'); the SE authors' "
            "Caffe models pool unpadded with Caffe's round-up (timm's legacy_seresnet keeps it): the same 56x56 map "
            "with windows shifted by one pixel. Otherwise the authors' network (tests/test_timm_reference.py: equal "
            "logits with that pool swapped).",)
_SE_V1 = ("Stride 2 on the bottleneck's first 1x1, as the SE paper's released Caffe models (3.86 GMACs for "
          "SE-ResNet-50, the paper's 3.87 GFLOPs) and their published weights; timm's seresnet strides the 3x3 "
          "('v1.5', 4.09 GMACs), its legacy_seresnet the 1x1.",) + _SE_POOL
_SE_V15 = ("Stride 2 on the bottleneck's 3x3, as ResNeXt's units and the SE authors' released SE-ResNeXt-50 do "
           "(and pytorchcv's published weights).",) + _SE_POOL


@register_model(SE_RESNET)
def seresnet18(**kwargs) -> ResNet:
    return ResNet(*CFGS[18], se_reduction=16, **kwargs)


@register_model(SE_RESNET)
def seresnet34(**kwargs) -> ResNet:
    return ResNet(*CFGS[34], se_reduction=16, **kwargs)


@register_model(SE_RESNET, deviations=_SE_V1)
def seresnet50(**kwargs) -> ResNet:
    return ResNet(*CFGS[50], stride_in_1x1=True, se_reduction=16, **kwargs)


@register_model(SE_RESNET, deviations=_SE_V1)
def seresnet101(**kwargs) -> ResNet:
    return ResNet(*CFGS[101], stride_in_1x1=True, se_reduction=16, **kwargs)


@register_model(SE_RESNET, deviations=_SE_V1)
def seresnet152(**kwargs) -> ResNet:
    return ResNet(*CFGS[152], stride_in_1x1=True, se_reduction=16, **kwargs)


@register_model(SE_RESNET, deviations=_SE_V15)
def seresnext50_32x4d(**kwargs) -> ResNet:
    return ResNet(*CFGS[50], groups=32, width_per_group=4, se_reduction=16, **kwargs)
