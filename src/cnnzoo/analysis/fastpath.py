"""The profiler's fast engine: the forward pass followed on `Shape`s, each call answered without the dispatcher.

Why. The meta engine (a TorchDispatchMode over meta tensors, `profiler._Recorder`) pays for every ATen call
PyTorch's dispatch into Python and a new meta tensor, 20-40 us in all. A network of many cheap operators makes
hundreds: MobileNetV2 at 224 pixels about 200, where its whole 1-thread CPU forward pass takes about 17 ms and the
fastest forward-based profiler about 30, so a profiler built on dispatch cannot be 10x faster than those. Here a
MobileNetV2 costs about 2 ms: a copy of its 213 modules and 314 tensors, and 150 rows, a few microseconds each.

How. The input, and the parameters and buffers of the model's structural copy, are `fastmeta.Shape`s: by
`__torch_function__`, every call that involves one comes to `Engine.call` before PyTorch does anything.
- A known leaf module (`LEAVES`: `nn.Conv2d`, `nn.BatchNorm2d`, `nn.ReLU`, pools, `nn.Linear`...; exact classes,
  as a subclass may have another forward) does not even run its forward: its row is booked directly
  (`Engine.answer`), from the same shape, geometry, multiply-add and field rules the meta engine's calls go
  through (`fastmeta`, `ops`). In a Sequential, where most leaves sit, it is not even copied: the copy of the
  Sequential keeps the original (`meta.Deferred`, copied only if something else reads it) and its forward
  books it from there (`Engine.sequence`).
- Any other call, a functional one (`x + y`, `torch.cat`, `F.relu`, `x.mean((2, 3))`, `x.view(...)`) or one made
  by a module's own forward, is lowered (`LOWER`) to the ATen calls PyTorch would have made of it on meta
  tensors (`F.relu6(x)` is aten.hardtanh, `F.adaptive_avg_pool2d(x, 1)` aten.mean.dim, `x.flatten(1)`
  aten.view, `F.linear` aten.t then aten.addmm), whose outputs come from `fastmeta`'s rules and which the
  recorder books with the meta engine's own `record`.

Totality. A call `LOWER` does not know, or a case it does not cover (a non-contiguous input, a string padding,
an unbatched input), runs on the meta engine (`fallback`): its Shapes are replaced by meta tensors (`standin`),
it runs under a dispatch mode that books its ATen calls as the meta engine does, and its outputs become Shapes
again; a lowered ATen call that no shape rule covers runs its meta kernel on stand-ins. The tests hold both
engines to the same rows for every registered model (tests/test_analysis_engines.py).

Limit: a Shape is not a torch.Tensor, so a forward that branches on `isinstance(x, torch.Tensor)` would take the
other branch (the tests check the zoo's and a range of torchvision's networks row by row), and one that fails on
a Shape makes `profile` use the meta engine for that model.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map_only

from . import fastmeta, ops
from .fastmeta import Shape, active
from .meta import Deferred

aten = torch.ops.aten
Tensor = torch.Tensor


def shape_of(t: torch.Tensor, dtype: torch.dtype) -> Shape:
    """The Shape that stands in for a parameter or buffer of the model (`meta.meta_copy`'s `make`)."""
    return Shape(t.shape, dtype, None if t.is_contiguous() else t.stride(), None,
                 t.requires_grad and dtype.is_floating_point)


class Engine:
    """Answers the calls on the Shapes of one forward pass, and books their ATen calls with `rec`."""

    def __init__(self, rec: Any) -> None:
        self.rec = rec  # profiler._Recorder
        self.shapes: dict[int, Shape] = {}  # id(meta tensor) -> its Shape, for the tensors of the fallbacks
        self.twins: dict[int, Shape] = {}  # id(parameter or buffer of the model) -> its Shape (meta_copy's twins)
        self.paths: dict[int, str] = {}  # id(module) -> its path
        self.sequences: set[int] = set()  # ids of the Sequential copies that `sequence` runs
        self.emitted = 0  # ATen calls booked by `emit`

    def params(self, m: nn.Module) -> tuple[Any, Any]:
        """The weight and bias of a leaf module, as Shapes also where it is the original (`defer`)."""
        p, twins = m._parameters, self.twins  # (m.weight would go through Module.__getattr__)
        w, b = p["weight"], p["bias"]
        return twins.get(id(w), w), twins.get(id(b), b)

    @contextlib.contextmanager
    def running(self) -> Iterator[Engine]:
        """The context of the forward pass: the calls on Shapes in this thread come to this engine."""
        outer, active.engine = getattr(active, "engine", None), self
        try:
            yield self
        finally:
            active.engine = outer

    def call(self, func: Any, args: tuple, kwargs: dict) -> Any:
        """`func(*args, **kwargs)`, where some argument is a Shape (from `Shape.__torch_function__`)."""
        lower = LOWER.get(func)
        if lower is not None:
            emitted = self.emitted
            try:
                out = lower(self.emit, *args, **kwargs)
            except TypeError:  # arguments the lowering does not take (an out= tensor, a named dimension)
                if self.emitted != emitted:
                    raise
                out = NotImplemented
            if out is not NotImplemented:
                return out
        return self.fallback(func, args, kwargs)

    def leaf(self, module: nn.Module) -> Callable[..., Any] | None:
        """How this module's calls are booked without its forward (`answer`'s `book`), or None."""
        return LEAVES.get(type(module))

    def answer(self, book: Callable[..., Any], path: str, module: nn.Module, args: tuple, kwargs: dict) -> Any:
        """A leaf module's call, booked by `book` (from `leaf`), or NotImplemented: its forward has to run."""
        return self.book(book, path, module, args[0]) if len(args) == 1 and not kwargs else NotImplemented

    def book(self, book: Callable[..., Any], path: str, module: nn.Module, x: Any) -> Any:
        """`answer` for a call on one input `x`."""
        rec = self.rec
        # Inside another leaf's call, that one's row collects this one's calls: the forward runs.
        info = rec.rf.get(id(x)) if rec.collapse is None and type(x) is Shape else None
        return NotImplemented if info is None else book(self, path, module, x, info)

    def defer(self, parent: nn.Module) -> Callable[[nn.Module], bool] | None:
        """Which children of `parent` can stay the originals in its copy (`meta.meta_copy`'s `defer`): in a
        Sequential that `sequence` runs, which books them without copies, the known leaves without hooks."""
        return _deferrable if id(parent) in self.sequences else None

    def sequence(self, seq: nn.Module) -> Callable[[Any], Any]:
        """`nn.Sequential.forward` for the copy `seq`: each submodule in turn, those that stayed the originals
        (`defer`) booked from them directly, as their copies' calls would be.

        Why: most leaves of a network sit in Sequentials (MobileNet's conv-BN-ReLU6 triples, VGG's features), and
        copying one and reporting its calls costs more than booking it (a fifth of a MobileNetV2's profile)."""
        self.sequences.add(id(seq))

        def forward(input: Any) -> Any:
            children = seq._modules
            pending = children.pending if type(children) is Deferred and not _global_hooks() else ()
            for name, child in dict.items(children):
                if name in pending:
                    out = self.book(LEAVES[type(child)], self.paths[id(child)], child, input)
                    if out is not NotImplemented:
                        input = out
                        continue
                if type(children) is Deferred:  # an original that its book leaves to the forward, or that a global
                    child = children[name]  # hook must see called, is copied now (a copy is returned as it is)
                input = child(input)
            return input

        return forward

    def emit(self, op: Any, *args: Any, **kwargs: Any) -> Any:
        """One ATen call: its output by a shape rule (or by its meta kernel on stand-ins), booked."""
        out = fastmeta.rule_output(op, args, kwargs)
        if out is None:
            out = self.to_shapes(op(*self.to_meta(args), **self.to_meta(kwargs)))
        self.emitted += 1
        self.rec.record(op, args, kwargs, out)
        return out

    def fallback(self, func: Any, args: tuple, kwargs: dict) -> Any:
        """The meta engine for one call: stand-ins in, its ATen calls booked, Shapes out."""
        shapes: list[Shape] = []
        args, kwargs = self.to_meta((args, kwargs), shapes)
        with _Fallback(self):
            out = func(*args, **kwargs)
        for s in shapes:  # an in-place view op (x.unsqueeze_(0)) changes its input's shape
            if s.meta.shape != s.shape or s.meta.stride() != s.stride():
                s.shape, s._stride = s.meta.shape, s.meta.stride()
        return self.to_shapes(out)

    def standin(self, s: Shape) -> torch.Tensor:
        """The meta tensor that stands for `s` in the calls that fall back (one per Shape)."""
        if s.meta is None:
            s.meta = torch.empty_strided(s.shape, s.stride(), dtype=s.dtype, device="meta",
                                         requires_grad=s.requires_grad)
            self.shapes[id(s.meta)] = s
        return s.meta

    def to_meta(self, tree: Any, seen: list[Shape] | None = None) -> Any:
        def meta(s: Shape) -> torch.Tensor:
            if seen is not None:
                seen.append(s)
            return self.standin(s)

        return tree_map_only(Shape, meta, tree)

    def to_shapes(self, tree: Any) -> Any:
        return tree_map_only(Tensor, self.shape, tree)

    def shape(self, t: torch.Tensor) -> Any:
        """The Shape of a meta tensor made by a fallback (a real tensor the forward made itself stays one)."""
        s = self.shapes.get(id(t))
        if s is None:
            if not t.is_meta:
                return t
            base = self.shape(t._base) if t._base is not None else None
            stride = t.stride()
            s = Shape(t.shape, t.dtype, None if stride == fastmeta.contiguous_strides(t.shape) else stride, base,
                      t.requires_grad)
            s.meta = t
            self.shapes[id(t)] = s
        return s


def _deferrable(m: nn.Module) -> bool:
    return type(m) in LEAVES and not m._modules and not _hooked(m)


def _global_hooks() -> bool:
    g = nn.modules.module
    return bool(g._global_forward_hooks or g._global_forward_pre_hooks or g._global_backward_hooks
                or g._global_backward_pre_hooks)


def _hooked(m: nn.Module) -> bool:
    """Whether calling `m` does more than run its forward (its own hooks, a compiled call)."""
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
                or m._compiled_call_impl is not None)


