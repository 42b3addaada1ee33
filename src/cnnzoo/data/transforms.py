"""The train and eval presets (torchvision transforms v2), and the normalisation statistics.

Train: random-resized-crop (area `scale`, aspect 3/4..4/3), horizontal flip where the data set allows
it, to float, normalise. Eval: resize the short side to size / crop_pct, crop the centre, to float,
normalise. Both accept PIL images (files) and tensors (in-memory data sets; uint8 or float in 0..1).
"""
from __future__ import annotations

import math

import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MatchChannels(torch.nn.Module):
    """Repeat a grey channel to `chans`, or average colours to one grey channel."""

    def __init__(self, chans: int) -> None:
        super().__init__()
        self.chans = chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-3] == self.chans:
            return x
        if x.shape[-3] == 1:
            return x.expand(*x.shape[:-3], self.chans, *x.shape[-2:])
        return x.mean(dim=-3, keepdim=True).expand(*x.shape[:-3], self.chans, *x.shape[-2:])


def _head(in_chans: int) -> list:
    # PIL -> uint8 tensor; in-memory tensors pass through. Interpolation works on uint8 and float alike.
    return [v2.ToImage(), MatchChannels(in_chans)]


def _tail(mean, std) -> list:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


class TrainPreset(torch.nn.Module):
    """v2's random-resized-crop (+ flip), then to float and normalise.

    The same operations as `v2.Compose([ToImage, RandomResizedCrop, RandomHorizontalFlip, ToDtype,
    Normalize])`, called through v2's functional API: half the per-image overhead, which matters when a
    small network trains on small in-memory images. A PIL image is cropped and resized by PIL, then
    converted, so a large photo is never turned into a large tensor.
    """

    def __init__(self, size: int, mean, std, *, in_chans: int = 3, hflip: bool = True,
                 scale: tuple[float, float] = (0.25, 1.0)) -> None:
        super().__init__()
        self.size, self.mean, self.std, self.hflip = [size, size], list(mean), list(std), hflip
        self.crop = v2.RandomResizedCrop(size, scale=scale, antialias=True)
        self.params = getattr(self.crop, "make_params", None) or self.crop._get_params  # torchvision < 0.21
        self.channels = MatchChannels(in_chans)

    def forward(self, img):
        if isinstance(img, torch.Tensor):
            img = self.channels(img)
        p = self.params([img])
        x = F.resized_crop(img, p["top"], p["left"], p["height"], p["width"], self.size, antialias=True)
        if self.hflip and torch.rand(1) < 0.5:
            x = F.horizontal_flip(x)
        if not isinstance(x, torch.Tensor):
            x = F.pil_to_tensor(x)
        return F.normalize(F.to_dtype(x, torch.float32, scale=True), self.mean, self.std)


def train_transform(size: int, mean, std, *, in_chans: int = 3, hflip: bool = True,
                    scale: tuple[float, float] = (0.25, 1.0)) -> TrainPreset:
    """Random-resized-crop to `size` (+ flip if `hflip`), then normalise."""
    return TrainPreset(size, mean, std, in_chans=in_chans, hflip=hflip, scale=scale)


def eval_transform(size: int, mean, std, *, in_chans: int = 3, crop_pct: float = 0.875) -> v2.Compose:
    """Resize the short side to size / crop_pct, crop the centre `size`, then normalise."""
    resize = int(math.floor(size / crop_pct))
    steps = _head(in_chans) + [v2.Resize(resize, antialias=True), v2.CenterCrop(size)]
    return v2.Compose(steps + _tail(mean, std))


def dataset_mean_std(dataset, *, limit: int = 512, batch_size: int = 64) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std over (up to `limit` evenly spaced) images of an un-normalised dataset.

    `dataset` yields (C x H x W in 0..1, label); unreadable samples are skipped.
    """
    from torch.utils.data import Subset

    from .datasets import collate

    n = len(dataset)
    step = max(1, n // limit)
    loader = DataLoader(Subset(dataset, range(0, n, step)), batch_size=batch_size, collate_fn=collate)
    total, sq, count = 0.0, 0.0, 0
    for x, _, _ in loader:
        if x.numel():
            x = x.double().transpose(0, 1).flatten(1)  # C x (N*H*W)
            total, sq, count = total + x.sum(1), sq + (x * x).sum(1), count + x.shape[1]
    if count == 0:
        raise ValueError("no readable image to compute the mean and std from")
    mean = total / count
    std = (sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())
