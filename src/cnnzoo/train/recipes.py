"""Default optimizer settings: a peak learning rate for a batch of 64, by optimizer and family.

The rate scales linearly with the batch (Goyal et al., 2017, arXiv:1706.02677). The values were chosen by
training one model per family from scratch on small data with short budgets (`benchmarks/train_families.py`;
figures in benchmarks/RESULTS.md, "Training: defaults that train"):

- AdamW is the default optimizer: one rate trains every normalised family, where SGD's best rate differs by
  family and depth (resnet50 on digits: SGD at 0.05 climbs back to chance loss at the peak and ends at 81%
  after 4 epochs; AdamW at 2e-3 ends at 98%).
- Networks whose classifier is fully connected layers of 4096 units with no normalisation (AlexNet, ZFNet and
  VGG, with or without batch norm in the convolutions) need a lower rate: at AdamW's 2e-3 ZFNet's ReLUs die in
  the first epoch (chance to the end) and vgg11_bn's first-epoch loss is twice chance; at 3e-4 they learn.
  With SGD they get AlexNet's own 0.01 (its paper's rate for a batch of 128), which is slow: AlexNet at 0.01 was
  still at chance after 4 epochs on digits. SGD is there for recipes that ask for it, not as a default.
"""
from __future__ import annotations

LR_PER_64 = {"adamw": 2e-3, "sgd": 0.05}
WEIGHT_DECAY = {"adamw": 0.05, "sgd": 5e-4}

# Families with large unnormalised fully connected heads, and their rates per 64 images.
FC_HEAD_FAMILIES = ("AlexNet", "ZFNet", "VGG")
FC_HEAD_LR_PER_64 = {"adamw": 3e-4, "sgd": 0.01}

BASE_BATCH = 64


def default_lr(opt: str, family: str, batch_size: int) -> float:
    """The peak rate `cnnzoo train` uses when --lr is not given."""
    per_64 = (FC_HEAD_LR_PER_64 if family in FC_HEAD_FAMILIES else LR_PER_64)[opt]
    return per_64 * batch_size / BASE_BATCH
