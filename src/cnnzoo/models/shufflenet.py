"""ShuffleNet V1 and V2: pointwise group convolutions, a channel shuffle between them, and depthwise 3x3s.

V1: Xiangyu Zhang, Xinyu Zhou, Mengxiao Lin, Jian Sun, "ShuffleNet: An Extremely Efficient Convolutional
Neural Network for Mobile Devices", CVPR 2018, https://arxiv.org/abs/1707.01083.
V2: Ningning Ma, Xiangyu Zhang, Hai-Tao Zheng, Jian Sun, "ShuffleNet V2: Practical Guidelines for Efficient
CNN Architecture Design", ECCV 2018, https://arxiv.org/abs/1807.11164.

A 1x1 convolution split into g groups costs 1/g of a dense one, but each group then only ever sees its own
slice of channels. The channel shuffle, (N, g*n, H, W) -> view (N, g, n, H, W) -> transpose -> (N, n*g, H, W),
deals every group's output out across all groups of the next layer, so information crosses groups for free.
V2 drops the group convolutions (they cost memory access, guideline G2) and instead splits the channels in
two: one half passes through untouched, the other through 1x1 -> depthwise 3x3 -> 1x1, and a shuffle of the
concatenation mixes the halves before the next unit.

Deviations from the papers:
- V1's global pooling is adaptive (identical to the paper's 7x7 average pool at 224 pixels) so that small
  inputs work.
- V1's stem convolution is followed by batch norm and ReLU (Table 1 lists only "Conv1"), as in the authors'
  code (megvii-model/ShuffleNet-Series) and pytorchcv; the FC has a bias, as in pytorchcv (not in the
  authors' code), so that our parameter counts equal pytorchcv's exactly.
- The paper scales every filter count of "ShuffleNet s x" by s but does not give the stem's width; ours are
  those of the authors' released models: 12 at 0.5x (16 for g=8, since 192 - 12 channels do not split into
  8 groups), 24 at 1x and 1.5x, 48 at 2x.
- V2 is torchvision's ShuffleNetV2 (same state_dict keys), Table 5 of the paper. Figure 3(d) does not say how
  a stride-2 unit divides its output between its branches; torchvision halves it, while the authors' code
  gives the left branch the input's width. The two differ only in Stage 2's first unit (24 channels in,
  116/176/244 out; at 0.5x, 24 is already half of 48), and that unit is why the paper's 146/299/591
  MFLOPs are 145/296/583 here.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Card, ZooModel, classifier
from .registry import register_model

# ShuffleNet V1, Table 1: output channels of Stages 2, 3, 4 at 1x, for each number of groups g.
V1_STAGE_CHANNELS: dict[int, tuple[int, int, int]] = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}
V1_STAGE_REPEATS = (4, 8, 4)  # the first unit of each stage has stride 2
V1_STEM_CHANNELS = {0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}  # the authors' released models (see deviations)

# ShuffleNet V2, Table 5: output channels of Conv1, Stages 2, 3, 4 and Conv5 for each scale.
V2_STAGE_CHANNELS: dict[float, tuple[int, int, int, int, int]] = {
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 244, 488, 976, 2048),
}
V2_STAGE_REPEATS = (4, 8, 4)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave `groups` groups of channels: with 6 channels in 2 groups, [0 1 2 | 3 4 5] -> [0 3 1 4 2 5].

    Reading the channels as a (groups, n) matrix, the shuffle is its transpose, flattened back.
    """
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ChannelShuffle(nn.Module):
    """`channel_shuffle` as a layer, so that hooks and model summaries list it (it has no parameters)."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups) if self.groups > 1 else x

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    """Convolution (no bias: the batch norm has one), batch norm, and optionally ReLU."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class ShuffleV1Unit(nn.Module):
    """Figure 2(b, c): 1x1 GConv, BN, ReLU -> shuffle -> 3x3 DWConv, BN -> 1x1 GConv, BN -> add or concat -> ReLU.

    With stride 1, out = ReLU(x + F(x)). With stride 2, out = ReLU([F(x), AvgPool3x3/2(x)]), so F only
    produces the `cout - cin` channels the shortcut does not supply. The bottleneck is `cout / 4` wide, and
    there is no ReLU after the depthwise convolution (Section 3.2).
    """

    def __init__(self, cin: int, cout: int, groups: int, stride: int, group_first: bool = True) -> None:
        super().__init__()
        mid = cout // 4
        out = cout - cin if stride == 2 else cout
        for width in (mid, out):
            if width % groups:
                raise ValueError(f"{width} channels do not split into {groups} groups")
        # Stage 2's first unit reads only the stem's 24 channels, too few to split (Section 3.3).
        self.gconv1 = conv_bn(cin, mid, 1, groups=groups if group_first else 1)
        self.shuffle = ChannelShuffle(groups)
        self.dwconv = conv_bn(mid, mid, 3, stride, groups=mid, relu=False)
        self.gconv2 = conv_bn(mid, out, 1, groups=groups, relu=False)
        self.shortcut = nn.AvgPool2d(3, 2, 1) if stride == 2 else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gconv2(self.dwconv(self.shuffle(self.gconv1(x))))
        y = y + x if self.shortcut is None else torch.cat((y, self.shortcut(x)), 1)
        return self.relu(y)


