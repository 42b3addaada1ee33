"""What every cnnzoo model shares: its card and the uniform classifier interface (timm's, without the flags)."""
from __future__ import annotations

import dataclasses
import textwrap

import torch
from torch import nn


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
        lines = [
            f"{self.name}  ({self.family})",
            f"  paper:      {self.authors}, \"{self.paper}\", {self.venue} {self.year}",
            f"  url:        {self.url}",
            f"  input:      {self.input_size}x{self.input_size} by default; "
            f"at least {self.min_input_size}x{self.min_input_size} ({self.min_input_reason})",
        ]
        if self.lecture:
            lines.append(f"  lecture:    {self.lecture}")
        lines.append(
            f"  weights:    loads torchvision.models.{self.torchvision}'s state_dict unchanged"
            if self.torchvision
            else "  weights:    no torchvision counterpart"
        )
        lines.append("  deviations from the paper:" if self.deviations else "  deviations from the paper: none")
        for d in self.deviations:
            lines.append(textwrap.fill(d, 100, initial_indent="    - ", subsequent_indent="      "))
        return "\n".join(lines)


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


def classifier(in_features: int, num_classes: int) -> nn.Module:
    """The last layer: a linear map to the class scores, or the identity when `num_classes` is 0."""
    return nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()