class _Fallback(TorchDispatchMode):
    """The meta engine inside a fallback: each ATen call runs on meta tensors and is booked on their Shapes."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = fastmeta.run(func, args, kwargs)
        e = self.engine
        e.rec.record(func, *e.to_shapes((args, kwargs)), e.to_shapes(result))
        return result


# --- torch calls, lowered to the ATen calls the meta engine sees (NotImplemented: a case left to the fallback) ---
# Each mirrors the signature of the function it stands for, so that keyword calls bind the same way.

def _conv(emit, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    if type(input) is not Shape or isinstance(padding, str) or input.dim() != weight.dim():
        return NotImplemented
    n = weight.dim() - 2
    return emit(aten.convolution.default, input, weight, bias, _list(stride, n), _list(padding, n),
                _list(dilation, n), False, [0] * n, groups)


def _list(v, n):
    """An int or a sequence as the list an ATen call takes (`aten.convolution` rejects a bare int)."""
    return [v] * n if isinstance(v, int) else list(v)


def _linear(emit, input, weight, bias=None):
    if type(input) is not Shape or input.dim() != 2:  # more dimensions: a matmul and views
        return NotImplemented
    w = emit(aten.t.default, weight)
    return emit(aten.mm.default, input, w) if bias is None else emit(aten.addmm.default, bias, input, w)


def _batch_norm(emit, input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                eps=1e-5):
    if type(input) is not Shape or training or running_mean is None or running_var is None:
        return NotImplemented
    return emit(aten.native_batch_norm.default, input, weight, bias, running_mean, running_var, False, momentum,
                eps)[0]


def _activation(name: str) -> Callable[..., Any]:
    """F.relu(input, inplace=False) and its kind: aten.relu, or aten.relu_ in place."""
    op, op_ = getattr(aten, name).default, getattr(aten, name + "_").default

    def lower(emit, input, inplace=False):
        return emit(op_ if inplace else op, input) if type(input) is Shape else NotImplemented

    return lower


def _elementwise(op: Any) -> Callable[..., Any]:
    """torch.sigmoid(input) and its kind: one ATen call, no options."""
    def lower(emit, input):
        return emit(op, input) if type(input) is Shape else NotImplemented

    return lower


_relu, _sigmoid, _tanh = _activation("relu"), _elementwise(aten.sigmoid.default), _elementwise(aten.tanh.default)


def _relu_(emit, input):
    return _relu(emit, input, True)


def _leaky_relu(emit, input, negative_slope=0.01, inplace=False):
    if type(input) is not Shape:
        return NotImplemented
    return emit(aten.leaky_relu_.default if inplace else aten.leaky_relu.default, input, negative_slope)


def _gelu(emit, input, approximate="none"):
    return emit(aten.gelu.default, input, approximate=approximate) if type(input) is Shape else NotImplemented


def _hardtanh(emit, input, min_val=-1.0, max_val=1.0, inplace=False):
    if type(input) is not Shape or min_val > max_val:
        return NotImplemented
    return emit(aten.hardtanh_.default if inplace else aten.hardtanh.default, input, min_val, max_val)


def _relu6(emit, input, inplace=False):
    return _hardtanh(emit, input, 0.0, 6.0, inplace)


def _max_pool2d(emit, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                return_indices=False):
    if type(input) is not Shape or input.dim() != 4 or return_indices:
        return NotImplemented
    return emit(aten.max_pool2d_with_indices.default, input, _list(kernel_size, 2),
                [] if stride is None else _list(stride, 2), _list(padding, 2), _list(dilation, 2), ceil_mode)[0]


def _avg_pool2d(emit, input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                divisor_override=None):
    if type(input) is not Shape or input.dim() != 4:
        return NotImplemented
    return emit(aten.avg_pool2d.default, input, _list(kernel_size, 2), [] if stride is None else _list(stride, 2),
                _list(padding, 2), ceil_mode, count_include_pad, divisor_override)


def _adaptive_avg_pool2d(emit, input, output_size):
    size = _adaptive_size(input, output_size)
    if size is None:
        return NotImplemented
    if size == [1, 1]:  # ATen's adaptive_avg_pool2d: a 1x1 output is a mean over H and W
        return emit(aten.mean.dim, input, [-1, -2], True)
    return emit(aten._adaptive_avg_pool2d.default, input, size)


def _adaptive_size(input, output_size):
    """The output size F.adaptive_avg_pool2d asks ATen for (None: keep that side), or None where not covered."""
    if type(input) is not Shape or input.dim() != 4 or not input.is_contiguous():
        return None
    size = [output_size] * 2 if isinstance(output_size, int) else list(output_size)
    return [d if s is None else s for s, d in zip(size, input.shape[-2:])] if len(size) == 2 else None


def _dropout(emit, input, p=0.5, training=True, inplace=False):
    if type(input) is not Shape or training or not 0.0 <= p <= 1.0:
        return NotImplemented
    return input  # eval mode: ATen returns the input itself and dispatches nothing


def _flatten(emit, input, start_dim=0, end_dim=-1):
    shape = _flat_shape(input, start_dim, end_dim)
    if shape is None or shape is input:
        return NotImplemented if shape is None else input  # (ATen returns the input itself)
    return emit(aten.view.default, input, shape)


def _flat_shape(input, start_dim, end_dim):
    """torch.flatten's output shape, for the contiguous inputs it views; `input` where it returns the input."""
    if type(input) is not Shape or not input.shape or not input.is_contiguous():
        return None
    start, end = start_dim % input.dim(), end_dim % input.dim()
    if start >= end:
        return input if start == end else None
    return [*input.shape[:start], math.prod(input.shape[start:end + 1]), *input.shape[end + 1:]]


