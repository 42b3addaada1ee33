"""GoogLeNet (Inception v1): Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke and Rabinovich,
"Going deeper with convolutions", CVPR 2015, https://arxiv.org/abs/1409.4842.

The network is an aggressive stem (224 -> 28 pixels in five layers), nine inception modules of four parallel
branches (1x1; 1x1 -> 3x3; 1x1 -> 5x5; 3x3 max pool -> 1x1) whose outputs are concatenated along channels,
global average pooling and one linear layer. Two auxiliary classifiers on inception 4a and 4d add their loss
(weighted 0.3) during training and are dropped at inference.

Two variants:
- `googlenet`: torchvision's, whose state_dict loads unchanged. Deviations from the paper: batch norm
  (eps 0.001) after every bias-free convolution and no LRN; the "5x5" branch is a 3x3 convolution
  (pytorch/vision#906); maxpool4 is 2x2/2 rather than 3x3/2; the auxiliary heads pool adaptively to 4x4;
  main-head dropout 0.2 rather than 0.4. torchvision's `transform_input` is left out (see the card).
- `googlenet_paper`: Table 1 and Section 5 as written, with the LRN layers of Figure 3 (parameters from
  Caffe's bvlc_googlenet replication, which the paper's authors helped with) and Caffe's initialisation,
  since the paper gives neither. One deviation: the auxiliary heads' 5x5/3 average pool falls back to
  adaptive 4x4 pooling when the map is not 14-16 pixels wide, so that inputs far from 224 pixels work.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .base import Card, ZooModel, classifier
from .registry import register_model

# Table 1 of the paper, one row per inception module: the module's input channels, then the paper's
# columns #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj. Output channels = #1x1 + #3x3 + #5x5 + proj.
INCEPTION_CFG: dict[str, tuple[int, int, int, int, int, int, int]] = {
    #                 in  1x1  3x3red  3x3  5x5red  5x5  proj      output at 224
    "inception3a": (192,  64,    96,  128,    16,   32,   32),  # 28x28x256
    "inception3b": (256, 128,   128,  192,    32,   96,   64),  # 28x28x480
    "inception4a": (480, 192,    96,  208,    16,   48,   64),  # 14x14x512
    "inception4b": (512, 160,   112,  224,    24,   64,   64),  # 14x14x512
    "inception4c": (512, 128,   128,  256,    24,   64,   64),  # 14x14x512
    "inception4d": (512, 112,   144,  288,    32,   64,   64),  # 14x14x528
    "inception4e": (528, 256,   160,  320,    32,  128,  128),  # 14x14x832
    "inception5a": (832, 256,   160,  320,    32,  128,  128),  # 7x7x832
    "inception5b": (832, 384,   192,  384,    48,  128,  128),  # 7x7x1024
}
MAXPOOL_BEFORE = {"inception4a": "maxpool3", "inception5a": "maxpool4"}  # Table 1's 3x3/2 pools between stages
AUX_AFTER = {"inception4a": "aux1", "inception4d": "aux2"}  # Section 5: heads on the 4a and 4d outputs
AUX_LOSS_WEIGHT = 0.3  # Section 5: "their loss gets added to the total loss ... with a discount weight"

GOOGLENET = Card(
    name="googlenet",
    family="GoogLeNet",
    paper="Going deeper with convolutions",
    authors="Christian Szegedy, Wei Liu, Yangqing Jia, Pierre Sermanet, Scott Reed, Dragomir Anguelov, "
    "Dumitru Erhan, Vincent Vanhoucke, Andrew Rabinovich",
    year=2015,
    venue="CVPR",
    url="https://arxiv.org/abs/1409.4842",
    lecture="ILSVRC 2014 winner, top-5 error 6.7%; aggressive stem (224 -> 28 with 124K params; the slide's 418 MFLOP is 481 by its own rows, docs/lecture-errata.md E7); "
    "global average pooling; auxiliary classifiers",
)


class GoogLeNetOutputs(NamedTuple):
    """Training-mode output, in the paper's order: aux1 is the head on inception 4a, aux2 on 4d.

    (torchvision's GoogLeNetOutputs is (logits, aux_logits2, aux_logits1).)
    """

    logits: torch.Tensor
    aux1: torch.Tensor
    aux2: torch.Tensor


class BasicConv2d(nn.Module):
    """conv -> (batch norm) -> ReLU; with batch norm the conv drops its bias, which the norm's shift replaces."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 batch_norm: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, padding, bias=not batch_norm)
        self.bn = nn.BatchNorm2d(cout, eps=0.001) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """Four branches over the same input, concatenated: y = [1x1(x), 3x3(1x1(x)), 5x5(1x1(x)), 1x1(pool(x))].

    The 1x1 "reduce" convolutions are the bottlenecks that keep the 3x3 and 5x5 branches cheap; the pool
    branch's 1x1 "projection" keeps the concatenation from growing by the whole input width.
    """

    def __init__(self, cin: int, c1: int, c3red: int, c3: int, c5red: int, c5: int, proj: int,
                 k5: int = 5, batch_norm: bool = True) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(cin, c1, 1, batch_norm=batch_norm)
        self.branch2 = nn.Sequential(BasicConv2d(cin, c3red, 1, batch_norm=batch_norm),
                                     BasicConv2d(c3red, c3, 3, padding=1, batch_norm=batch_norm))
        self.branch3 = nn.Sequential(BasicConv2d(cin, c5red, 1, batch_norm=batch_norm),
                                     BasicConv2d(c5red, c5, k5, padding=k5 // 2, batch_norm=batch_norm))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(cin, proj, 1, batch_norm=batch_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier (Section 5): avg pool to 4x4 -> 1x1 conv 128 + ReLU -> FC 1024 + ReLU -> dropout
    0.7 -> linear. With `paper_pool` the pool is the paper's 5x5/3 wherever that gives 4x4 (maps 14-16 wide,
    e.g. 14 at 224 pixels), else adaptive; torchvision always pools adaptively."""

    def __init__(self, cin: int, num_classes: int, dropout: float = 0.7, batch_norm: bool = True,
                 paper_pool: bool = False) -> None:
        super().__init__()
        self.paper_pool = paper_pool
        self.conv = BasicConv2d(cin, 128, 1, batch_norm=batch_norm)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = classifier(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.paper_pool and all(14 <= s <= 16 for s in x.shape[-2:]):
            x = F.avg_pool2d(x, 5, stride=3)
        else:
            x = F.adaptive_avg_pool2d(x, 4)
        x = torch.flatten(self.conv(x), 1)
        return self.fc2(self.dropout(F.relu(self.fc1(x), inplace=True)))


class GoogLeNet(ZooModel):
    """GoogLeNet: stem -> inception 3a-3b -> pool -> 4a-4e -> pool -> 5a-5b -> global avg pool -> dropout -> fc.

    In training mode (with `aux_logits`) `forward` returns `GoogLeNetOutputs(logits, aux1, aux2)`; the trainer
    minimises `loss(logits) + AUX_LOSS_WEIGHT * (loss(aux1) + loss(aux2))`, the paper's 0.3 discount. In eval
    mode it returns the logits alone. `aux_logits=False` builds no auxiliary heads at all.

    `paper=False` is torchvision's variant (batch norm, 3x3 "5x5" branch, 2x2 maxpool4, dropout 0.2);
    `paper=True` is the paper's (5x5 branch, LRN in the stem, conv biases, 3x3 maxpool4, dropout 0.4).
    """

    classifier_path = "fc"

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, aux_logits: bool = True, paper: bool = False,
                 dropout: float | None = None, dropout_aux: float = 0.7) -> None:
        super().__init__()
        bn = not paper
        self.num_classes, self.num_features = num_classes, 1024
        # Every max pool rounds up (Caffe's convention, kept by torchvision): 112 -> 56 -> 28 -> 14 -> 7.
        self.conv1 = BasicConv2d(in_chans, 64, 7, stride=2, padding=3, batch_norm=bn)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        # Caffe's LRN divides alpha by the window size, as nn.LocalResponseNorm does.
        self.lrn1 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75) if paper else nn.Identity()
        self.conv2 = BasicConv2d(64, 64, 1, batch_norm=bn)  # Table 1's "#3x3 reduce" of the stem
        self.conv3 = BasicConv2d(64, 192, 3, padding=1, batch_norm=bn)
        self.lrn2 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75) if paper else nn.Identity()
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        # The modules keep torchvision's top-level names; a plain list of them gives the forward order.
        self.blocks: list[str] = []
        for name, cfg in INCEPTION_CFG.items():
            if name in MAXPOOL_BEFORE:
                pool = MAXPOOL_BEFORE[name]
                k = 2 if pool == "maxpool4" and not paper else 3  # torchvision's maxpool4 is 2x2/2: also 14 -> 7
                self.add_module(pool, nn.MaxPool2d(k, stride=2, ceil_mode=True))
                self.blocks.append(pool)
            self.add_module(name, Inception(*cfg, k5=5 if paper else 3, batch_norm=bn))
            self.blocks.append(name)

        self.aux1: InceptionAux | None = None
        self.aux2: InceptionAux | None = None
        if aux_logits:
            for block, aux in AUX_AFTER.items():
                cout = sum(INCEPTION_CFG[block][i] for i in (1, 3, 5, 6))  # #1x1 + #3x3 + #5x5 + proj
                setattr(self, aux, InceptionAux(cout, num_classes, dropout_aux, batch_norm=bn, paper_pool=paper))

        self.avgpool = nn.AdaptiveAvgPool2d(1)  # global average pooling: no big FC layers (Section 5)
        self.dropout = nn.Dropout((0.4 if paper else 0.2) if dropout is None else dropout)
        self.fc = classifier(1024, num_classes)
        self._init_weights(paper)

    def _init_weights(self, paper: bool) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and paper:
                nn.init.kaiming_uniform_(m.weight, a=1)  # Caffe's "xavier" filler: U(+-sqrt(3 / fan_in))
                nn.init.constant_(m.bias, 0.2)  # bvlc_googlenet's bias on every hidden layer
            elif isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)  # torchvision's
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if paper:  # the three classifiers start unbiased
            for head in (self.fc, getattr(self.aux1, "fc2", None), getattr(self.aux2, "fc2", None)):
                if isinstance(head, nn.Linear):
                    nn.init.zeros_(head.bias)

    def _forward_features(self, x: torch.Tensor, aux: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.lrn2(self.conv3(self.conv2(self.lrn1(x)))))
        aux_out = []
        for name in self.blocks:
            x = getattr(self, name)(x)
            if aux and name in AUX_AFTER:
                aux_out.append(getattr(self, AUX_AFTER[name])(x))
        return x, aux_out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward_features(x, aux=False)[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.dropout(torch.flatten(self.avgpool(x), 1))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:
        # Aux heads run before the main head, so dropout masks are drawn in torchvision's order.
        x, aux = self._forward_features(x, aux=self.training and self.aux1 is not None)
        x = self.forward_head(x)
        return GoogLeNetOutputs(x, *aux) if aux else x

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        for aux in (self.aux1, self.aux2):
            if aux is not None:
                aux.fc2 = classifier(1024, num_classes)


@register_model(
    GOOGLENET,
    torchvision="googlenet",
    min_input_size=15,
    min_input_reason="maxpool3 (3x3/2, ceil mode) needs a 2x2 map: conv1 (7x7/2) and maxpool1-2 (3x3/2, ceil "
    "mode) take 15 pixels to 8, 4, 2 (torchvision's min_size)",
    deviations=(
        "Batch norm (eps 0.001) after every convolution, which drops its bias; no local response normalization "
        "(torchvision's BasicConv2d). The paper predates batch norm.",
        "The \"5x5\" branch of every inception module is a 3x3 convolution (pytorch/vision#906, kept for its "
        "pretrained weights): 6,624,904 parameters without the auxiliary heads, not the paper's ~6.8M.",
        "maxpool4 (between inception 4e and 5a) is 2x2/2, not the paper's 3x3/2; both give 7x7 at 224.",
        "The auxiliary heads pool adaptively to 4x4 instead of the paper's 5x5/3 average pool: the same 4x4x512 "
        "and 4x4x528 at 224, but over 4x4 windows at offsets 0, 3, 7, 10 rather than 5x5 windows at 0, 3, 6, 9.",
        "Dropout 0.2 before the last layer instead of the paper's 0.4; the auxiliary heads keep the paper's 0.7.",
        "No `transform_input`: the model takes ImageNet-normalised input. torchvision's pretrained googlenet "
        "(ported from the paper's Caffe model) turns transform_input on, which maps that input to "
        "(x - 0.5) / 0.5 per channel; with those weights, normalise with mean = std = 0.5 instead.",
        "Training-mode output is GoogLeNetOutputs(logits, aux1, aux2) in the paper's order (aux1 on inception "
        "4a); torchvision's is (logits, aux_logits2, aux_logits1).",
    ),
)
def googlenet(**kwargs) -> GoogLeNet:
    return GoogLeNet(**kwargs)


@register_model(
    GOOGLENET,
    min_input_size=31,
    min_input_reason="maxpool4 (3x3/2, ceil mode) needs a 2x2 map: conv1 (7x7/2) and maxpool1-3 (3x3/2, ceil "
    "mode) take 31 pixels to 16, 8, 4, 2",
    deviations=(
        "The auxiliary heads' 5x5/3 average pool is the paper's only where it yields the 4x4 map their FC layer "
        "expects (maps 14-16 pixels wide, from inputs of 223-270 pixels; 14 at 224); elsewhere they pool "
        "adaptively to 4x4 so that smaller inputs train.",
        "Figure 3's two LocalRespNorm layers (after maxpool1 and after the stem's 3x3 conv) take Caffe's "
        "bvlc_googlenet parameters (size 5, alpha 1e-4, beta 0.75, k 1), and the initialisation is also "
        "bvlc_googlenet's (\"xavier\" weights, biases 0.2): the paper specifies neither.",
    ),
)
def googlenet_paper(**kwargs) -> GoogLeNet:
    return GoogLeNet(paper=True, **kwargs)