class ShuffleNetV1(ZooModel):
    """Conv1 3x3/2 + MaxPool 3x3/2, three stages of ShuffleNet units (4, 8, 4), global average pool, FC."""

    def __init__(
        self,
        groups: int = 3,
        scale: float = 1.0,
        stem_channels: int | None = None,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if groups not in V1_STAGE_CHANNELS:
            raise ValueError(f"groups must be one of {sorted(V1_STAGE_CHANNELS)}, got {groups}")
        widths = [round(c * scale) for c in V1_STAGE_CHANNELS[groups]]
        stem = stem_channels or V1_STEM_CHANNELS.get(scale) or round(24 * scale)
        self.conv1 = conv_bn(in_chans, stem, 3, stride=2)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = stem
        for i, (repeats, cout) in enumerate(zip(V1_STAGE_REPEATS, widths)):
            units = [ShuffleV1Unit(cin, cout, groups, 2, group_first=i > 0)]
            units += [ShuffleV1Unit(cout, cout, groups, 1) for _ in range(repeats - 1)]
            setattr(self, f"stage{i + 2}", nn.Sequential(*units))  # stages 2-4, as in Table 1
            cin = cout
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = classifier(cin, num_classes)
        self.num_features, self.num_classes = cin, num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage4(self.stage3(self.stage2(self.maxpool(self.conv1(x)))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)
        return x if pre_logits else self.fc(x)


class ShuffleV2Unit(nn.Module):
    """Figure 3(c, d). Stride 1: split the channels in half, keep one half, and run the other through
    1x1, BN, ReLU -> 3x3 DWConv, BN -> 1x1, BN, ReLU; concatenate, then shuffle with 2 groups.
    Stride 2: no split; both halves of the output come from the whole input, the left through
    3x3/2 DWConv, BN -> 1x1, BN, ReLU, so the width doubles while the map halves.
    """

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        half = cout // 2
        self.stride = stride
        if stride == 2:
            self.branch1 = nn.Sequential(
                *conv_bn(cin, cin, 3, stride, groups=cin, relu=False),
                *conv_bn(cin, half, 1),
            )
        elif cin != 2 * half:
            raise ValueError(f"a stride-1 unit needs equal input and output widths, got {cin} and {cout}")
        self.branch2 = nn.Sequential(
            *conv_bn(cin if stride == 2 else half, half, 1),
            *conv_bn(half, half, 3, stride, groups=half, relu=False),
            *conv_bn(half, half, 1),
        )
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), 1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        return self.shuffle(out)


class ShuffleNetV2(ZooModel):
    """Conv1 3x3/2 + MaxPool 3x3/2, three stages of units (4, 8, 4), Conv5 1x1, global average pool, FC."""

    def __init__(self, scale: float = 1.0, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        c1, *stage_widths, c5 = V2_STAGE_CHANNELS[scale]
        self.conv1 = conv_bn(in_chans, c1, 3, stride=2)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = c1
        for i, (repeats, cout) in enumerate(zip(V2_STAGE_REPEATS, stage_widths)):
            units = [ShuffleV2Unit(cin, cout, 2)] + [ShuffleV2Unit(cout, cout, 1) for _ in range(repeats - 1)]
            setattr(self, f"stage{i + 2}", nn.Sequential(*units))
            cin = cout
        self.conv5 = conv_bn(cin, c5, 1)
        self.global_pool = nn.AdaptiveAvgPool2d(1)  # torchvision's x.mean([2, 3]), as a layer
        self.fc = classifier(c5, num_classes)
        self.num_features, self.num_classes = c5, num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv5(self.stage4(self.stage3(self.stage2(self.maxpool(self.conv1(x))))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)
        return x if pre_logits else self.fc(x)


SHUFFLENET_V1 = Card(
    name="shufflenet_v1",
    family="ShuffleNet",
    paper="ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices",
    authors="Xiangyu Zhang, Xinyu Zhou, Mengxiao Lin, Jian Sun",
    year=2018,
    venue="CVPR",
    url="https://arxiv.org/abs/1707.01083",
    lecture="listed among the tiny networks for mobile devices (Zhang et al, CVPR 2018)",
    deviations=(
        "Global pooling is adaptive (the paper's 7x7 average pool at 224 pixels), so small inputs work.",
        "Batch norm and ReLU after the stem convolution (Table 1 lists only Conv1), as in the authors' code and "
        "pytorchcv; a bias in the FC layer, as in pytorchcv.",
    ),
)

SHUFFLENET_V2 = Card(
    name="shufflenet_v2",
    family="ShuffleNet V2",
    paper="ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
    authors="Ningning Ma, Xiangyu Zhang, Hai-Tao Zheng, Jian Sun",
    year=2018,
    venue="ECCV",
    url="https://arxiv.org/abs/1807.11164",
    lecture="listed among the tiny networks for mobile devices (Ma et al, ECCV 2018)",
)

_STEM_NOTE = "The paper does not give the stem's width at this scale: {} channels, as in the authors' released model."
_V2_SPLIT_NOTE = (
    "Stage 2's first unit gives each branch half of its output channels (torchvision); the authors' code gives "
    "the left branch the input's 24, so the paper's MFLOPs are {} where ours are {}."
)


@register_model(SHUFFLENET_V1)
def shufflenet_v1_g1_x1_0(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=1, **kwargs)


@register_model(SHUFFLENET_V1)
def shufflenet_v1_g2_x1_0(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=2, **kwargs)


@register_model(SHUFFLENET_V1)
def shufflenet_v1_g3_x1_0(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=3, **kwargs)


@register_model(SHUFFLENET_V1)
def shufflenet_v1_g4_x1_0(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=4, **kwargs)


@register_model(SHUFFLENET_V1)
def shufflenet_v1_g8_x1_0(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=8, **kwargs)


@register_model(SHUFFLENET_V1, deviations=(_STEM_NOTE.format(12),))
def shufflenet_v1_g3_x0_5(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=3, scale=0.5, **kwargs)


@register_model(SHUFFLENET_V1, deviations=(_STEM_NOTE.format(24),))
def shufflenet_v1_g3_x1_5(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=3, scale=1.5, **kwargs)


@register_model(SHUFFLENET_V1, deviations=(_STEM_NOTE.format(48),))
def shufflenet_v1_g3_x2_0(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=3, scale=2.0, **kwargs)


@register_model(SHUFFLENET_V1, deviations=(_STEM_NOTE.format("16 (192 - 12 do not split into 8 groups)"),))
def shufflenet_v1_g8_x0_5(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=8, scale=0.5, stem_channels=16, **kwargs)


@register_model(SHUFFLENET_V1, deviations=(_STEM_NOTE.format(24),))
def shufflenet_v1_g8_x1_5(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=8, scale=1.5, **kwargs)


@register_model(SHUFFLENET_V1, deviations=(_STEM_NOTE.format(48),))
def shufflenet_v1_g8_x2_0(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups=8, scale=2.0, **kwargs)


@register_model(SHUFFLENET_V2, torchvision="shufflenet_v2_x0_5")
def shufflenet_v2_x0_5(**kwargs) -> ShuffleNetV2:
    return ShuffleNetV2(scale=0.5, **kwargs)


@register_model(
    SHUFFLENET_V2, torchvision="shufflenet_v2_x1_0", deviations=(_V2_SPLIT_NOTE.format(146, 145),)
)
def shufflenet_v2_x1_0(**kwargs) -> ShuffleNetV2:
    return ShuffleNetV2(scale=1.0, **kwargs)


@register_model(
    SHUFFLENET_V2, torchvision="shufflenet_v2_x1_5", deviations=(_V2_SPLIT_NOTE.format(299, 296),)
)
def shufflenet_v2_x1_5(**kwargs) -> ShuffleNetV2:
    return ShuffleNetV2(scale=1.5, **kwargs)


@register_model(
    SHUFFLENET_V2, torchvision="shufflenet_v2_x2_0", deviations=(_V2_SPLIT_NOTE.format(591, 583),)
)
def shufflenet_v2_x2_0(**kwargs) -> ShuffleNetV2:
    return ShuffleNetV2(scale=2.0, **kwargs)