def _view(emit, input, *shape):
    if len(shape) == 1 and isinstance(shape[0], (list, tuple)):
        shape = shape[0]
    if type(input) is not Shape or not all(type(s) is int for s in shape):  # x.view(dtype) is another op
        return NotImplemented
    return emit(aten.view.default, input, list(shape))


def _reshape(emit, input, *shape):
    """A view of a contiguous input; a copy then a view (aten.clone, aten._unsafe_view) where no view can do."""
    if type(input) is not Shape:
        return NotImplemented
    if input.is_contiguous():
        return _view(emit, input, *shape)
    size = fastmeta.infer_size(shape[0] if len(shape) == 1 and isinstance(shape[0], (list, tuple)) else shape,
                                input.numel())
    if size is None or _view_strides(input.shape, input.stride(), size) is not None:
        return NotImplemented  # (a non-contiguous view: left to ATen, whose call for it depends on the case)
    copy = emit(aten.clone.default, input, memory_format=torch.contiguous_format)
    return emit(aten._unsafe_view.default, copy, size)


def _view_strides(shape, stride, size):
    """The strides of a view of (shape, stride) as `size`, or None where no view can be it (ATen's computeStride)."""
    if math.prod(shape) == 0 or not shape:
        return None  # (cases left to ATen)
    new = [0] * len(size)
    view_d, base, tensor_numel, view_numel = len(size) - 1, stride[-1], 1, 1
    for d in range(len(shape) - 1, -1, -1):
        tensor_numel *= shape[d]
        if d == 0 or (shape[d - 1] != 1 and stride[d - 1] != tensor_numel * base):  # the end of a contiguous chunk
            while view_d >= 0 and (view_numel < tensor_numel or size[view_d] == 1):
                new[view_d] = view_numel * base
                view_numel *= size[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return None
            if d > 0:
                base, tensor_numel, view_numel = stride[d - 1], 1, 1
    return new if view_d == -1 else None


def _transpose(emit, input, dim0, dim1):
    return emit(aten.transpose.int, input, dim0, dim1) if type(input) is Shape else NotImplemented


def _contiguous(emit, input, memory_format=torch.contiguous_format):
    if type(input) is not Shape or memory_format is not torch.contiguous_format:
        return NotImplemented
    if input.is_contiguous():
        return input  # ATen returns the input itself
    return emit(aten.clone.default, input, memory_format=torch.contiguous_format)


def _chunk(emit, input, chunks, dim=0):
    if type(input) is not Shape or not input.shape or chunks < 1:
        return NotImplemented
    size = -(-input.shape[dim] // chunks)  # ATen's chunk is a split in pieces of this size
    return tuple(emit(aten.split.Tensor, input, size, dim)) if size > 0 else NotImplemented


def _cat(emit, tensors, dim=0):
    if not tensors or any(type(t) is not Shape for t in tensors):
        return NotImplemented
    return emit(aten.cat.default, list(tensors), dim)


def _mean(emit, input, dim=None, keepdim=False, *, dtype=None):
    if type(input) is not Shape or dim is None or dtype is not None:
        return NotImplemented
    return emit(aten.mean.dim, input, [dim] if isinstance(dim, int) else list(dim), keepdim)


def _binary(name: str) -> Callable[..., Any]:
    """x + y, x.add(y), torch.add(x, y), y + x for a number y (add(x, y) in ATen too), and x += y."""
    op = getattr(aten, name).Tensor

    def lower(emit, input, other, *, alpha=1, rounding_mode=None):
        if type(input) is not Shape or alpha != 1 or rounding_mode is not None:
            return NotImplemented
        return emit(op, input, other)

    return lower


LOWER: dict[Any, Callable[..., Any]] = {
    F.conv1d: _conv, F.conv2d: _conv, F.conv3d: _conv,
    F.linear: _linear,
    F.batch_norm: _batch_norm,
    F.relu: _relu, torch.relu: _relu, Tensor.relu: _relu, F.relu_: _relu_, torch.relu_: _relu_, Tensor.relu_: _relu_,
    F.relu6: _relu6, F.hardtanh: _hardtanh,
    F.silu: _activation("silu"), F.hardswish: _activation("hardswish"), F.hardsigmoid: _activation("hardsigmoid"),
    F.leaky_relu: _leaky_relu, F.gelu: _gelu,
    torch.sigmoid: _sigmoid, Tensor.sigmoid: _sigmoid, torch.tanh: _tanh, Tensor.tanh: _tanh,
    F.max_pool2d: _max_pool2d, F.avg_pool2d: _avg_pool2d, F.adaptive_avg_pool2d: _adaptive_avg_pool2d,
    F.dropout: _dropout,
    torch.flatten: _flatten, Tensor.flatten: _flatten,
    Tensor.view: _view, Tensor.reshape: _reshape, torch.reshape: _reshape,
    Tensor.transpose: _transpose, torch.transpose: _transpose,
    Tensor.contiguous: _contiguous,
    Tensor.chunk: _chunk, torch.chunk: _chunk,
    torch.cat: _cat,
    Tensor.mean: _mean, torch.mean: _mean,
    **{f: _binary("add") for f in (Tensor.__add__, Tensor.__radd__, Tensor.add, torch.add)},
    **{f: _binary("add_") for f in (Tensor.__iadd__, Tensor.add_)},
    **{f: _binary("mul") for f in (Tensor.__mul__, Tensor.__rmul__, Tensor.mul, torch.mul)},
    **{f: _binary("mul_") for f in (Tensor.__imul__, Tensor.mul_)},
    **{f: _binary("sub") for f in (Tensor.__sub__, Tensor.sub, torch.sub)},
    **{f: _binary("sub_") for f in (Tensor.__isub__, Tensor.sub_)},
    **{f: _binary("div") for f in (Tensor.__truediv__, Tensor.div, torch.div)},
    **{f: _binary("div_") for f in (Tensor.__itruediv__, Tensor.div_)},
}


# --- leaf modules, booked without running their forward -------------------------------------------------------
# Each answers a call of an exact class (a subclass may have another forward) for one input Shape `x` whose
# receptive field is `info`, books it with `rec.leaf` from the same rules the meta engine's calls go through
# (fastmeta's shapes, ops' geometry, multiply-adds and fields), and returns its output; NotImplemented for a case
# it leaves to the module's forward (which then makes the same calls, for the meta engine to book). `m` may be
# the original module (`Engine.defer`): its parameters are read through `engine.params`, its mode never (eval).

CONV, MAX_POOL, AVG_POOL = aten.convolution.default, aten.max_pool2d_with_indices.default, aten.avg_pool2d.default
VIEW = aten.view.default
_CONV_SHAPE = fastmeta.RULES[CONV]


def _conv_leaf(engine, path, m, x, info):
    if m.padding_mode != "zeros" or isinstance(m.padding, str):
        return NotImplemented
    w, b = engine.params(m)
    args = (x, w, b, m.stride, m.padding, m.dilation, False, None, m.groups)
    out = _CONV_SHAPE(*args)
    if out is None:
        return NotImplemented
    geo, rec = ops.conv_geometry(args), engine.rec
    return rec.leaf(path, m, "conv", x, out, rec.use(w) + rec.use(b), ops.conv_macs(args, out), geo=geo,
                    info=ops.propagate_rf(CONV, "conv", geo, [info], x, out))


def _linear_leaf(engine, path, m, x, info):
    w, b = engine.params(m)
    if x.dim() != 2 or type(w) is not Shape or x.shape[1] != w.shape[1] or x.dtype != w.dtype:
        return NotImplemented
    out, rec = Shape((x.shape[0], w.shape[0]), x.dtype), engine.rec  # aten.addmm(bias, x, w.t())
    return rec.leaf(path, m, "fc", x, out, rec.use(w) + rec.use(b), x.shape[0] * w.shape[1] * w.shape[0], info=info)


def _batch_norm_leaf(dims: int) -> Callable[..., Any]:
    def book(engine, path, m, x, info):
        # (dict.get: the running statistics are there, but a Deferred copy's would be copied by reading them)
        if x.dim() != dims or dict.get(m._buffers, "running_mean") is None or not x.is_contiguous():
            return NotImplemented
        w, b = engine.params(m)
        rec = engine.rec
        return rec.leaf(path, m, "norm", x, Shape(x.shape, x.dtype), rec.use(w) + rec.use(b), info=info)

    return book


def _activation_leaf(engine, path, m, x, info):
    """ReLU, ReLU6, Sigmoid...: elementwise, in place (the output is the input) or into a new tensor."""
    d = m.__dict__  # (a missing attribute costs Module.__getattr__ an exception)
    inplace = d.get("inplace", False)
    if not (inplace or x.is_contiguous()) or d.get("approximate", "none") not in ("none", "tanh"):
        return NotImplemented
    if isinstance(m, nn.Hardtanh) and m.min_val > m.max_val:
        return NotImplemented
    return engine.rec.leaf(path, m, "act", x, x if inplace else Shape(x.shape, x.dtype), 0, info=info)


def _pool_leaf(engine, path, m, x, info):
    if isinstance(m, nn.MaxPool2d):
        if m.return_indices:
            return NotImplemented
        op, args = MAX_POOL, (x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
    else:
        op, args = AVG_POOL, (x, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                              m.divisor_override)
    return _book_pool(engine.rec, path, m, x, info, op, args)


def _adaptive_pool_leaf(engine, path, m, x, info):
    size = _adaptive_size(x, m.output_size)
    if size is None:
        return NotImplemented
    if size == [1, 1]:  # see _adaptive_avg_pool2d
        return _book_pool(engine.rec, path, m, x, info, aten.mean.dim, (x, [-1, -2], True))
    return _book_pool(engine.rec, path, m, x, info, aten._adaptive_avg_pool2d.default, (x, size))


def _book_pool(rec, path, m, x, info, op, args):
    out = fastmeta.rule_output(op, args, {})
    if out is None:
        return NotImplemented
    out = out[0] if isinstance(out, tuple) else out  # max pooling's indices
    geo = ops.geometry(op, args, [x], out)
    return rec.leaf(path, m, "pool", x, out, 0, pool=ops.pool_ops(op, args, [x], out), geo=geo,
                    info=ops.propagate_rf(op, "pool", geo, [info], x, out))


def _flatten_leaf(engine, path, m, x, info):
    shape = _flat_shape(x, m.start_dim, m.end_dim)
    if shape is None:
        return NotImplemented
    out = x
    if shape is not x:  # a view, whose field is the whole map when it flattens to (N, features)
        out = x.view_of(shape)
        info = ops.propagate_rf(VIEW, ops.op_kind(VIEW, [x], out, (x, shape)), None, [info], x, out)
    return engine.rec.leaf(path, m, "flatten", x, out, 0, info=info)


def _skip_leaf(engine, path, m, x, info):
    """Dropout in eval mode, Identity: the input itself, no row (as `post` books a "skip" leaf)."""
    if isinstance(m, nn.Dropout) and not 0.0 <= m.p <= 1.0:
        return NotImplemented
    return x


LEAVES: dict[type, Callable[..., Any]] = {
    nn.Conv1d: _conv_leaf, nn.Conv2d: _conv_leaf, nn.Conv3d: _conv_leaf,
    nn.Linear: _linear_leaf,
    nn.BatchNorm1d: _batch_norm_leaf(3), nn.BatchNorm2d: _batch_norm_leaf(4), nn.BatchNorm3d: _batch_norm_leaf(5),
    **{cls: _activation_leaf for cls in (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.SiLU, nn.Hardswish, nn.Hardsigmoid,
                                         nn.Sigmoid, nn.Tanh, nn.GELU, nn.LeakyReLU)},
    nn.MaxPool2d: _pool_leaf, nn.AvgPool2d: _pool_leaf, nn.AdaptiveAvgPool2d: _adaptive_pool_leaf,
    nn.Flatten: _flatten_leaf,
    nn.Dropout: _skip_leaf, nn.Identity: _skip_leaf,
}
