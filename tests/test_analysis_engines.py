"""The profiler's fast engine (Shapes, no dispatcher) against its meta engine (meta tensors, every ATen call).

The meta engine is exact by construction: it books the ATen calls PyTorch makes. The fast engine answers those
calls itself, so it must give the same rows, the same totals and the same unused parameters, row by row.
"""
from __future__ import annotations

import dataclasses
import gc

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import cnnzoo
from cnnzoo.analysis import fastmeta, fastpath, profile
from cnnzoo.errors import CnnzooError

aten = torch.ops.aten
MODELS = cnnzoo.list_models()
# Beyond the zoo's: torchvision's functional channel shuffle, squeeze-excitation (hardsigmoid, SiLU), auxiliary
# heads, and ConvNeXt's permutes, layer norms and 4-D linears, which the fast engine leaves to the meta engine.
TORCHVISION = ["googlenet", "densenet121", "mobilenet_v2", "shufflenet_v2_x0_5", "mobilenet_v3_small",
               "squeezenet1_1", "efficientnet_b0", "regnet_x_400mf", "convnext_tiny"]


def assert_same(fast, meta) -> None:
    assert [r.name for r in fast.rows] == [r.name for r in meta.rows]
    for a, b in zip(fast.rows, meta.rows):
        assert dataclasses.astuple(a) == dataclasses.astuple(b), a.name
    for field in ("unused_params", "unused_modules", "other_ops", "matmul_macs", "modules", "conv_fc_macs",
                  "lecture_memory_bytes", "allocated_bytes"):
        assert getattr(fast, field) == getattr(meta, field), field


@pytest.fixture
def no_fallback(monkeypatch):
    """Fails the test if the fast engine hands a call to the meta engine (correct, but slow): only local response
    normalisation (AlexNet 2012, ZFNet, VGG A-LRN, the paper's GoogLeNet) is left to it."""
    fallback = fastpath.Engine.fallback

    def checked(self, func, args, kwargs):
        assert func is F.local_response_norm, f"the fast engine fell back for {func}"
        return fallback(self, func, args, kwargs)

    monkeypatch.setattr(fastpath.Engine, "fallback", checked)


@pytest.mark.parametrize("name", MODELS)
def test_fast_engine_gives_the_meta_engines_rows(name, no_fallback):
    h = max(cnnzoo.get_card(name).min_input_size, 61) | 1  # odd, non-square, as the FlopCounterMode cross-check
    size = (3, h, h + 16)
    assert_same(profile(name, size, engine="fast"), profile(name, size, engine="meta"))


@pytest.mark.filterwarnings("ignore:The default weight initialization")
@pytest.mark.parametrize("name", TORCHVISION)
def test_fast_engine_on_torchvision_models(name):
    model = torchvision.models.get_model(name).eval()
    assert_same(profile(model, (3, 97, 113), engine="fast"), profile(model, (3, 97, 113), engine="meta"))


class WeightStandardized(nn.Conv2d):
    """A Conv2d subclass with its own forward: computed from its weight, so not booked as a known leaf."""

    def forward(self, x):
        w = self.weight - self.weight.mean((1, 2, 3), keepdim=True)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


