"""Default optimizer settings: a peak learning rate for a batch of 64, by optimizer and family.

The rate scales linearly with the batch (Goyal et al., 2017, arXiv:1706.02677). The values were chosen by
training one model per family from scratch on small data with short budgets (`benchmarks/train_families.py`;
figures in benchmarks/RESULTS.md, "Training: defaults that train"):

- AdamW is the default optimizer: one rate trains the normalised families, where SGD's best rate differs by
  family and depth (resnet50 on digits: SGD at 0.05 climbs back to chance loss at the peak and ends at 81%
  after 4 epochs; AdamW at 2e-3 ends at 98%).
- Networks whose classifier is fully connected layers of 4096 units with no normalisation (AlexNet, ZFNet and
  VGG, with or without batch norm in the convolutions) need a lower rate: at AdamW's 2e-3 ZFNet's ReLUs die in
  the first epoch (chance to the end) and vgg11_bn's first-epoch loss is twice chance; at 3e-4 they learn.
  With SGD they get AlexNet's own 0.01 (its paper's rate for a batch of 128), which is slow: AlexNet at 0.01 was
  still at chance after 4 epochs on digits. SGD is there for recipes that ask for it, not as a default.
- The mobile networks, built of depthwise convolutions (MobileNet V1/V2, ShuffleNet V1/V2), want twice the rate:
  at 2e-3 they fit 512 training images of the shapes folder and generalise or not by the seed (mobilenet_v2:
  81-98% over seeds), at 4e-3 (with the folder's default flips) they reach 95-100%, and on digits they gain 2-3
  points. (MobileNet's paper too gives small models less regularisation, since they overfit less.) Only AdamW's
  rate was measured; SGD keeps 0.05.
"""
from __future__ import annotations

BASE_BATCH = 64
WEIGHT_DECAY = {"adamw": 0.05, "sgd": 5e-4}

# Peak rate per 64 images: every family's, and those of the families that need another.
LR_PER_64 = {"adamw": 2e-3, "sgd": 0.05}
FC_HEAD_FAMILIES = ("AlexNet", "ZFNet", "VGG")
MOBILE_FAMILIES = ("MobileNet V1", "MobileNet V2", "ShuffleNet", "ShuffleNet V2")
FAMILY_LR_PER_64 = {
    FC_HEAD_FAMILIES: {"adamw": 3e-4, "sgd": 0.01},
    MOBILE_FAMILIES: {"adamw": 4e-3, "sgd": 0.05},
}


def default_lr(opt: str, family: str, batch_size: int) -> float:
    """The peak rate `cnnzoo train` uses when --lr is not given."""
    rates = next((r for families, r in FAMILY_LR_PER_64.items() if family in families), LR_PER_64)
    return rates[opt] * batch_size / BASE_BATCH
