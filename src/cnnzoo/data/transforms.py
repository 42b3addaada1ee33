"""The train and eval presets (torchvision transforms v2), and the normalisation statistics.

Train: random-resized-crop (area `scale`, aspect 3/4..4/3), horizontal flip where the data set allows
it, to float, normalise. Eval: resize the short side to size / crop_pct, crop the centre, to float,
normalise. Both accept PIL images (files) and tensors (in-memory data sets; uint8 or float in 0..1).

Augmentation (`aug`), named as in timm: `none` (the eval preset: no randomness), `basic` (the train preset
above), or `basic` followed by one of torchvision's learned/random policies on the uint8 image:
`randaugment` (Cubuk et al. 2020: 2 ops of magnitude 9), `trivialaugment` (Mueller & Hutter 2021: one op,
random magnitude; TrivialAugmentWide) or `autoaugment` (Cubuk et al. 2019: the ImageNet policy).
`random_erasing` p (Zhong et al. 2020): with probability p a random rectangle of the normalised image
is set to 0, the data set's mean, as timm's `--reprob` does.
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
                 scale: tuple[float, float] = (0.25, 1.0), policy: torch.nn.Module | None = None,
                 erasing: torch.nn.Module | None = None) -> None:
        super().__init__()
        self.size, self.mean, self.std, self.hflip = [size, size], list(mean), list(std), hflip
        self.crop = v2.RandomResizedCrop(size, scale=scale, antialias=True)
        self.params = getattr(self.crop, "make_params", None) or self.crop._get_params  # torchvision < 0.21
        self.channels = MatchChannels(in_chans)
        self.policy, self.erasing = policy, erasing  # on the uint8 image; on the normalised one

    def forward(self, img):
        if isinstance(img, torch.Tensor):
            img = self.channels(img)
        p = self.params([img])
        x = F.resized_crop(img, p["top"], p["left"], p["height"], p["width"], self.size, antialias=True)
        if self.hflip and torch.rand(1) < 0.5:
            x = F.horizontal_flip(x)
        if not isinstance(x, torch.Tensor):
            x = F.pil_to_tensor(x)
        if self.policy is not None:
            x = self.policy(F.to_dtype(x, torch.uint8, scale=True))  # the policies' magnitudes are for 0..255
        x = F.normalize(F.to_dtype(x, torch.float32, scale=True), self.mean, self.std)
        return x if self.erasing is None else self.erasing(x)


# The policies of `aug` (none and basic have none); each is called on a uint8 image after crop and flip.
AUGMENTATIONS = {
    "none": None, "basic": None,
    "randaugment": lambda: v2.RandAugment(num_ops=2, magnitude=9),
    "trivialaugment": lambda: v2.TrivialAugmentWide(),
    "autoaugment": lambda: v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET),
}


def train_transform(size: int, mean, std, *, in_chans: int = 3, hflip: bool = True,
                    scale: tuple[float, float] = (0.25, 1.0), aug: str = "basic", random_erasing: float = 0.0,
                    crop_pct: float = 1.0):
    """Random-resized-crop to `size` (+ flip if `hflip`), the `aug` policy, normalise, random erasing.

    `aug="none"` is the eval preset (resize, centre crop with `crop_pct`), plus random erasing if asked."""
    if aug not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {aug!r}; choose from {', '.join(AUGMENTATIONS)}")
    erasing = v2.RandomErasing(p=random_erasing, value=0) if random_erasing > 0 else None
    if aug == "none":
        plain = eval_transform(size, mean, std, in_chans=in_chans, crop_pct=crop_pct)
        return plain if erasing is None else v2.Compose([plain, erasing])
    policy = AUGMENTATIONS[aug]() if AUGMENTATIONS[aug] else None
    return TrainPreset(size, mean, std, in_chans=in_chans, hflip=hflip, scale=scale, policy=policy, erasing=erasing)


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
