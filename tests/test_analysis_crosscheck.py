"""The profiler's totals against independent counts: torchvision's published `_ops`, FlopCounterMode, the parameters."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import cnnzoo
from cnnzoo.analysis import fastmeta, profile

MODELS = cnnzoo.list_models()
TORCHVISION = [n for n in MODELS if cnnzoo.get_card(n).torchvision == n]  # same architecture as torchvision's


def test_every_lecture_model_is_checked():
    assert {"alexnet", "vgg16", "googlenet", "resnet50", "densenet121", "mobilenet_v2"} <= set(TORCHVISION)


@pytest.mark.parametrize("name", TORCHVISION)
def test_conv_fc_multiply_adds_equal_torchvision_ops(name):
    """torchvision's weights meta `_ops` ("GFLOPS") counts conv and matmul multiply-adds at 224 (AlexNet too)."""
    meta = torchvision.models.get_model_weights(name)["IMAGENET1K_V1"].meta
    p = profile(name, 224)
    assert round(p.conv_fc_macs / 1e9, 3) == pytest.approx(meta["_ops"], abs=1e-9)
    assert p.total.params == meta["num_params"]


def odd_size(name: str) -> tuple[int, int, int]:
    """An odd, non-square input the model accepts: at least its card's minimum."""
    h = max(cnnzoo.get_card(name).min_input_size, 61) | 1
    return (3, h, h + 16)


@pytest.mark.parametrize("name", MODELS)
def test_multiply_adds_equal_flop_counter_mode_at_odd_sizes(name):
    """FlopCounterMode counts 2 flops per multiply-add of every conv and matmul; ours count each once."""
    size = odd_size(name)
    with torch.device("meta"):
        model = cnnzoo.create_model(name).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.empty(1, *size, device="meta"))
    p = profile(name, size)
    assert 2 * p.conv_fc_macs == counter.get_total_flops()
    assert p.matmul_macs == p.conv_fc_macs  # op by op, every conv and matmul landed in a conv or fc row
    # Parameters: the used ones, each once; the rest reported apart.
    assert p.total.params + p.unused_params == sum(q.numel() for q in model.parameters())
    assert p.unused_params == 0 or p.unused_modules == ("aux1", "aux2")


def test_batch_norm_and_pool_rules_match_meta_kernels():
    aten = torch.ops.aten
    x = torch.empty(2, 8, 13, 11, device="meta")
    w = torch.empty(8, device="meta")
    cases = [
        (aten.native_batch_norm.default, (x, w, w, w, w, False, 0.1, 1e-5)),
        (aten.max_pool2d_with_indices.default, (x, [3, 3], [2, 2], [1, 1], [1, 1], True)),
        (aten.max_pool2d_with_indices.default, (x, [3, 3], [2, 2], [0, 0], [1, 1], True)),
        (aten.max_pool2d_with_indices.default, (x, [2, 2], [2, 2], [0, 0], [1, 1], False)),
        (aten.avg_pool2d.default, (x, [3, 3], [2, 2], [1, 1], True)),
        (aten.convolution.default, (x, torch.empty(16, 4, 3, 5, device="meta"), None, [2, 1], [1, 2], [2, 1], False,
                                    [0, 0], 2)),
        (aten._adaptive_avg_pool2d.default, (x, [3, 3])),
        (aten.mean.dim, (x, [2, 3], True)),
        (aten.mean.dim, (x, [-1, -2])),
        (aten.cat.default, ([x, x], 1)),
        (aten.add.Tensor, (x, torch.empty(2, 8, 1, 1, device="meta"))),
        (aten.mul.Tensor, (x, 0.5)),
        (aten.hardtanh.default, (x, 0.0, 6.0)),
        (aten.addmm.default, (torch.empty(5, device="meta"), torch.empty(2, 7, device="meta"),
                              torch.empty(7, 5, device="meta"))),
    ]
    for func, args in cases:
        assert fastmeta.check(func, args, {}), func
