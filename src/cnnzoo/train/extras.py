"""The loop's optional parts, each small: residual zero-init, EMA of the weights, MixUp/CutMix, half-written runs.

- Zero-initialised residual branches (Goyal et al. 2017, "Accurate, Large Minibatch SGD", sec. 5.1):
  each residual block's last BN scale starts at 0, so every block starts as the identity and a deep
  net starts as a shallow one; without it resnet50 at the default rate diverged on digits (#14).
- EMA (Polyak averaging as timm's ModelEmaV2): w_ema <- d * w_ema + (1 - d) * w after every optimizer
  step, through torch.optim.swa_utils.AveragedModel with get_ema_multi_avg_fn; buffers (BN statistics)
  are averaged too, and recomputed by precise BN when that is on.
- MixUp / CutMix (torchvision.transforms.v2): a batch's images and one-hot targets are mixed; the
  cross-entropy takes the soft targets (with label smoothing applied on top, as timm does).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from ..errors import CnnzooError


def zero_init_residual(model: torch.nn.Module) -> int:
    """Zero the last BN scale of every residual block (modules with `last_bn()`); return how many."""
    n = 0
    for m in model.modules():
        last = getattr(m, "last_bn", None)
        if callable(last):
            torch.nn.init.zeros_(last().weight)
            n += 1
    return n


def make_ema(model: torch.nn.Module, decay: float | None):
    if decay is None:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def make_mixer(mixup: float, cutmix: float, num_classes: int):
    """A batch transform (images, labels) -> (mixed images, soft targets), or None when both are off."""
    from torchvision.transforms import v2

    parts = ([v2.MixUp(alpha=mixup, num_classes=num_classes)] if mixup > 0 else []) + \
            ([v2.CutMix(alpha=cutmix, num_classes=num_classes)] if cutmix > 0 else [])
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else v2.RandomChoice(parts)


def check_run_folder(run: Path, resume: str | None) -> bool:
    """Whether `run` is a half-written run (config.yaml but no checkpoint) that a new run may replace.
    Refuses an occupied folder, and `--resume` of a folder that holds no checkpoint."""
    has_ckpt = (run / "checkpoints" / "last.pt").is_file()
    half = (run / "config.yaml").is_file() and not has_ckpt
    if resume and not has_ckpt:
        raise CnnzooError(f"{run} holds no checkpoint to resume (the run stopped before its first epoch ended); "
                          f"start it again with --out {run}")
    if not resume and run.exists() and any(run.iterdir()) and not half:
        raise CnnzooError(f"{run} already holds a run; pass --resume {run} to continue it, or choose another --out")
    return half


def remove_unfinished(run: Path) -> None:
    """Remove a run folder whose first epoch never completed, so the same --out can be used again."""
    if run.is_dir() and not (run / "checkpoints" / "last.pt").is_file():
        shutil.rmtree(run, ignore_errors=True)
