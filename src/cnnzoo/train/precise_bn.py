"""Precise batch-norm statistics: recompute the running mean and variance with the final weights.

Batch norm normalises with the batch's statistics while training and with running averages
(`r <- (1 - m) r + m * batch`, momentum m = 0.1) in eval mode. The running averages mix batches seen
under *earlier* weights: with few steps per epoch and weights still moving fast (a high learning rate,
a short run, a deep net), they describe a network that no longer exists, and eval-mode accuracy falls
far below what the same weights reach with batch statistics (issue #14: 50% against 100%).

The remedy of Wu & Johnson ("Rethinking 'Batch' in BatchNorm", 2021; detectron2's and pycls's
`PreciseBN`): freeze the weights, reset the statistics and average them over up to `limit` training
images with momentum None (PyTorch's cumulative mean: every batch weighs the same), so they are the
population statistics of the network being validated and saved. The variance averaged is each batch's
unbiased variance, as PyTorch's running update keeps it.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch.nn.modules.batchnorm import _BatchNorm

PRECISE_BN_IMAGES = 2048  # detectron2 uses 200 batches; small data sets are covered whole


def batchnorm_layers(model: torch.nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recompute_bn_stats(model: torch.nn.Module, batches: Iterable[torch.Tensor], limit: int = PRECISE_BN_IMAGES) -> int:
    """Reset every batch-norm layer's running statistics and re-estimate them from `batches` (inputs,
    already on the model's device and under the caller's autocast); return the images used (0: no BN)."""
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    saved = [(bn.momentum, bn.running_mean.clone(), bn.running_var.clone()) for bn in layers]
    was_training = model.training
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches below
    model.eval()  # dropout off: the statistics of the network that validation runs
    for bn in layers:
        bn.train()
    seen = 0
    try:
        for x in batches:
            if seen >= limit:
                break
            if len(x) < 2:  # a single image has no batch variance
                continue
            model(x)
            seen += len(x)
    finally:
        for bn, (momentum, mean, var) in zip(layers, saved):
            bn.momentum = momentum
            if not seen:  # nothing measured: keep the old statistics
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(var)
        model.train(was_training)
    return seen
