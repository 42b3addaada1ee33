"""Before the first step: resolve the config's "auto" values, and build the data loaders.

Everything here can fail on user input (a missing folder, an unknown model, an input too small for the
model), and all of it runs before the run folder is created, so a failed start writes nothing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from ..data import (IMAGENET_MEAN, IMAGENET_STD, DataSource, ImageDataset, collate, dataset_mean_std,
                    eval_transform, load_data, train_transform)
from ..errors import CnnzooError
from ..threads import torch_threads, usable_cores
from .config import TrainConfig
from .distributed import DistEnv
from .recipes import WEIGHT_DECAY, default_lr


def amp_dtype(precision: str) -> torch.dtype | None:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def _auto_precision(device: torch.device) -> str:
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    # bf16 autocast pays off on CPUs with native bf16 instructions (AVX512-BF16, AMX); elsewhere it is emulated.
    return "bf16" if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


def default_out(model: str, data_name: str) -> str:
    """runs/MODEL-DATA, or the first of runs/MODEL-DATA-2, -3, ... that does not exist yet."""
    base = Path("runs") / f"{model}-{data_name}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return str(out)


def load_source(cfg: TrainConfig) -> DataSource:
    """The run's data: `cfg.data` split by its fractions and seed; a named set read from (or fetched into) its root."""
    return load_data(cfg.data, val=cfg.val, test=cfg.test, split_seed=cfg.split_seed, root=cfg.data_root,
                     download=bool(cfg.download))


def read_start_weights(cfg: TrainConfig, source: DataSource, notes: list[str]):
    """The weights a run starts from (`cfg.weights`, read safely), or None; when the file records the
    normalisation it was trained with and the run sets none, `cfg` adopts it. What happened goes to `notes`."""
    if not cfg.weights:
        return None
    from ..weights import normalisation_of, read_weights

    weights = read_weights(cfg.weights, model=cfg.model, log=notes.append)
    own = normalisation_of(weights, cfg.in_chans or source.in_chans)
    if own and cfg.mean is None and cfg.std is None:
        cfg.mean, cfg.std = own
        notes.append(f"normalising with the weights' own mean {own[0]} and std {own[1]}")
    return weights


