"""Output shapes of the hot CNN operators, computed in Python arithmetic instead of by their meta kernels.

Several of PyTorch's meta kernels are Python decompositions: batch norm's takes about a millisecond, ReLU6's
(hardtanh) more, where the shape rule is one line. The profiler needs only shapes, so in its meta-device forward
pass (every tensor is a meta tensor) it answers these operators here for contiguous inputs, and lets every other
call (and every case these rules do not cover, such as a size that the real kernel would reject with a proper
message) go to the real meta kernel.

    conv / pool:  H' = floor((H + 2P - D*(K-1) - 1) / S) + 1   (ceil for ceil_mode pools, last window
                  dropped when it would start in the padding)
"""
from __future__ import annotations

from typing import Any, Callable

import torch

aten = torch.ops.aten


def _empty(shape: list[int] | tuple[int, ...], like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype or like.dtype, device="meta")


def _pair(v: Any, n: int) -> list[int]:
    v = [v] if isinstance(v, int) else list(v)
    return v * n if len(v) == 1 else v


def _window_out(size: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1  # PyTorch's rule: the last window must start inside the input or its left padding
    return out


def _conv(x, w, b, stride, pad, dil, transposed, out_pad, groups):
    if transposed or not (x.is_contiguous() and w.is_contiguous()) or x.dim() != w.dim():
        return None
    if x.shape[1] != w.shape[1] * groups or w.dtype != x.dtype:
        return None
    n = w.dim() - 2
    st, pd, dl = _pair(stride, n), _pair(pad, n), _pair(dil, n)
    spatial = [_window_out(x.shape[2 + i], w.shape[2 + i], st[i], pd[i], dl[i], False) for i in range(n)]
    if min(spatial) < 1:
        return None
    return _empty([x.shape[0], w.shape[0], *spatial], x)


def _batch_norm(x, weight, bias, mean, var, training, momentum, eps):
    if training or not x.is_contiguous():
        return None
    c = x.shape[1]
    return _empty(x.shape, x), _empty([c], x), _empty([c], x)


def _max_pool(x, kernel, stride=(), pad=0, dil=1, ceil=False):
    out = _pool_shape(x, kernel, stride, pad, dil, ceil)
    return None if out is None else (_empty(out, x), _empty(out, x, torch.int64))


def _avg_pool(x, kernel, stride=(), pad=0, ceil=False, count_include_pad=True, divisor=None):
    out = _pool_shape(x, kernel, stride, pad, 1, ceil)
    return None if out is None else _empty(out, x)


def _pool_shape(x, kernel, stride, pad, dil, ceil):
    if not x.is_contiguous() or x.dim() != 4:
        return None
    k = _pair(kernel, 2)
    s = _pair(stride, 2) if stride else k
    p, d = _pair(pad, 2), _pair(dil, 2)
    spatial = [_window_out(x.shape[2 + i], k[i], s[i], p[i], d[i], ceil) for i in range(2)]
    return None if min(spatial) < 1 or max(p[i] * 2 > k[i] for i in range(2)) else [*x.shape[:2], *spatial]


def _adaptive(x, size):
    return _empty([*x.shape[:-len(size)], *size], x) if x.is_contiguous() else None


def _unary(x, *args, **kwargs):
    return _empty(x.shape, x) if x.is_contiguous() else None


def _inplace(x, *args, **kwargs):
    return x


def _binary(a, b, *args, **kwargs):
    if not isinstance(a, torch.Tensor) or not a.is_contiguous():
        return None
    if isinstance(b, torch.Tensor):
        if b.dtype != a.dtype or not b.is_contiguous():
            return None
        try:
            return _empty(torch.broadcast_shapes(a.shape, b.shape), a)
        except RuntimeError:
            return None
    return _empty(a.shape, a) if isinstance(b, float) and a.is_floating_point() else None


def _binary_(a, b, *args, **kwargs):
    if isinstance(b, torch.Tensor) and (b.dtype != a.dtype or torch.broadcast_shapes(a.shape, b.shape) != a.shape):
        return None
    return a


def _cat(tensors, dim=0):
    first = tensors[0]
    if any(t.dtype != first.dtype or t.dim() != first.dim() or not t.is_contiguous() for t in tensors):
        return None
    dim %= first.dim()
    rest = [s for i, s in enumerate(first.shape) if i != dim]
    if any([s for i, s in enumerate(t.shape) if i != dim] != rest for t in tensors):
        return None
    shape = list(first.shape)
    shape[dim] = sum(t.shape[dim] for t in tensors)
    return _empty(shape, first)


def _mean(x, dims, keepdim=False, dtype=None):
    if dtype is not None or not x.is_contiguous() or not dims:
        return None
    dims = {d % x.dim() for d in dims}
    shape = [1 if i in dims else s for i, s in enumerate(x.shape) if keepdim or i not in dims]
    return _empty(shape, x)


def _addmm(bias, a, b, beta=1, alpha=1):
    return _mm(a, b)


def _mm(a, b):
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0] or a.dtype != b.dtype:
        return None
    return _empty([a.shape[0], b.shape[1]], a)


RULES: dict[Any, Callable[..., Any]] = {
    aten.convolution.default: _conv,
    aten.native_batch_norm.default: _batch_norm,
    aten.max_pool2d_with_indices.default: _max_pool,
    aten.avg_pool2d.default: _avg_pool,
    aten._adaptive_avg_pool2d.default: _adaptive,
    aten.cat.default: _cat,
    aten.mean.dim: _mean,
    aten.addmm.default: _addmm,
    aten.mm.default: _mm,
    **{getattr(aten, n).default: _unary for n in ("relu", "sigmoid", "tanh", "silu", "hardswish", "hardsigmoid",
                                                   "gelu", "hardtanh", "leaky_relu", "elu")},
    **{getattr(aten, n).default: _inplace for n in ("relu_", "sigmoid_", "tanh_", "silu_", "hardswish_",
                                                     "hardsigmoid_", "hardtanh_", "leaky_relu_", "elu_")},
    **{getattr(aten, n).Tensor: _binary for n in ("add", "sub", "mul", "div")},
    **{getattr(aten, n).Tensor: _binary_ for n in ("add_", "sub_", "mul_", "div_")},
}


def run(func: Any, args: tuple, kwargs: dict) -> Any:
    """`func(*args, **kwargs)` on meta tensors, by a shape rule when one applies."""
    rule = RULES.get(func)
    if rule is not None:
        try:
            out = rule(*args, **kwargs)
        except (TypeError, IndexError):
            out = None
        if out is not None:
            return out
    return func(*args, **kwargs)


def check(func: Any, args: tuple, kwargs: dict) -> bool:
    """Whether the rule's output has the real meta kernel's shapes, dtypes and strides (used by the tests)."""
    fast, real = RULES[func](*args, **kwargs), func(*args, **kwargs)
    fast = fast if isinstance(fast, (tuple, list)) else (fast,)
    real = real if isinstance(real, (tuple, list)) else (real,)
    same = [f.shape == r.shape and f.dtype == r.dtype and f.stride() == r.stride() for f, r in zip(fast, real)]
    return len(fast) == len(real) and all(same)
