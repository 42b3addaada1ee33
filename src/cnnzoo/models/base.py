"""What every cnnzoo model shares: its card and the uniform classifier interface (timm's, without the flags)."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..catalog import format_card


@dataclasses.dataclass(frozen=True)
class Card:
    """Where a model comes from and how it differs from its paper."""

    name: str
    family: str
    paper: str
    authors: str
    year: int
    venue: str
    url: str
    input_size: int = 224  # the size the paper (or the lecture, for AlexNet's 227) feeds it
    min_input_size: int = 32  # the smallest square input a forward pass accepts
    min_input_reason: str = "global average pooling accepts any map size, and 32 pixels survive every stride"
    lecture: str = ""  # what the lecture reports for it (ILSVRC result, table figure), if anything
    torchvision: str | None = None  # torchvision builder whose state_dict this model loads unchanged
    deviations: tuple[str, ...] = ()

    def __str__(self) -> str:
        return format_card(dataclasses.asdict(self))


class ZooModel(nn.Module):
    """A classifier split timm's way: `forward(x) = forward_head(forward_features(x))`.

    Subclasses define `forward_features` (the last feature map, before pooling) and `forward_head`
    (pooling, then everything up to the logits; `pre_logits=True` stops just before the last linear
    layer, which is the lecture's "off-the-shelf feature"). They set `num_features` (the width the last
    linear layer reads) and `classifier_path` (its dotted name), and the rest comes from here.
    """

    card: Card
    classifier_path: str = "fc"
    num_features: int
    num_classes: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.get_submodule(self.classifier_path)

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh last layer for `num_classes` classes; 0 makes the model return its pooled features."""
        new = classifier(self.num_features, num_classes)
        parent, _, leaf = self.classifier_path.rpartition(".")
        setattr(self.get_submodule(parent) if parent else self, leaf, new)
        self.num_classes = num_classes


class Logits(nn.Module):
    """The model with its output reduced to the logits tensor (GoogLeNet's named tuple of logits and auxiliary
    logits in train mode included): what exporters and attribution libraries want."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out.logits if hasattr(out, "logits") else out


def classifier(in_features: int, num_classes: int) -> nn.Module:
    """The last layer: a linear map to the class scores, or the identity when `num_classes` is 0."""
    return nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()
