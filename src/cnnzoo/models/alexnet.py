"""AlexNet and ZFNet: five convolutions, three max pools, three fully connected layers.

Papers:
    Alex Krizhevsky, Ilya Sutskever, Geoffrey E. Hinton, "ImageNet Classification with Deep Convolutional
    Neural Networks", NIPS 2012.
    https://papers.nips.cc/paper/2012/hash/c399862d3b9d6b76c8436e924a68c45b-Abstract.html
    Alex Krizhevsky, "One weird trick for parallelizing convolutional neural networks", arXiv 2014.
    https://arxiv.org/abs/1404.5997 (the single-tower variant torchvision and the lecture call AlexNet)
    Matthew D. Zeiler, Rob Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014.
    https://arxiv.org/abs/1311.2901

Three networks share one class and differ only in their configuration row:
    alexnet       torchvision's and the lecture's AlexNet, the "One weird trick" single tower
                  (64-192-384-256-256 filters, no LRN); loads torchvision's weights unchanged.
    alexnet_2012  the 2012 paper's network: 96-256-384-384-256 filters, LRN after conv1 and conv2,
                  its two-GPU towers as groups=2 on conv2, conv4 and conv5, and its initialization.
    zfnet         the lecture's "bigger AlexNet": its AlexNet with conv1 7x7/2 and conv3-5 of 512-1024-512.

Deviations from the papers (each model's card lists its own):
    - An adaptive 6x6 average pool before fc6 (torchvision's), the identity for the AlexNets at 227, so
      that smaller inputs still reach fc6; zfnet's conv2 keeps stride 1, so at 224 it averages a 12x12 map.
    - The 2012 paper says 224x224 inputs, but its unpadded 11x11/4 conv1 needs 227 to give the 55x55
      maps it reports; the lecture therefore uses 227.
    - alexnet keeps torchvision's quirks: conv4 has 256 filters (the "One weird trick" footnote says 384),
      and dropout sits before fc6 and fc7 rather than after them.
    - zfnet is the lecture's recipe applied to its AlexNet, not the ZF paper's 96-256-384-384-256 network
      with stride-2 conv2 and contrast normalization.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
from torch import nn

from .base import Card, ZooModel, classifier
from .registry import register_model

ALEXNET_CARD = Card(
    name="alexnet",
    family="AlexNet",
    paper="ImageNet Classification with Deep Convolutional Neural Networks",
    authors="Alex Krizhevsky, Ilya Sutskever, Geoffrey E. Hinton",
    year=2012,
    venue="NIPS",
    url="https://papers.nips.cc/paper/2012/hash/c399862d3b9d6b76c8436e924a68c45b-Abstract.html",
    input_size=227,
    lecture="ILSVRC 2012 winner, top-5 error 16.4%",
    deviations=(
        "Default input is 227x227, the lecture's: the 2012 paper says 224, but 227 is what its arithmetic needs "
        "(the unpadded 11x11 stride-4 conv1 maps 227 to the paper's 55x55, and 224 to 54.25).",
        "An adaptive 6x6 average pool before fc6 (torchvision's; the identity at the default input size) lets "
        "smaller inputs reach the fully connected layers.",
    ),
)

ZFNET_CARD = dataclasses.replace(
    ALEXNET_CARD,
    family="ZFNet",
    paper="Visualizing and Understanding Convolutional Networks",
    authors="Matthew D. Zeiler, Rob Fergus",
    year=2014,
    venue="ECCV",
    url="https://arxiv.org/abs/1311.2901",
    input_size=224,
    lecture="ILSVRC 2013 winner: top-5 error 16.4% -> 11.7%",
    deviations=(),
)


class Conv(NamedTuple):
    """One row of the table: conv + ReLU, then optionally LRN, then optionally a 3x3/2 max pool."""

    width: int
    kernel: int
    stride: int
    pad: int
    groups: int = 1  # 2 = the 2012 paper's two GPU towers, each seeing only its own half of the input
    lrn: bool = False
    pool: bool = False


@dataclasses.dataclass(frozen=True)
class AlexNetConfig:
    convs: tuple[Conv, ...]
    dropout_after_fc: bool = False  # the paper (and Caffe) drop fc6/fc7's outputs; torchvision drops their inputs
    paper_init: bool = False  # N(0, 0.01) weights, biases 1 in conv2, conv4, conv5, fc6, fc7 (paper, section 5)
    ceil_pool: bool = False  # pools round up (Caffe's rule), as ZFNet's published 110 -> 55 -> 26 -> 13 -> 6 need
    lrn_alpha: float = 1e-4  # the paper's alpha (PyTorch's LRN divides it by n, so it enters as n * alpha)


CFGS: dict[str, AlexNetConfig] = {
    #                       width kernel stride pad groups  LRN    pool
    "alexnet": AlexNetConfig((
        Conv(64,   11,    4,   2,   1,    False, True),
        Conv(192,   5,    1,   2,   1,    False, True),
        Conv(384,   3,    1,   1,   1,    False, False),
        Conv(256,   3,    1,   1,   1,    False, False),
        Conv(256,   3,    1,   1,   1,    False, True),
    )),
    "alexnet_2012": AlexNetConfig((
        Conv(96,   11,    4,   0,   1,    True,  True),
        Conv(256,   5,    1,   2,   2,    True,  True),
        Conv(384,   3,    1,   1,   1,    False, False),  # conv3 reads both towers
        Conv(384,   3,    1,   1,   2,    False, False),
        Conv(256,   3,    1,   1,   2,    False, True),
    ), dropout_after_fc=True, paper_init=True),
    "zfnet": AlexNetConfig((
        Conv(64,    7,    2,   1,   1,    False, True),  # ZF paper: 11x11/4 -> 7x7/2, pad 1 gives its 110x110
        Conv(192,   5,    1,   2,   1,    False, True),
        Conv(512,   3,    1,   1,   1,    False, False),
        Conv(1024,  3,    1,   1,   1,    False, False),
        Conv(512,   3,    1,   1,   1,    False, True),
    )),
    # ZF's Fig. 3 network, and its wider conv3-5 variant (section 5), as published with weights (pytorchcv's
    # zfnet, zfnetb): the paper gives no LRN constants; these are its published weights' (n * alpha = 1e-4).
    "zfnet_paper": AlexNetConfig((
        Conv(96,    7,    2,   1,   1,    True,  True),
        Conv(256,   5,    2,   0,   1,    True,  True),
        Conv(384,   3,    1,   1,   1,    False, False),
        Conv(384,   3,    1,   1,   1,    False, False),
        Conv(256,   3,    1,   1,   1,    False, True),
    ), dropout_after_fc=True, ceil_pool=True, lrn_alpha=1e-4 / 5),
    "zfnet_paper_wide": AlexNetConfig((
        Conv(96,    7,    2,   1,   1,    True,  True),
        Conv(256,   5,    2,   0,   1,    True,  True),
        Conv(512,   3,    1,   1,   1,    False, False),
        Conv(1024,  3,    1,   1,   1,    False, False),
        Conv(512,   3,    1,   1,   1,    False, True),
    ), dropout_after_fc=True, ceil_pool=True, lrn_alpha=1e-4 / 5),
}


def local_response_norm(alpha: float = 1e-4) -> nn.LocalResponseNorm:
    """The 2012 paper's local response normalization across channels (section 3.3):

        b_i = a_i / (k + alpha * sum_{|j - i| <= n/2} a_j^2)^beta,   n=5, k=2, alpha=1e-4, beta=0.75.

    PyTorch (like Caffe) divides alpha by n, so the paper's alpha enters as n * alpha. Caffe's reference
    AlexNet kept alpha=1e-4 in that divided convention, and k=1: a weaker normalization than the paper's.
    """
    return nn.LocalResponseNorm(size=5, alpha=5 * alpha, beta=0.75, k=2.0)


def make_features(cfg: AlexNetConfig, in_chans: int) -> nn.Sequential:
    """The convolutional trunk as torchvision lays it out, conv, ReLU[, LRN][, pool], so indices match."""
    layers: list[nn.Module] = []
    for c in cfg.convs:
        layers += [nn.Conv2d(in_chans, c.width, c.kernel, c.stride, c.pad, groups=c.groups), nn.ReLU(inplace=True)]
        if c.lrn:  # after the ReLU, as the paper's section 3.3 says
            layers.append(local_response_norm(cfg.lrn_alpha))
        if c.pool:  # 3x3 windows at stride 2 overlap, which the paper found to overfit less than 2x2/2
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=cfg.ceil_pool))
        in_chans = c.width
    return nn.Sequential(*layers)


class AlexNet(ZooModel):
    """features -> adaptive 6x6 average pool -> fc6 (4096) -> fc7 (4096) -> fc8, dropout 0.5 around fc6 and fc7."""

    classifier_path = "classifier.6"

    def __init__(
        self, cfg: AlexNetConfig, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.num_classes, self.num_features = num_classes, 4096
        self.features = make_features(cfg, in_chans)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        flat = cfg.convs[-1].width * 6 * 6
        if cfg.dropout_after_fc:
            hidden = [nn.Linear(flat, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
                      nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        else:
            hidden = [nn.Dropout(dropout), nn.Linear(flat, 4096), nn.ReLU(inplace=True),
                      nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True)]
        self.classifier = nn.Sequential(*hidden, classifier(4096, num_classes))
        if cfg.paper_init:
            self._init_as_paper()

    def _init_as_paper(self) -> None:
        # Unit biases in conv2, conv4, conv5, fc6, fc7 give the ReLUs positive inputs early in training.
        layers = [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        for i, m in enumerate(layers):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.constant_(m.bias, 1.0 if i in (1, 3, 4, 5, 6) else 0.0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.classifier[:-1](torch.flatten(self.avgpool(x), 1))
        return x if pre_logits else self.classifier[-1](x)


@register_model(
    ALEXNET_CARD,
    torchvision="alexnet",
    min_input_size=63,
    min_input_reason="pool5 needs a 3x3 map: conv1 (11x11, stride 4, pad 2) and two 3x3/2 pools need 63 pixels",
    deviations=(
        "This is the single-tower variant of Krizhevsky's \"One weird trick\" (arXiv 1404.5997, 2014), as "
        "torchvision ships it: 64-192-384-256-256 filters instead of 96-256-384-384-256, no two-GPU grouping, no "
        "local response normalization, and conv1 padded by 2 (so 227 gives the lecture's 56x56 conv1 map, and "
        "224 and 227 both give 6x6 maps at pool5). Its conv4 "
        "has 256 filters where that paper's footnote says 384 (torchvision followed cuda-convnet2's one-GPU "
        "config; pytorch/vision#463). alexnet_2012 is the 2012 network.",
        "Dropout acts on the inputs of fc6 and fc7, not on their outputs as in the paper (torchvision's order, "
        "pytorch/vision#549); PyTorch's default initialization instead of the paper's.",
    ),
)
def alexnet(**kwargs) -> AlexNet:
    return AlexNet(CFGS["alexnet"], **kwargs)


@register_model(
    ALEXNET_CARD,
    lecture="ILSVRC 2012 winner, top-5 error 16.4% (the lecture's AlexNet table shows the variant `alexnet`)",
    min_input_size=67,
    min_input_reason="pool5 needs a 3x3 map: conv1 (11x11, stride 4, unpadded) and two 3x3/2 pools need 67 pixels",
    deviations=(
        "The two-GPU towers are grouped convolutions (groups=2 on conv2, conv4, conv5, as in Caffe's reference "
        "model), so the model runs on one device; the LRNs after conv1 and conv2 normalize across the towers' "
        "boundary, which the paper's per-GPU LRNs did not. Grouping halves the conv2/4/5 weights: 60,965,224 "
        "parameters (the paper's \"60 million\"), where pytorchcv's ungrouped alexnet has 62,378,344.",
    ),
)
def alexnet_2012(**kwargs) -> AlexNet:
    return AlexNet(CFGS["alexnet_2012"], **kwargs)


@register_model(
    ZFNET_CARD,
    min_input_size=33,
    min_input_reason="pool5 needs a 3x3 map: conv1 (7x7, stride 2, pad 1) and two 3x3/2 pools need 33 pixels",
    deviations=(
        "The lecture's ZFNet: its AlexNet (torchvision's: 64 and 192 filters in conv1 and conv2, conv2 5x5 "
        "stride 1, no LRN) with conv1 7x7 stride 2 and conv3-5 of 512, 1024, 512 filters; 107,020,712 parameters.",
        "The ZF paper's network differs: conv1 has 96 7x7/2 filters and conv2 256 5x5 filters at stride 2 (so "
        "conv3-5 see 13x13 maps at 224, not 26x26), both followed by contrast normalization and 3x3/2 pools; its "
        "main model keeps AlexNet's 384-384-256 in conv3-5 and 512-1024-512 is a larger variant it also trains "
        "(pytorchcv's zfnet and zfnetb: 62,357,608 and 107,627,624 parameters).",
        "The lecture's 11.7% is the ILSVRC 2013 winning entry (Clarifai, Zeiler's ensemble of such networks).",
        "Because conv2 keeps stride 1, pool5's map is 12x12 at 224 (6x6 only for inputs of 113 to 128), and the "
        "adaptive 6x6 average pool of the lecture's AlexNet averages it in 2x2 blocks before fc6. PyTorch's "
        "default initialization instead of the paper's.",
    ),
)
def zfnet(**kwargs) -> AlexNet:
    return AlexNet(CFGS["zfnet"], **kwargs)


_ZF_PAPER = (
    "LRN after conv1 and conv2 with size 5, k 2, beta 0.75 and alpha 2e-5 (1e-4 / n): the paper names contrast "
    "normalization but no constants; these are the ones its published weights (pytorchcv's zfnet) were trained "
    "with.",
    "Pools round up (Caffe's rule), which the paper's map sizes need: 224 -> 110 -> 55 -> 26 -> 13 -> 13 -> 6. "
    "An adaptive 6x6 average pool before fc6 (the identity at 224) lets other sizes reach the classifier.",
    "Dropout acts on the outputs of fc6 and fc7, as in AlexNet's paper; PyTorch's default initialization.",
)


@register_model(
    ZFNET_CARD,
    lecture="ILSVRC 2013 winner: top-5 error 16.4% -> 11.7% (the lecture's table shows its `zfnet` reading)",
    min_input_size=47,
    min_input_reason="conv2 (5x5, stride 2, unpadded) needs a 5x5 map, which conv1 (7x7/2) and a round-up 3x3/2 "
                     "pool leave from 47 pixels",
    deviations=("The paper's Fig. 3 network: 96 7x7/2 filters, 256 5x5/2, then AlexNet's 384-384-256; "
                "62,357,608 parameters.",) + _ZF_PAPER,
)
def zfnet_paper(**kwargs) -> AlexNet:
    return AlexNet(CFGS["zfnet_paper"], **kwargs)


@register_model(
    ZFNET_CARD,
    lecture="The lecture's 'CONV3,4,5: 512, 1024, 512 filters', on the paper's network (its section 5 variant)",
    min_input_size=47,
    min_input_reason="conv2 (5x5, stride 2, unpadded) needs a 5x5 map, which conv1 (7x7/2) and a round-up 3x3/2 "
                     "pool leave from 47 pixels",
    deviations=("The paper's Fig. 3 network with conv3-5 of 512, 1024 and 512 filters (pytorchcv's zfnetb); "
                "107,627,624 parameters.",) + _ZF_PAPER,
)
def zfnet_paper_wide(**kwargs) -> AlexNet:
    return AlexNet(CFGS["zfnet_paper_wide"], **kwargs)
