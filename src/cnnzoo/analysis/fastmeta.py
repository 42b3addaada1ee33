"""Output shapes of the hot CNN operators computed in Python arithmetic, and `Shape`, a tensor that is only a shape.

Several of PyTorch's meta kernels are Python decompositions: batch norm's takes about a millisecond, ReLU6's
(hardtanh) more, where the shape rule is one line. The profiler needs only shapes, so it answers these operators
here, for meta tensors (the meta engine) and for `Shape`s (the fast engine, `fastpath.py`), and lets every other
call (and every case these rules do not cover, such as a size that the real kernel would reject with a proper
message) go to the real meta kernel.

    conv / pool:  H' = floor((H + 2P - D*(K-1) - 1) / S) + 1   (ceil for ceil_mode pools, last window
                  dropped when it would start in the padding)

The view rules (view, transpose, split, t) answer `Shape`s only: on a meta tensor they must return a real view
of it, which its own kernel makes at no cost.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import torch

aten = torch.ops.aten

active = threading.local()  # .engine: the fast engine running in this thread, which answers calls on Shapes


class Shape:
    """A tensor's shape, strides, dtype and view base and nothing else: the fast engine's tensor.

    Not a torch.Tensor subclass, so making one costs a small Python object (a meta tensor is a trip through
    the dispatcher, about 1.6 us), and PyTorch never dispatches on it: by `__torch_function__`, every torch
    function, `torch.nn.functional` call, Tensor method and operator that involves a Shape goes to the engine
    running in this thread (`fastpath.Engine.call`), before PyTorch does anything. Metadata (shape, dim, size,
    stride, is_contiguous, numel) is answered here: on a meta tensor it dispatches nothing either.

    Never truth-test a Shape (`a or b`): like a tensor's, its `__bool__` is an operation, answered by the engine.
    """

    __slots__ = ("_base", "_stride", "dtype", "meta", "requires_grad", "shape")
    device = torch.device("meta")
    is_meta = True
    layout = torch.strided
    is_cuda = is_sparse = is_quantized = is_mkldnn = is_nested = False

    def __init__(self, shape: Any, dtype: torch.dtype, stride: tuple[int, ...] | None = None,
                 base: Shape | None = None, requires_grad: bool = False) -> None:
        self.shape = shape if type(shape) is torch.Size else torch.Size(shape)
        self.dtype = dtype
        self._stride = stride  # None: the contiguous strides
        self._base = base  # the Shape this one is a view of (the root one, as Tensor._base)
        self.requires_grad = requires_grad
        self.meta: torch.Tensor | None = None  # its meta tensor, once the engine needed one for a fallback

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return active.engine.call(func, args, kwargs or {})

    def __getattr__(self, name: str) -> Any:
        """Any other Tensor method or attribute: a call for the engine, as `__torch_function__` would make it."""
        attr = getattr(torch.Tensor, name) if not name.startswith("__") else None
        if attr is None:
            raise AttributeError(name)
        if callable(attr):
            return lambda *args, **kwargs: active.engine.call(attr, (self, *args), kwargs)
        return active.engine.call(attr.__get__, (self,), {})  # a property (x.T, x.data)

    def view_of(self, shape: Any, stride: tuple[int, ...] | None = None) -> Shape:
        return Shape(shape, self.dtype, stride, self if self._base is None else self._base)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dim(self) -> int:
        return len(self.shape)

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        return math.prod(self.shape)

    def nelement(self) -> int:
        return math.prod(self.shape)

    def element_size(self) -> int:
        return self.dtype.itemsize

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point

    def stride(self, dim: int | None = None) -> Any:
        stride = self._stride if self._stride is not None else contiguous_strides(self.shape)
        return stride if dim is None else stride[dim]

    def is_contiguous(self, memory_format: torch.memory_format = torch.contiguous_format) -> bool:
        if memory_format is not torch.contiguous_format:  # rare: ask a throwaway meta tensor
            meta = torch.empty_strided(self.shape, self.stride(), dtype=self.dtype, device="meta")
            return meta.is_contiguous(memory_format=memory_format)
        if self._stride is None or math.prod(self.shape) == 0:
            return True
        expected = 1
        for size, stride in zip(reversed(self.shape), reversed(self._stride)):
            if size != 1:  # PyTorch's rule: a dimension of size 1 may have any stride
                if stride != expected:
                    return False
                expected *= size
        return True

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))

    __hash__ = object.__hash__  # identity, as a tensor's (defining __eq__ below would drop it)

    def __repr__(self) -> str:
        return f"Shape({list(self.shape)}, {self.dtype})"


def _operator(name: str) -> Callable[..., Any]:
    func = getattr(torch.Tensor, name)

    def op(self, *args, **kwargs):
        return active.engine.call(func, (self, *args), kwargs)

    op.__name__ = name
    return op


# Special methods are looked up on the type, never through __getattr__; the common methods are defined here too,
# which spares them __getattr__'s lookup.
for _name in ("__add__", "__radd__", "__iadd__", "__sub__", "__rsub__", "__isub__", "__mul__", "__rmul__",
              "__imul__", "__truediv__", "__rtruediv__", "__itruediv__", "__floordiv__", "__rfloordiv__",
              "__mod__", "__pow__", "__rpow__", "__matmul__", "__rmatmul__", "__neg__", "__pos__", "__abs__",
              "__invert__", "__and__", "__or__", "__xor__", "__lt__", "__le__", "__gt__", "__ge__", "__eq__",
              "__ne__", "__getitem__", "__setitem__", "__bool__", "__int__", "__float__", "__index__",
              "view", "reshape", "flatten", "transpose", "permute", "contiguous", "chunk", "split", "unbind",
              "mean", "relu", "relu_", "sigmoid", "add", "add_", "mul", "mul_", "unsqueeze", "squeeze", "expand"):
    setattr(Shape, _name, _operator(_name))

TENSORS = (torch.Tensor, Shape)  # what the profiler treats as a tensor


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The strides of a contiguous tensor of this shape (a dimension of size 0 counts as 1, as in ATen)."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def _empty(shape: Any, like: Any, dtype: torch.dtype | None = None) -> Any:
    if type(like) is Shape:
        return Shape(shape, dtype or like.dtype)
    return torch.empty(shape, dtype=dtype or like.dtype, device="meta")


def _pair(v: Any, n: int) -> Any:
    if isinstance(v, int):
        return (v,) * n
    return v * n if len(v) == 1 else v


def _window_out(size: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1  # PyTorch's rule: the last window must start inside the input or its left padding
    return out


def _conv(x, w, b, stride, pad, dil, transposed, out_pad, groups):
    xs, ws = x.shape, w.shape
    n = len(ws) - 2
    if transposed or len(xs) != n + 2 or xs[1] != ws[1] * groups or w.dtype is not x.dtype:
        return None
    if not (x.is_contiguous() and w.is_contiguous()):
        return None
    st, pd, dl = _pair(stride, n), _pair(pad, n), _pair(dil, n)
    spatial = [_window_out(xs[i + 2], ws[i + 2], st[i], pd[i], dl[i], False) for i in range(n)]
    if min(spatial) < 1:
        return None
    return _empty([xs[0], ws[0], *spatial], x)


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


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> list[int] | None:
    """torch.broadcast_shapes, or None where they do not broadcast (which takes it 14 us, this 1)."""
    if a == b:
        return list(a)
    n = max(len(a), len(b))
    out = []
    for x, y in zip((1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)):
        if x != y and x != 1 and y != 1:
            return None
        out.append(y if x == 1 else x)
    return out


def _binary(a, b, *args, **kwargs):
    if not isinstance(a, TENSORS) or not a.is_contiguous():
        return None
    if isinstance(b, TENSORS):
        if b.dtype != a.dtype or not b.is_meta or not b.is_contiguous():
            return None
        shape = _broadcast(a.shape, b.shape)
        return None if shape is None else _empty(shape, a)
    return _empty(a.shape, a) if isinstance(b, float) and a.is_floating_point() else None


def _binary_(a, b, *args, **kwargs):
    if not isinstance(b, TENSORS):
        return a
    fits = b.dtype == a.dtype and b.is_meta and _broadcast(a.shape, b.shape) == list(a.shape)
    return a if fits else None


def _cat(tensors, dim=0):
    first = tensors[0]
    kind, dtype, n = type(first), first.dtype, first.dim()
    dim %= n
    head, tail = first.shape[:dim], first.shape[dim + 1:]
    size = 0
    for t in tensors:  # (DenseNet concatenates up to 48 maps at once: one pass, no inner loops)
        s = t.shape
        if type(t) is not kind or t.dtype is not dtype or len(s) != n or s[:dim] != head or s[dim + 1:] != tail:
            return None
        if not t.is_contiguous():
            return None
        size += s[dim]
    return _empty([*head, size, *tail], first)


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


# The view rules: Shapes only (a meta tensor's view must be a real view of it, see the module's docstring).

def _view(x, size):
    if type(x) is not Shape or not x.is_contiguous():
        return None
    shape = infer_size(size, x.numel())
    return None if shape is None else x.view_of(shape)


def _unsafe_view(x, size):  # reshape's copy-then-view: a new tensor, not a view
    if type(x) is not Shape or not x.is_contiguous():
        return None
    shape = infer_size(size, x.numel())
    return None if shape is None else Shape(shape, x.dtype)


def infer_size(size: Any, numel: int) -> list[int] | None:
    """A view's size with its -1 filled in, as ATen infers it; None where no size fits `numel` elements."""
    size = list(size)
    if size.count(-1) == 1:
        known = -math.prod(size)
        if known == 0 or numel % known:
            return None
        size[size.index(-1)] = numel // known
    return size if min(size, default=0) >= 0 and math.prod(size) == numel else None


