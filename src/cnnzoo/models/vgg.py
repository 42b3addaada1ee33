"""VGG: stacks of 3x3 convolutions, a 2x2 max pool after each of five stages, three fully connected layers.

Paper:
    Karen Simonyan, Andrew Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
    ICLR 2015. https://arxiv.org/abs/1409.1556

`CFGS` is the paper's Table 1, all six columns: A (vgg11), A-LRN (vgg11_lrn), B (vgg13), C (vgg16_c),
D (vgg16) and E (vgg19). The A, B, D, E models are torchvision's and load its weights unchanged.

Deviations from the paper (each model's card lists its own):
    - An adaptive 7x7 average pool before the first fully connected layer (torchvision's), the identity at
      224x224, so that inputs down to 32x32 work. The paper instead evaluates larger test images densely,
      turning the fully connected layers into 7x7 and 1x1 convolutions.
    - torchvision's initialization (Kaiming-normal convolutions, N(0, 0.01) linear layers, zero biases).
      The paper trained A from N(0, 0.01) weights and started the deeper nets from A's trained layers,
      noting afterwards that Glorot initialization works without that pre-training.
    - The _bn variants are torchvision's addition: batch norm (Ioffe & Szegedy, 2015, after this paper)
      between every convolution and its ReLU.
"""
from __future__ import annotations

import torch
from torch import nn

from .alexnet import local_response_norm
from .base import Card, ZooModel, classifier
from .registry import register_model

VGG_CARD = Card(
    name="vgg",
    family="VGG",
    paper="Very Deep Convolutional Networks for Large-Scale Image Recognition",
    authors="Karen Simonyan, Andrew Zisserman",
    year=2015,
    venue="ICLR",
    url="https://arxiv.org/abs/1409.1556",
    input_size=224,
    min_input_size=32,
    min_input_reason="five 2x2/2 max pools need at least 32 pixels; 31 leaves nothing after the fifth",
    deviations=(
        "An adaptive 7x7 average pool before fc6 (torchvision's; the identity at 224) lets inputs down to 32 "
        "work; the paper evaluates large images densely, with the fully connected layers as convolutions.",
        "torchvision's initialization (Kaiming-normal convolutions, N(0, 0.01) linear layers) instead of "
        "the paper's N(0, 0.01) weights with the deeper nets started from the trained configuration A.",
    ),
)
BN_DEVIATION = (
    "Batch norm between every convolution and its ReLU is torchvision's addition: the paper has none "
    "(batch norm was published after it).",
)

Layer = int | tuple[int, int] | str

# Table 1 of the paper, one list per column: an int is conv3-<width>, (1, w) is conv1-<w> (a 1x1 convolution,
# column C's extra non-linearity), "LRN" is AlexNet's local response normalization, "M" a 2x2/2 max pool.
CFGS: dict[str, list[Layer]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, (1, 256), "M", 512, 512, (1, 512), "M", 512, 512, (1, 512), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_layers(cfg: list[Layer], batch_norm: bool = False, in_chans: int = 3) -> nn.Sequential:
    """The `features` trunk of one Table 1 column; every convolution keeps its map's size (stride 1, same pad)."""
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        elif v == "LRN":
            layers.append(local_response_norm())
        else:
            kernel, width = v if isinstance(v, tuple) else (3, v)
            conv = nn.Conv2d(in_chans, width, kernel, padding=kernel // 2)
            layers += [conv, nn.BatchNorm2d(width)] if batch_norm else [conv]
            layers.append(nn.ReLU(inplace=True))
            in_chans = width
    return nn.Sequential(*layers)


class VGG(ZooModel):
    """features -> adaptive 7x7 average pool -> FC-4096 -> FC-4096 -> FC-classes, dropout after each FC-4096."""

    classifier_path = "classifier.6"

    def __init__(
        self,
        cfg: list[Layer],
        batch_norm: bool = False,
        num_classes: int = 1000,
        in_chans: int = 3,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.num_classes, self.num_features = num_classes, 4096
        self.features = make_layers(cfg, batch_norm, in_chans)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            classifier(4096, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # fan_out keeps the backward signal's variance through deep ReLU stacks
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.classifier[:-1](torch.flatten(self.avgpool(x), 1))
        return x if pre_logits else self.classifier[-1](x)


@register_model(VGG_CARD, torchvision="vgg11", lecture="column A of the lecture's VGG table (11 weight layers)")
def vgg11(**kwargs) -> VGG:
    return VGG(CFGS["A"], **kwargs)


@register_model(VGG_CARD, torchvision="vgg11_bn", deviations=BN_DEVIATION)
def vgg11_bn(**kwargs) -> VGG:
    return VGG(CFGS["A"], batch_norm=True, **kwargs)


@register_model(
    VGG_CARD,
    lecture="column A-LRN of the lecture's VGG table (11 weight layers, LRN after the first convolution)",
    deviations=(
        "LRN with AlexNet's constants in AlexNet's formula (n=5, k=2, alpha=1e-4, beta=0.75), after the first "
        "ReLU; the paper says only that it follows Krizhevsky et al. 2012, and found it does not help.",
    ),
)
def vgg11_lrn(**kwargs) -> VGG:
    return VGG(CFGS["A-LRN"], **kwargs)


@register_model(VGG_CARD, torchvision="vgg13", lecture="column B of the lecture's VGG table (13 weight layers)")
def vgg13(**kwargs) -> VGG:
    return VGG(CFGS["B"], **kwargs)


@register_model(VGG_CARD, torchvision="vgg13_bn", deviations=BN_DEVIATION)
def vgg13_bn(**kwargs) -> VGG:
    return VGG(CFGS["B"], batch_norm=True, **kwargs)


@register_model(
    VGG_CARD, lecture="column C of the lecture's VGG table (16 weight layers, three of them 1x1 convolutions)"
)
def vgg16_c(**kwargs) -> VGG:
    return VGG(CFGS["C"], **kwargs)


@register_model(
    VGG_CARD,
    torchvision="vgg16",
    lecture="ImageNet top-5 error 9.62% (torchvision single crop, lecture's ResNet comparison); 2014 runner-up",
)
def vgg16(**kwargs) -> VGG:
    return VGG(CFGS["D"], **kwargs)


@register_model(VGG_CARD, torchvision="vgg16_bn", deviations=BN_DEVIATION)
def vgg16_bn(**kwargs) -> VGG:
    return VGG(CFGS["D"], batch_norm=True, **kwargs)


@register_model(VGG_CARD, torchvision="vgg19", lecture="column E of the lecture's VGG table (19 weight layers)")
def vgg19(**kwargs) -> VGG:
    return VGG(CFGS["E"], **kwargs)


@register_model(VGG_CARD, torchvision="vgg19_bn", deviations=BN_DEVIATION)
def vgg19_bn(**kwargs) -> VGG:
    return VGG(CFGS["E"], batch_norm=True, **kwargs)
