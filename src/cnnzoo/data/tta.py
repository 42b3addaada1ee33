"""Multi-crop testing (test-time augmentation) as the lecture's networks were scored, and softmax averaging.

AlexNet (Krizhevsky et al. 2012, section 4.1) predicts "by extracting five 224x224 patches (the four corner
patches and the centre patch) as well as their horizontal reflections (hence ten patches in all), and averaging
the predictions made by the network's softmax layer on the ten patches"; VGG and GoogLeNet score the same way
(with more scales). The views here:

    VIEWS     views  what
    flip        2    the model's own centre crop, and its mirror image
    5crop       5    the four corners and the centre of the resized image (torchvision's FiveCrop)
    10crop     10    those five and their mirror images (torchvision's TenCrop)

Corner crops need a margin around the centre: the image is resized (short side) and centre-cropped to a square of
size / crop_pct, as AlexNet's 256 -> 224, with crop_pct at most 0.875 (a model whose own eval preset crops
nothing, e.g. the digits' crop_pct 1.0, would otherwise get five identical views).

`mean_log_softmax` is the averaging: log of the mean of the softmax over one dimension, computed as
logsumexp(log_softmax) - log(n) so that no probability underflows to log 0. A module that returns it is a
classifier like any other: softmax of its output is the mean probability exactly (the mean sums to 1), its
cross-entropy is the negative log of the averaged probability, its argmax that of the average. So the trainer's
evaluation, the exporter's checks and the inference backends take a TTA or ensemble model unchanged.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as TF
from torch import nn
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from .transforms import MatchChannels

VIEWS = {"flip": 2, "5crop": 5, "10crop": 10}
MULTI_CROP_PCT = 0.875  # AlexNet's 224 of 256: the largest crop fraction that still leaves corners to take


def mean_log_softmax(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """log(mean(softmax(logits, -1), dim)): the averaged prediction, as log-probabilities."""
    return torch.logsumexp(TF.log_softmax(logits.float(), dim=-1), dim=dim) - math.log(logits.shape[dim])


def mirrors(name: str) -> bool:
    """Whether the views include mirror images (which read a digit's or a letter's class wrongly)."""
    return name in ("flip", "10crop")


class Views(nn.Module):
    """PIL image or C x H x W tensor -> V x C x H x W normalised views (see the module docstring)."""

    def __init__(self, name: str, size: int, mean, std, *, in_chans: int = 3, crop_pct: float = 0.875) -> None:
        super().__init__()
        if name not in VIEWS:
            raise ValueError(f"unknown test-time augmentation {name!r}; choose one of {', '.join(VIEWS)}")
        self.name, self.size, self.mean, self.std = name, size, list(mean), list(std)
        pct = crop_pct if name == "flip" else min(crop_pct, MULTI_CROP_PCT)
        square = int(math.floor(size / pct))
        self.head = v2.Compose([v2.ToImage(), MatchChannels(in_chans), v2.Resize(square, antialias=True),
                                v2.CenterCrop(square)])

    def forward(self, img) -> torch.Tensor:
        x = self.head(img)
        if self.name == "flip":
            centre = F.center_crop(x, [self.size, self.size])
            views = [centre, F.horizontal_flip(centre)]
        elif self.name == "5crop":
            views = list(F.five_crop(x, [self.size, self.size]))
        else:
            views = list(F.ten_crop(x, [self.size, self.size]))
        x = torch.stack([v.as_subclass(torch.Tensor) for v in views])
        return F.normalize(F.to_dtype(x, torch.float32, scale=True), self.mean, self.std)


class ViewAverage(nn.Module):
    """N x V x C x H x W views -> N x classes: the mean of the model's softmax over the V views, as its log."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, v = x.shape[:2]
        out = self.model(x.flatten(0, 1))
        out = out.logits if hasattr(out, "logits") else out
        return mean_log_softmax(out.reshape(n, v, -1), dim=1)


def check_tta(name: str, hflip: bool | None, what: str) -> None:
    """Refuse views the model cannot read: mirror images for a model trained without them (digits: a mirrored
    digit is another shape; the data set turns training flips off for that reason)."""
    from ..errors import CnnzooError

    if name not in VIEWS:
        raise CnnzooError(f"unknown --tta {name!r}; choose one of {', '.join(VIEWS)}")
    if mirrors(name) and hflip is False:
        raise CnnzooError(f"--tta {name} shows the model mirror images, but {what} was trained without flips "
                          f"(its data set says mirroring changes the class); use --tta 5crop")
