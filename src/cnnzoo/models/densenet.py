"""DenseNet: every layer reads the concatenated feature maps of all the layers before it in its block.

Gao Huang, Zhuang Liu, Laurens van der Maaten, Kilian Q. Weinberger, "Densely Connected Convolutional
Networks", CVPR 2017, https://arxiv.org/abs/1608.06993.

Inside a dense block, layer l computes x_l = H_l([x_0, x_1, ..., x_{l-1}]), where [...] is concatenation
along channels and H_l is BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k): each layer adds only k ("growth rate")
channels, so a block of n layers fed c channels emits c + n*k. A ResNet adds a layer's output to its input;
a DenseNet keeps both, so later layers see early features unchanged and gradients reach them directly.
Between blocks a transition (BN-ReLU-Conv1x1-AvgPool 2x2/2) halves both the map and (compression theta=0.5)
the channels. These are the paper's ImageNet "DenseNet-BC" models, i.e. torchvision's, with its state_dict
keys; `model.load_state_dict` also takes the old torchvision files' keys (`norm.1` for `norm1`).

`memory_efficient=True` (Pleiss et al., "Memory-Efficient Implementation of DenseNets",
https://arxiv.org/abs/1707.06990) recomputes each layer's concatenation + BN + ReLU + 1x1 conv during the
backward pass instead of storing it, since those tensors grow quadratically with the block's depth. Outputs
and gradients are the same; unlike torchvision's, the recomputation does not update the batch-norm running
statistics a second time.

Deviations from the paper:
- Global pooling is adaptive (identical to the paper's 7x7 average pool at 224 pixels), so small inputs work.
"""
from __future__ import annotations

import contextlib
import re
from collections import OrderedDict
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .base import Card, ZooModel, classifier
from .registry import register_model

# Table 1 (ImageNet, DenseNet-BC): growth rate k, layers per dense block, width of the 7x7 stem (2k).
# Table 1's models all have k=32; DenseNet-161 (k=48) is one of the authors' released ImageNet models.
CFGS: dict[str, tuple[int, tuple[int, int, int, int], int]] = {
    "121": (32, (6, 12, 24, 16), 64),
    "161": (48, (6, 12, 36, 24), 96),
    "169": (32, (6, 12, 32, 32), 64),
    "201": (32, (6, 12, 48, 32), 64),
}
BN_SIZE = 4  # the 1x1 bottleneck is 4k wide ("DenseNet-B")

# Old torchvision weight files named the layers 'norm.1', 'relu.1', 'conv.1', 'norm.2', ...; the same pattern
# also renames the state_dict's per-module metadata entries, which end at the layer name.
_LEGACY_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12])((?:\.\w+)?)$")


def remap_legacy_densenet_keys(state_dict: Mapping[str, Any]) -> OrderedDict[str, Any]:
    """A copy of `state_dict` with old torchvision DenseNet keys renamed: `...denselayer1.norm.1.weight` ->
    `...denselayer1.norm1.weight`. Current keys pass through unchanged."""
    out = OrderedDict((_LEGACY_KEY.sub(r"\1\2\3", k), v) for k, v in state_dict.items())
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        out._metadata = OrderedDict((_LEGACY_KEY.sub(r"\1\2\3", k), v) for k, v in metadata.items())
    return out


def _load_legacy_keys(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """load_state_dict pre-hook: rename old keys in place, so that loading an old file just works."""
    for key in [k for k in state_dict if k.startswith(prefix) and _LEGACY_KEY.match(k)]:
        state_dict[_LEGACY_KEY.sub(r"\1\2\3", key)] = state_dict.pop(key)


class DenseLayer(nn.Module):
    """H_l: BN-ReLU-Conv1x1(bn_size*k) -> BN-ReLU-Conv3x3(k), applied to the concatenation of its inputs."""

    def __init__(
        self, cin: int, growth_rate: int, bn_size: int, drop_rate: float = 0.0, memory_efficient: bool = False
    ) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)
        self.drop_rate = float(drop_rate)
        self.memory_efficient = memory_efficient
        self._recomputing = False

    def bottleneck(self, *features: torch.Tensor) -> torch.Tensor:
        x = torch.cat(features, 1)
        bn = self.norm1
        if self._recomputing and bn.training:
            # The same batch statistics, but the running averages already moved once: update copies.
            stats = bn.running_mean.clone(), bn.running_var.clone()
            x = F.batch_norm(x, *stats, bn.weight, bn.bias, True, bn.momentum or 0.0, bn.eps)
        else:
            x = bn(x)
        return self.conv1(self.relu1(x))

    @contextlib.contextmanager
    def _recompute(self):
        self._recomputing = True
        try:
            yield
        finally:
            self._recomputing = False

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if self.memory_efficient and torch.is_grad_enabled() and any(f.requires_grad for f in features):
            # Store only the inputs (already kept by the block); rebuild the 4k-wide bottleneck when needed.
            x = checkpoint(
                self.bottleneck, *features, use_reentrant=False,
                context_fn=lambda: (contextlib.nullcontext(), self._recompute()),
            )
        else:
            x = self.bottleneck(*features)
        x = self.conv2(self.relu2(self.norm2(x)))
        return F.dropout(x, self.drop_rate, self.training) if self.drop_rate > 0 else x


