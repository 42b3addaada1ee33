"""MobileNet V1 and V2: depthwise separable convolutions, and V2's inverted residuals with linear bottlenecks.

V1: Andrew G. Howard, Menglong Zhu, Bo Chen, Dmitry Kalenichenko, Weijun Wang, Tobias Weyand, Marco Andreetto,
Hartwig Adam, "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications", arXiv 2017,
https://arxiv.org/abs/1704.04861.
V2: Mark Sandler, Andrew Howard, Menglong Zhu, Andrey Zhmoginov, Liang-Chieh Chen, "MobileNetV2: Inverted
Residuals and Linear Bottlenecks", CVPR 2018, https://arxiv.org/abs/1801.04381.

A k x k convolution from M to N channels on a D x D map costs k^2 * M * N * D^2 mult-adds. V1 factors it into
a depthwise k x k convolution (one filter per channel, `groups=M`: k^2 * M * D^2) and a pointwise 1x1
convolution (M * N * D^2), which is 1/N + 1/k^2 of the cost: 8-9x cheaper for 3x3. Two knobs trade accuracy
for cost: the width multiplier alpha scales every layer's channels (cost and parameters ~ alpha^2), and the
resolution multiplier rho scales the input side (cost ~ rho^2, parameters unchanged).

V2 turns the block inside out: a 1x1 convolution expands the narrow input t times (t=6), a depthwise 3x3
filters the wide tensor, and a 1x1 projects back to a narrow output with no ReLU after it ("linear
bottleneck": a ReLU in a low-dimensional space destroys information). The residual connects the narrow ends.

Published complexity, which the tests check (mult-adds count convolutions and the classifier):
- V1, Table 6 (224 pixels): alpha 1.0: 569M mult-adds, 4.2M parameters; 0.75: 325M, 2.6M; 0.5: 149M, 1.3M;
  0.25: 41M, 0.5M. Table 7 (alpha 1.0): 224 px 569M, 192 px 418M, 160 px 290M, 128 px 186M.
- V2, Table 4: 1.0: 300M mult-adds, 3.4M parameters; 1.4: 585M, 6.9M. The authors' released models (TF-slim
  README) list 300M / 3.47M, 582M / 6.06M, and 209M / 2.61M at 0.75, 97M / 1.95M at 0.5; ours match those
  (parameters without batch norm, 1001 classes; with batch norm and 1000 classes, torchvision's 3.50M at
  1.0). The paper's 1.4 figures (585M, 6.9M) do not follow from its own Table 2.

Deviations from the papers:
- Global pooling is adaptive (identical to the papers' 7x7 average pool at 224 pixels), so any input size
  works; the resolution multiplier is simply the input size you feed (224, 192, 160 or 128 in the paper).
- V1: Table 1 marks the second-to-last depthwise convolution "s2", but its input and output are both 7x7;
  it has stride 1, as in the authors' TF-slim code and every port.
- V2 is torchvision's MobileNetV2 (same state_dict keys; `torchvision.models.mobilenet_v2(width_mult=w)`
  for the other widths): dropout 0.2 before the classifier, and a Linear in place of Table 2's final 1x1
  convolution (the same map on a 1x1 input).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import Card, ZooModel, classifier
from .registry import register_model

# MobileNet V1, Table 1: the stem is a full 3x3/2 convolution to 32 channels; then 13 depthwise separable
# layers, each (stride of the depthwise 3x3, output channels of the pointwise 1x1).
V1_STEM = 32
V1_LAYERS: list[tuple[int, int]] = [
    (1, 64),
    (2, 128), (1, 128),
    (2, 256), (1, 256),
    (2, 512), (1, 512), (1, 512), (1, 512), (1, 512), (1, 512),
    (2, 1024), (1, 1024),  # Table 1 says "s2" for the last one; its 7x7 map says stride 1
]

# MobileNet V2, Table 2: expansion factor t, output channels c, repeats n, stride s of the first repeat.
V2_STEM, V2_LAST = 32, 1280
V2_BLOCKS: list[tuple[int, int, int, int]] = [
    # t, c, n, s
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round a scaled width to the nearest multiple of `divisor` (never down by more than 10%): fast kernels
    like channel counts that are multiples of 8. Exact for the paper's widths at alpha 1, 0.75, 0.5, 0.25."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def conv_bn_act(
    cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: type[nn.Module] = nn.ReLU
) -> nn.Sequential:
    """Convolution ('same' padding, no bias: the batch norm has one), batch norm, activation."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        act(inplace=True),
    )