def resolve(cfg: TrainConfig, source: DataSource, device: torch.device) -> TrainConfig:
    """A copy of `cfg` with every "auto"/None setting replaced by its value for this data and device."""
    from ..models import get_card

    card = get_card(cfg.model)  # an unknown model name fails here, in one line
    c = dataclasses.replace(cfg)
    c.in_chans = c.in_chans or source.in_chans
    if c.input_size is None:  # the data's own size, raised to what the model accepts (AlexNet: 63)
        c.input_size = max(source.input_size or card.input_size, card.min_input_size)
    if c.input_size < card.min_input_size:
        raise CnnzooError(f"{cfg.model} needs inputs of at least {card.min_input_size} pixels "
                          f"({card.min_input_reason}); got --input-size {c.input_size}")
    if c.epochs < 1 or c.batch_size < 1:
        raise CnnzooError("epochs and batch_size must be at least 1")
    c.lr = c.lr if c.lr is not None else default_lr(c.opt, card.family, c.batch_size)
    c.weight_decay = c.weight_decay if c.weight_decay is not None else WEIGHT_DECAY[c.opt]
    if c.warmup_epochs is None:
        c.warmup_epochs = 0.25 * c.epochs if c.sched == "onecycle" else min(5.0, 0.1 * c.epochs)
    c.step_epochs = c.step_epochs or max(1, c.epochs // 3)
    if c.precision == "auto":
        c.precision = _auto_precision(device)
    if c.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise CnnzooError("this GPU has no bf16; use --precision fp16")
    if c.channels_last == "auto":
        c.channels_last = c.precision != "fp32"
    c.hflip = source.hflip if c.hflip is None else c.hflip
    c.crop_pct = c.crop_pct or source.crop_pct
    c.scale_min = c.scale_min or source.crop_scale[0]
    if c.normalize == "auto":
        c.normalize = source.normalize
    if c.mean is None or c.std is None:
        if c.normalize == "imagenet":
            c.mean, c.std = _fit(IMAGENET_MEAN, c.in_chans), _fit(IMAGENET_STD, c.in_chans)
        elif source.stats and len(source.stats[0]) == c.in_chans:  # a named set's published statistics
            c.mean, c.std = list(source.stats[0]), list(source.stats[1])
        else:
            plain = eval_transform(c.input_size, [0.0] * c.in_chans, [1.0] * c.in_chans, in_chans=c.in_chans,
                                   crop_pct=c.crop_pct)
            try:
                mean, std = dataset_mean_std(ImageDataset(source.splits["train"], plain, in_chans=c.in_chans))
            except ValueError:
                raise CnnzooError(f"no training image of {c.data} could be read; "
                                  f"run `cnnzoo data check {c.data}`") from None
            c.mean, c.std = list(mean), list(std)
    if len(c.mean) != c.in_chans or len(c.std) != c.in_chans:
        raise CnnzooError(f"mean and std need {c.in_chans} value(s) each, one per input channel")
    c.out = c.out or default_out(c.model, source.name)
    return c


def _fit(stats: tuple[float, ...], chans: int) -> list[float]:
    """ImageNet's statistics for `chans` channels (grey: the average of the three)."""
    return list(stats) if chans == 3 else [round(sum(stats) / 3, 4)] * chans


def default_threads(env: DistEnv) -> int:
    """CPU threads per process: OMP_NUM_THREADS when it is set (as torch itself reads it) for a lone process,
    else the cores this process may use, shared among the node's processes. (torchrun sets OMP_NUM_THREADS=1
    for its workers unless told otherwise, which would leave most of a large machine idle.)"""
    given = os.environ.get("OMP_NUM_THREADS", "")
    if env.local_world_size == 1 and given.isdigit() and int(given) > 0:
        return int(given)
    return max(1, usable_cores() // env.local_world_size)


@contextlib.contextmanager
def cpu_threads(cfg: TrainConfig, env: DistEnv) -> Iterator[None]:
    """Within: the run's CPU threads (--threads, else `default_threads`); after: the caller's setting again,
    so a library call leaves no global change behind."""
    with torch_threads((cfg.threads or default_threads(env)) if env.device.type == "cpu" else None):
        yield


class EpochSampler(Sampler):
    """Yields (epoch, index) so that each sample's augmentation seed reaches persistent workers too."""

    def __init__(self, inner: Sampler) -> None:
        self.inner, self.epoch = inner, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)

    def __iter__(self):
        return ((self.epoch, i) for i in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


class ShardSampler(Sampler):
    """Every `world`-th index from `rank`, in order, without DistributedSampler's padding (eval counts stay exact)."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_loaders(cfg: TrainConfig, source: DataSource, env: DistEnv) -> dict[str, DataLoader]:
    """Train loader (seeded per sample, sharded by DistributedSampler) and eval loaders for val/test."""
    if cfg.batch_size % env.world_size:
        raise CnnzooError(f"batch_size {cfg.batch_size} must divide evenly over {env.world_size} processes")
    per_rank = cfg.batch_size // env.world_size
    workers = cfg.workers if cfg.workers is not None else (
        0 if source.splits["train"].images is not None else min(4, usable_cores()))
    common = dict(num_workers=workers, collate_fn=collate, pin_memory=env.device.type == "cuda",
                  persistent_workers=workers > 0)
    train_tf = train_transform(cfg.input_size, cfg.mean, cfg.std, in_chans=cfg.in_chans, hflip=cfg.hflip,
                               scale=(cfg.scale_min, 1.0), aug=cfg.aug, random_erasing=cfg.random_erasing,
                               crop_pct=cfg.crop_pct)
    train_set = ImageDataset(source.splits["train"], train_tf, in_chans=cfg.in_chans, seed=cfg.seed)
    # The same permutation for any number of processes: rank r takes every world-th image of it, so
    # N processes' batches together are exactly one process's batch.
    inner = DistributedSampler(train_set, num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=cfg.seed)
    loaders = {"train": DataLoader(train_set, batch_size=per_rank, sampler=EpochSampler(inner),
                                   drop_last=len(inner) >= per_rank, **common)}
    eval_tf = eval_transform(cfg.input_size, cfg.mean, cfg.std, in_chans=cfg.in_chans, crop_pct=cfg.crop_pct)
    # Precise BN's images: training images as evaluation presents them (resize, centre crop, no augmentation),
    # so eval mode normalises with the statistics of the inputs it will be given. Augmented crops have other
    # statistics (Touvron et al. 2019, "Fixing the train-test resolution discrepancy"): vgg11_bn on the shapes
    # folder scored 50% in eval mode with statistics of augmented images, 94% with these.
    stats_set = ImageDataset(source.splits["train"], eval_tf, in_chans=cfg.in_chans)
    stats_sampler = DistributedSampler(stats_set, num_replicas=env.world_size, rank=env.rank, shuffle=True,
                                       seed=cfg.seed)
    loaders["bn_stats"] = DataLoader(stats_set, batch_size=per_rank, sampler=stats_sampler,
                                     drop_last=len(stats_sampler) >= per_rank, **common)
    for name in ("val", "test"):
        if name in source.splits:
            ds = ImageDataset(source.splits[name], eval_tf, in_chans=cfg.in_chans)
            loaders[name] = DataLoader(ds, batch_size=2 * per_rank, sampler=ShardSampler(len(ds), env.rank, env.world_size),
                                       **common)
    return loaders