class Mixed(nn.Module):
    """Calls the fast engine lowers, next to ones it leaves to the meta engine, and inputs it does not cover."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding="same")  # string padding
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.Hardswish()
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, padding_mode="reflect")
        self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        self.ws = WeightStandardized(8, 8, 3, padding=1)
        self.gn = nn.GroupNorm(2, 8)
        self.proj = nn.Linear(8, 6)
        self.w = nn.Parameter(torch.empty(6, 5))
        self.drop = nn.Dropout(0.1)
        self.register_buffer("scale", torch.ones(1, 8, 1, 1))

    def forward(self, x):
        x = self.act(self.bn(self.stem(x))) * self.scale
        x = torch.cat([self.dw(x), self.pool(x)], 1)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)  # a channel shuffle
        a, b = x.chunk(2, dim=1)  # not contiguous at batch 2
        x = torch.cat((self.ws(a), F.relu(self.gn(b), inplace=True)), 1)
        x = x + x.mean((2, 3), keepdim=True)
        x.sigmoid_()
        z = F.adaptive_avg_pool2d(x, (1, None)).flatten(2).transpose(1, 2)
        z = self.proj(z[..., :8]) @ self.w[:6]
        out = F.dropout(self.drop(z).sum(1), 0.5, self.training)
        out += 1.0
        return torch.flatten(2.0 * out, 1)


@pytest.mark.parametrize("batch", [1, 2])
def test_fast_engine_on_calls_it_lowers_and_calls_it_leaves_to_the_meta_engine(batch):
    model = Mixed()
    fast, meta = profile(model, (3, 37, 29), batch, engine="fast"), profile(model, (3, 37, 29), batch, engine="meta")
    assert_same(fast, meta)
    kinds = {r.type for r in fast.rows}
    assert {"conv", "norm", "act", "pool", "concat", "shuffle", "add", "mul", "fc", "other"} <= kinds


def test_sequential_leaves_booked_from_the_originals_keep_hooks_sharing_and_indexing():
    """The fast engine books a Sequential's known leaves without copying them (`Engine.sequence`): a leaf with a
    hook, a leaf shared by two Sequentials, and a forward that indexes or slices a Sequential are as the meta
    engine has them, and the hooks run."""
    relu = nn.ReLU()
    model = nn.Sequential(nn.Conv2d(3, 8, 3), relu, nn.Sequential(nn.Conv2d(8, 8, 3), relu, nn.BatchNorm2d(8)),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    seen = []
    model[0].register_forward_hook(lambda m, args, out: seen.append(tuple(out.shape)))

    class Head(nn.Module):  # reads its Sequential by index and by slice, as AlexNet's head does
        def __init__(self):
            super().__init__()
            self.body = model

        def forward(self, x):
            return self.body[-1](self.body[:-1](x))

    for net in (model, Head()):
        fast, meta = profile(net, 21, engine="fast"), profile(net, 21, engine="meta")
        assert_same(fast, meta)
        assert [r.name for r in fast.rows][:3] == (["0", "1", "2.0"] if net is model else ["body.0", "body.1",
                                                                                          "body.2.0"])
    assert seen == [(1, 8, 19, 19)] * 4
    with_hook = nn.modules.module.register_module_forward_hook(lambda m, args, out: seen.append(type(m).__name__))
    try:
        assert_same(profile(model, 21, engine="fast"), profile(model, 21, engine="meta"))
    finally:
        with_hook.remove()
    assert seen.count("Linear") == 2  # a global hook runs for every module, with either engine


def test_a_forward_the_fast_engine_cannot_follow_is_profiled_by_the_meta_engine():
    class Checks(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            assert isinstance(x, torch.Tensor)  # a Shape is not one
            return self.conv(x)

    with pytest.raises(AssertionError):
        profile(Checks(), 16, engine="fast")
    auto = profile(Checks(), 16)
    assert_same(auto, profile(Checks(), 16, engine="meta"))
    with pytest.raises(CnnzooError, match="engine"):
        profile(Checks(), 16, engine="quick")


def test_errors_are_the_meta_engines():
    for engine in ("auto", "fast", "meta"):
        with pytest.raises(CnnzooError, match="needs at least 63x63"):
            profile("alexnet", 62, engine=engine)


def test_a_profile_leaves_no_reference_cycle_behind():
    """`profile` pauses the cyclic collector while it runs: that defers nothing only if it makes no cycle."""
    model = torchvision.models.googlenet(init_weights=False).eval()
    for engine in ("fast", "meta"):
        gc.collect()
        gc.disable()
        try:
            profile(model, 97, engine=engine)
            assert gc.collect() == 0
        finally:
            gc.enable()
    assert gc.isenabled()


X = fastmeta.Shape((6, 8, 11, 5), torch.float32)  # and the same as a meta tensor: torch.empty(X.shape)
VIEWS = [
    (aten.view.default, X, ([2, -1],), {}),
    (aten._unsafe_view.default, X, ([6, 8, 11, 5],), {}),
    (aten.transpose.int, X, (1, 3), {}),
    (aten.split.Tensor, X, (3, 1), {}),
    (aten.t.default, fastmeta.Shape((11, 5), torch.float32), (), {}),
    (aten.clone.default, fastmeta.RULES[aten.transpose.int](X, 1, 2), (), {"memory_format": torch.contiguous_format}),
]


def _described(tensors):
    return [(tuple(t.shape), tuple(t.stride()), t.is_contiguous()) for t in tensors]


@pytest.mark.parametrize("func,shape,args,kwargs", VIEWS, ids=[str(v[0]) for v in VIEWS])
def test_view_rules_match_meta_kernels(func, shape, args, kwargs):
    """The view rules answer Shapes only; their shapes, strides and contiguity are the real kernels'."""
    meta = torch.empty_strided(shape.shape, shape.stride(), device="meta")
    fast, real = fastmeta.RULES[func](shape, *args, **kwargs), func(meta, *args, **kwargs)
    fast, real = (fast, real) if isinstance(real, (list, tuple)) else ([fast], [real])
    assert _described(fast) == _described(real)
    assert all(f._base is (shape if shape._base is None else shape._base) for f in fast) == (func in (
        aten.view.default, aten.transpose.int, aten.split.Tensor, aten.t.default))
    assert fastmeta.RULES[func](meta, *args, **kwargs) is None  # a meta tensor's view is left to its kernel


@pytest.mark.parametrize("shape,stride,size", [
    ((2, 3, 4), (12, 4, 1), (6, 4)),  # contiguous
    ((2, 4, 3), (12, 1, 4), (8, 3)),  # transposed: the merged dimensions are not adjacent in memory
    ((2, 4, 3), (12, 1, 4), (2, 12)),
    ((2, 3, 4), (12, 1, 3), (2, 3, 2, 2)),  # splits a contiguous dimension
    ((1, 4, 2, 3), (24, 3, 12, 1), (1, 8, 3)),  # ShuffleNet's channel shuffle, merged back
    ((4, 1, 3), (3, 99, 1), (2, 2, 3)),  # a dimension of size 1 with any stride
])
def test_reshape_tells_views_from_copies_as_aten_does(shape, stride, size):
    try:
        expected = list(torch.empty_strided(shape, stride, device="meta").view(size).stride())
    except RuntimeError:  # "view size is not compatible with input tensor's size and stride": reshape copies
        expected = None
    assert fastpath._view_strides(shape, stride, size) == expected