class DepthwiseSeparable(nn.Module):
    """Figure 3 (right): 3x3 depthwise conv, BN, ReLU -> 1x1 pointwise conv, BN, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.dw = conv_bn_act(cin, cin, 3, stride, groups=cin)  # filters each channel on its own
        self.pw = conv_bn_act(cin, cout, 1)  # mixes the channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class MobileNetV1(ZooModel):
    """3x3/2 conv, 13 depthwise separable layers, global average pool, FC (Table 1)."""

    classifier_path = "classifier"

    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        cin = make_divisible(V1_STEM * width_mult)
        layers: list[nn.Module] = [conv_bn_act(in_chans, cin, 3, 2)]
        for stride, cout in V1_LAYERS:
            cout = make_divisible(cout * width_mult)
            layers.append(DepthwiseSeparable(cin, cout, stride))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.classifier = classifier(cin, num_classes)
        self.num_features, self.num_classes = cin, num_classes
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return x if pre_logits else self.classifier(x)


class InvertedResidual(nn.Module):
    """Table 1 of V2: 1x1 expand to t*cin, BN, ReLU6 -> 3x3 depthwise (stride s), BN, ReLU6 -> 1x1 project,
    BN (linear). Adds the input when the stride is 1 and the width unchanged. With t=1 there is no expansion."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_act(cin, hidden, 1, act=nn.ReLU6))
        layers += [
            conv_bn_act(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),  # no activation: a ReLU on the narrow output would lose information
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(ZooModel):
    """3x3/2 conv, 17 inverted residual blocks, 1x1 conv to 1280, global average pool, dropout, FC (Table 2).

    The width multiplier scales every layer but the last 1x1 convolution, which only grows (Section 6.1).
    Any width loads `torchvision.models.mobilenet_v2(width_mult=...)`'s state_dict.
    """

    classifier_path = "classifier.1"

    def __init__(
        self, width_mult: float = 1.0, dropout: float = 0.2, num_classes: int = 1000, in_chans: int = 3
    ) -> None:
        super().__init__()
        cin = make_divisible(V2_STEM * width_mult)
        last = make_divisible(V2_LAST * max(1.0, width_mult))
        layers: list[nn.Module] = [conv_bn_act(in_chans, cin, 3, 2, act=nn.ReLU6)]
        for t, c, n, s in V2_BLOCKS:
            cout = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        layers.append(conv_bn_act(cin, last, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), classifier(last, num_classes))
        self.num_features, self.num_classes = last, num_classes
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.classifier[0](F.adaptive_avg_pool2d(x, 1).flatten(1))
        return x if pre_logits else self.classifier[1](x)


def _init_weights(model: nn.Module) -> None:
    """torchvision's MobileNet initialisation: He (fan-out) convolutions, unit batch norms, small classifier."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


_MIN_REASON = "every convolution is padded, so even a 1x1 input survives the five stride-2 layers"

MOBILENET_V1 = Card(
    name="mobilenet_v1",
    family="MobileNet V1",
    paper="MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
    authors="Andrew G. Howard, Menglong Zhu, Bo Chen, Dmitry Kalenichenko, Weijun Wang, Tobias Weyand, "
    "Marco Andreetto, Hartwig Adam",
    year=2017,
    venue="arXiv",
    url="https://arxiv.org/abs/1704.04861",
    min_input_size=1,
    min_input_reason=_MIN_REASON,
    lecture="the lecture's tiny networks for mobile devices; for an efficient network (real-time, mobile) "
    "it advises: try MobileNets and ShuffleNets",
    deviations=(
        "Global pooling is adaptive (the paper's 7x7 average pool at 224 pixels). The resolution multiplier "
        "is the input size you feed: the paper's 224, 192, 160 and 128 pixels.",
        "Table 1 marks the second-to-last depthwise convolution 's2' on a 7x7 map; it has stride 1, as in "
        "the authors' code.",
    ),
)

MOBILENET_V2 = Card(
    name="mobilenet_v2",
    family="MobileNet V2",
    paper="MobileNetV2: Inverted Residuals and Linear Bottlenecks",
    authors="Mark Sandler, Andrew Howard, Menglong Zhu, Andrey Zhmoginov, Liang-Chieh Chen",
    year=2018,
    venue="CVPR",
    url="https://arxiv.org/abs/1801.04381",
    min_input_size=1,
    min_input_reason=_MIN_REASON + "; torchvision's min_size is 1 too",
    lecture="listed among the lecture's tiny networks for mobile devices (Sandler et al, CVPR 2018)",
    deviations=(
        "Global pooling is adaptive (the paper's 7x7 average pool at 224 pixels), so any input size works.",
        "Dropout 0.2 before the classifier, and a Linear instead of Table 2's final 1x1 convolution (the "
        "same map on a 1x1 input): torchvision's layout, so that its weights load.",
    ),
)


@register_model(MOBILENET_V1)
def mobilenet_v1(**kwargs: Any) -> MobileNetV1:
    return MobileNetV1(width_mult=1.0, **kwargs)


@register_model(MOBILENET_V1)
def mobilenet_v1_075(**kwargs: Any) -> MobileNetV1:
    return MobileNetV1(width_mult=0.75, **kwargs)


@register_model(MOBILENET_V1)
def mobilenet_v1_050(**kwargs: Any) -> MobileNetV1:
    return MobileNetV1(width_mult=0.5, **kwargs)


@register_model(MOBILENET_V1)
def mobilenet_v1_025(**kwargs: Any) -> MobileNetV1:
    return MobileNetV1(width_mult=0.25, **kwargs)


@register_model(MOBILENET_V2, torchvision="mobilenet_v2")
def mobilenet_v2(**kwargs: Any) -> MobileNetV2:
    return MobileNetV2(width_mult=1.0, **kwargs)


_V2_NARROW = ("Every width is rounded to a multiple of 8 (make_divisible), as the authors' TF-Slim code and "
              "torchvision do. pytorchcv's published MobileNetV2 x0.75/x0.5 truncate instead (int(c * alpha): "
              "2,627,592 and 1,964,736 parameters), add a 1x1 expansion to the t=1 first block and drop the "
              "classifier's bias, so their weights do not fit.",)


@register_model(MOBILENET_V2, deviations=_V2_NARROW)
def mobilenet_v2_050(**kwargs: Any) -> MobileNetV2:
    return MobileNetV2(width_mult=0.5, **kwargs)


@register_model(MOBILENET_V2, deviations=_V2_NARROW)
def mobilenet_v2_075(**kwargs: Any) -> MobileNetV2:
    return MobileNetV2(width_mult=0.75, **kwargs)


@register_model(MOBILENET_V2)
def mobilenet_v2_140(**kwargs: Any) -> MobileNetV2:
    return MobileNetV2(width_mult=1.4, **kwargs)