def _transpose(x, dim0, dim1):
    if type(x) is not Shape or not x.shape:
        return None
    shape, stride = list(x.shape), list(x.stride())
    dim0, dim1 = dim0 % len(shape), dim1 % len(shape)
    shape[dim0], shape[dim1] = shape[dim1], shape[dim0]
    stride[dim0], stride[dim1] = stride[dim1], stride[dim0]
    return x.view_of(shape, tuple(stride))


def _t(x):
    return _transpose(x, 0, 1) if type(x) is Shape and x.dim() == 2 else None


def _split(x, size, dim=0):
    if type(x) is not Shape or not x.shape or size < 1:
        return None
    dim %= x.dim()
    stride, n = tuple(x.stride()), x.shape[dim]
    return [x.view_of([*x.shape[:dim], min(size, n - start), *x.shape[dim + 1:]], stride)
            for start in range(0, n, size)] or None


def _clone(x, memory_format=None):
    if type(x) is not Shape or not (memory_format is torch.contiguous_format or x.is_contiguous()):
        return None
    return Shape(x.shape, x.dtype)


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
    aten.view.default: _view,
    aten._unsafe_view.default: _unsafe_view,
    aten.transpose.int: _transpose,
    aten.t.default: _t,
    aten.split.Tensor: _split,
    aten.clone.default: _clone,
}


def rule_output(func: Any, args: tuple, kwargs: dict) -> Any:
    """The output of `func(*args, **kwargs)` by a shape rule, or None where no rule covers the call."""
    rule = RULES.get(func)
    if rule is None:
        return None
    try:
        return rule(*args, **kwargs)
    except (TypeError, IndexError):
        return None


def run(func: Any, args: tuple, kwargs: dict) -> Any:
    """`func(*args, **kwargs)` on meta tensors, by a shape rule when one applies."""
    out = rule_output(func, args, kwargs)
    return out if out is not None else func(*args, **kwargs)


def check(func: Any, args: tuple, kwargs: dict) -> bool:
    """Whether the rule's output has the real meta kernel's shapes, dtypes and strides (used by the tests)."""
    fast, real = RULES[func](*args, **kwargs), func(*args, **kwargs)
    fast = fast if isinstance(fast, (tuple, list)) else (fast,)
    real = real if isinstance(real, (tuple, list)) else (real,)
    same = [f.shape == r.shape and f.dtype == r.dtype and f.stride() == r.stride() for f, r in zip(fast, real)]
    return len(fast) == len(real) and all(same)