class DenseBlock(nn.ModuleDict):
    """n dense layers; layer i reads cin + i*k channels, and the block emits cin + n*k."""

    def __init__(self, num_layers: int, cin: int, growth_rate: int, bn_size: int, **layer_kwargs: Any) -> None:
        super().__init__()
        for i in range(num_layers):
            self[f"denselayer{i + 1}"] = DenseLayer(cin + i * growth_rate, growth_rate, bn_size, **layer_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """Between blocks: BN-ReLU-Conv1x1 to theta*c channels, then 2x2 average pooling with stride 2."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(OrderedDict(
            norm=nn.BatchNorm2d(cin),
            relu=nn.ReLU(inplace=True),
            conv=nn.Conv2d(cin, cout, 1, bias=False),
            pool=nn.AvgPool2d(2, 2),
        ))


class DenseNet(ZooModel):
    """7x7/2 conv + 3x3/2 max pool, four dense blocks with transitions between them, BN, global pool, FC."""

    classifier_path = "classifier"

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: tuple[int, ...] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = BN_SIZE,
        drop_rate: float = 0.0,
        memory_efficient: bool = False,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(OrderedDict(
            conv0=nn.Conv2d(in_chans, num_init_features, 7, 2, 3, bias=False),
            norm0=nn.BatchNorm2d(num_init_features),
            relu0=nn.ReLU(inplace=True),
            pool0=nn.MaxPool2d(3, 2, 1),
        ))
        c = num_init_features
        for i, num_layers in enumerate(block_config, start=1):
            block = DenseBlock(
                num_layers, c, growth_rate, bn_size, drop_rate=drop_rate, memory_efficient=memory_efficient
            )
            self.features.add_module(f"denseblock{i}", block)
            c += num_layers * growth_rate
            if i < len(block_config):
                self.features.add_module(f"transition{i}", Transition(c, c // 2))  # compression 0.5
                c //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(c))  # the ReLU after it is in forward_features
        self.classifier = classifier(c, num_classes)
        self.num_features, self.num_classes = c, num_classes
        self.register_load_state_dict_pre_hook(_load_legacy_keys)

        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.features(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return x if pre_logits else self.classifier(x)


DENSENET = Card(
    name="densenet",
    family="DenseNet",
    paper="Densely Connected Convolutional Networks",
    authors="Gao Huang, Zhuang Liu, Laurens van der Maaten, Kilian Q. Weinberger",
    year=2017,
    venue="CVPR",
    url="https://arxiv.org/abs/1608.06993",
    min_input_size=29,
    min_input_reason="conv0 (7x7/2) and pool0 (3x3/2) must leave an 8x8 map for the three 2x2/2 transition "
    "pools, which takes 29 pixels; torchvision's min_size is 29 too",
    lecture="Densely connected: each layer receives the feature maps of all preceding layers "
    "(lecture's 'other architectures')",
    deviations=(
        "Global pooling is adaptive (the paper's 7x7 average pool at 224 pixels), so small inputs work.",
    ),
)


def _densenet(depth: str, **kwargs: Any) -> DenseNet:
    growth_rate, block_config, num_init_features = CFGS[depth]
    return DenseNet(growth_rate, block_config, num_init_features, **kwargs)


@register_model(DENSENET, torchvision="densenet121")
def densenet121(**kwargs: Any) -> DenseNet:
    return _densenet("121", **kwargs)


@register_model(
    DENSENET,
    torchvision="densenet161",
    deviations=("Not in the paper's Table 1 (k=32 throughout): the k=48 model with blocks (6, 12, 36, 24) "
                "is one of the authors' released ImageNet models (liuzhuang13/DenseNet), which torchvision "
                "ports.",),
)
def densenet161(**kwargs: Any) -> DenseNet:
    return _densenet("161", **kwargs)


@register_model(DENSENET, torchvision="densenet169")
def densenet169(**kwargs: Any) -> DenseNet:
    return _densenet("169", **kwargs)


@register_model(DENSENET, torchvision="densenet201")
def densenet201(**kwargs: Any) -> DenseNet:
    return _densenet("201", **kwargs)
