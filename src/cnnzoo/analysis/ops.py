"""What the profiler knows about each operation: its row type, its multiply-adds, its geometry, its receptive field.

Two vocabularies meet here. Leaf modules (`nn.Conv2d`, `nn.ReLU`, `ChannelShuffle`, ...) are classified by
`module_kind`; everything a module's hooks cannot see (a residual `+`, `torch.cat`, `F.relu`, `x.mean((2, 3))`)
is classified from the ATen operator the forward pass dispatches, by `op_kind`.

The lecture's arithmetic, for one output element each (K = kernel size, so K*K for a square kernel):

    conv:  (Cin / groups) * K * K   multiply-adds         fc:   Cin     multiply-adds
    pool:  K * K                    (one op per window element; global pooling has K = the map's size)

Everything else (norm, act, add, mul, concat, flatten, shuffle) is 0 in the lecture's convention.
"""
from __future__ import annotations

import math
from typing import Any, TypedDict

import torch
from torch import nn

from .fastmeta import TENSORS

aten = torch.ops.aten

# Row types, in the order the footer lists them.
KINDS = ("conv", "fc", "matmul", "pool", "norm", "act", "add", "mul", "concat", "flatten", "shuffle", "other")

_MODULE_KINDS: tuple[tuple[tuple[type, ...], str], ...] = (
    ((nn.modules.conv._ConvNd,), "conv"),
    ((nn.Linear, nn.Bilinear), "fc"),
    ((nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
      nn.modules.pooling._AdaptiveMaxPoolNd, nn.modules.pooling._LPPoolNd), "pool"),
    ((nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.CrossMapLRN2d), "norm"),
    ((nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid,
      nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Softmax, nn.LogSoftmax, nn.Softsign,
      nn.Threshold), "act"),
    ((nn.Flatten,), "flatten"),
    ((nn.ChannelShuffle,), "shuffle"),
    ((nn.modules.dropout._DropoutNd, nn.AlphaDropout, nn.Identity), "skip"),  # identities in eval mode
)


_module_kind_cache: dict[type, str | None] = {}


def module_kind(module: nn.Module) -> str | None:
    """The row type of a leaf module whose internals are one row, "skip" for identities, else None."""
    cls = type(module)
    if cls not in _module_kind_cache:
        kind = next((k for types, k in _MODULE_KINDS if issubclass(cls, types)), None)
        _module_kind_cache[cls] = kind or ("shuffle" if cls.__name__ == "ChannelShuffle" else None)
    return _module_kind_cache[cls]


# ATen operators by row type. Views and bookkeeping ops make no row (a 4-D -> 2-D view is the lecture's flatten).
_CONV = {aten.convolution.default, aten._convolution.default, aten.convolution_overrideable.default}
_MM = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default}
_POOL = {
    aten.max_pool2d_with_indices.default, aten.max_pool2d.default, aten.max_pool1d.default,
    aten.max_pool3d_with_indices.default, aten.avg_pool1d.default, aten.avg_pool2d.default, aten.avg_pool3d.default,
}
_ADAPTIVE = {aten._adaptive_avg_pool2d.default, aten.adaptive_max_pool2d.default, aten._adaptive_avg_pool3d.default,
             aten.adaptive_max_pool1d.default}
_NORM = {aten.native_batch_norm.default, aten._native_batch_norm_legit.default,
         aten._native_batch_norm_legit_no_training.default, aten._native_batch_norm_legit.no_stats,
         aten.native_layer_norm.default, aten.native_group_norm.default}
_ACT_NAMES = {"relu", "relu6", "hardtanh", "leaky_relu", "prelu", "prelu_kernel", "elu", "celu", "selu", "gelu",
              "silu", "mish", "sigmoid", "tanh", "hardswish", "hardsigmoid", "softplus", "softmax", "safe_softmax",
              "log_softmax", "threshold", "clamp", "clamp_min"}
_ADD_NAMES = {"add", "sub"}
_MUL_NAMES = {"mul", "div"}
_VIEW_NAMES = {"view", "_unsafe_view", "reshape", "_reshape_alias", "t", "transpose", "permute", "expand",
               "unsqueeze", "squeeze", "slice", "select", "split", "split_with_sizes", "chunk", "unbind", "alias",
               "detach", "as_strided", "narrow", "contiguous", "lift_fresh", "flatten", "unflatten", "view_as",
               "expand_as", "empty", "empty_like", "zeros", "zeros_like", "ones", "ones_like", "full", "fill",
               "zero", "copy", "scalar_tensor", "empty_strided", "new_empty", "new_zeros", "_to_copy", "clone",
               "detach_copy", "split_copy", "resize", "set_", "sym_size", "sym_stride", "sym_numel", "dim"}
_SHUFFLE_NAMES = {"channel_shuffle", "native_channel_shuffle", "pixel_shuffle", "pixel_unshuffle"}


def op_name(func: Any) -> str:
    """`aten.relu_.default` -> "relu": the operator without overload, in-place underscore or `_with_indices`."""
    name = func._overloadpacket.__name__
    name = name.removesuffix("_with_indices").rstrip("_")
    return name.lstrip("_") if name.startswith("_") and not name.startswith("__") else name


_DYNAMIC = "?"  # the row type depends on the arguments
_static_kind_cache: dict[Any, str | None] = {}


def _static_kind(func: Any) -> str | None:
    if func in _CONV:
        return "conv"
    if func in _MM:
        return "matmul"
    if func in _POOL or func in _ADAPTIVE:
        return "pool"
    if func in _NORM:
        return "norm"
    name = func._overloadpacket.__name__.rstrip("_")
    if name == "cat":
        return "concat"
    if name in _SHUFFLE_NAMES:
        return "shuffle"
    if name in ("mean", "view", "_unsafe_view", "reshape", "flatten", "clone") or name in _ADD_NAMES | _MUL_NAMES:
        return _DYNAMIC
    if name in _VIEW_NAMES:
        return None
    return "act" if name.lstrip("_") in _ACT_NAMES else "other"


def op_kind(func: Any, ins: list[torch.Tensor], out: torch.Tensor | None, args: tuple) -> str | None:
    """The row type an ATen call makes on its own, or None for views and bookkeeping (no row)."""
    kind = _static_kind_cache.get(func, _DYNAMIC + _DYNAMIC)
    if kind == _DYNAMIC + _DYNAMIC:
        kind = _static_kind_cache[func] = _static_kind(func)
    if kind != _DYNAMIC:
        return kind
    name = func._overloadpacket.__name__.rstrip("_")
    if name == "mean":
        return "pool" if _spatial_mean(args) else "other"
    if name == "clone":  # (N, g, C/g, H, W) transposed, then materialised: a channel shuffle
        return "shuffle" if ins and ins[0].dim() == 5 and not ins[0].is_contiguous() else None
    if name in _ADD_NAMES or name in _MUL_NAMES:
        if not (isinstance(args[0], TENSORS) and len(args) > 1 and isinstance(args[1], TENSORS)):
            return "other"
        return "add" if name in _ADD_NAMES else "mul"
    return "flatten" if out is not None and ins and _is_flatten(ins[0], out) else None


def _spatial_mean(args: tuple) -> bool:
    """`x.mean((2, 3))`: a mean over every dimension after the channels is global average pooling."""
    x, dims = args[0], args[1] if len(args) > 1 else None
    if not isinstance(x, TENSORS) or x.dim() < 3 or not dims:
        return False
    return sorted(d % x.dim() for d in dims) == list(range(2, x.dim()))


def _is_flatten(x: torch.Tensor, out: torch.Tensor) -> bool:
    return x.dim() >= 3 and out.dim() == 2 and out.shape[0] == x.shape[0]


def _pair(v: Any, n: int) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * n
    if type(v) is not tuple or not v or type(v[0]) is not int:  # a module's attributes are int tuples already
        v = tuple(map(int, v))
    return v * n if len(v) == 1 else v


def adaptive_windows(size: int, out: int) -> list[int]:
    """Window sizes of adaptive pooling along one axis: [floor(i*size/out), ceil((i+1)*size/out))."""
    return [-(-(i + 1) * size // out) - (i * size // out) for i in range(out)]


class Geometry(TypedDict, total=False):
    """kernel, stride, pad, dilation (tuples over the spatial axes), filters and groups of one conv or pool.

    (A TypedDict: built as a dict literal, the quickest object Python makes.)"""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pad: tuple[int, ...]
    dilation: tuple[int, ...]
    filters: int
    groups: int
    transposed: bool


def geometry(func: Any, args: tuple, ins: list[torch.Tensor], out: torch.Tensor) -> Geometry | None:
    """Kernel, stride and padding, read from the operator's own arguments (so functional calls have them too)."""
    if func in _CONV:
        return conv_geometry(args)
    if func in _POOL:
        n = ins[0].dim() - 2
        kernel = _pair(args[1], n)
        stride = _pair(args[2], n) if len(args) > 2 and args[2] else kernel
        pad = _pair(args[3], n) if len(args) > 3 else (0,) * n
        dilation = _pair(args[4], n) if func in (aten.max_pool2d_with_indices.default, aten.max_pool2d.default,
                                                  aten.max_pool3d_with_indices.default) and len(args) > 4 else (1,) * n
        return {"kernel": kernel, "stride": stride, "pad": pad, "dilation": dilation}
    if func in _ADAPTIVE or op_name(func) == "mean":
        x = ins[0]
        sizes, outs = tuple(x.shape[2:]), tuple(out.shape[2:]) if out.dim() == x.dim() else (1,) * (x.dim() - 2)
        kernel = tuple(max(adaptive_windows(s, o)) for s, o in zip(sizes, outs))
        # The lecture (after the paper) writes global pooling as "7x7, stride 1"; one window has no stride.
        stride = tuple(1 if o == 1 else s // o for s, o in zip(sizes, outs))
        return {"kernel": kernel, "stride": stride, "pad": (0,) * len(sizes), "dilation": (1,) * len(sizes)}
    return None


def conv_geometry(args: tuple) -> Geometry:
    """`geometry` of aten.convolution(x, w, bias, stride, pad, dilation, transposed, output_pad, groups)."""
    w = args[1]
    n = w.dim() - 2
    transposed = bool(args[6]) if len(args) > 6 else False
    groups = int(args[8]) if len(args) > 8 else 1
    filters = w.shape[1] * groups if transposed else w.shape[0]
    return {"kernel": tuple(w.shape[2:]), "stride": _pair(args[3], n), "pad": _pair(args[4], n),
            "dilation": _pair(args[5], n), "filters": int(filters), "groups": groups, "transposed": transposed}


def conv_macs(args: tuple, out: torch.Tensor) -> int:
    """`macs` of aten.convolution (its arguments as `conv_geometry`'s)."""
    transposed = bool(args[6]) if len(args) > 6 else False
    return (args[0].numel() if transposed else out.numel()) * math.prod(args[1].shape[1:])


def macs(func: Any, args: tuple, ins: list[torch.Tensor], out: torch.Tensor) -> int:
    """Multiply-adds of a convolution or matrix product (0 for anything else).

    conv: every output element reads (Cin/groups)*K*K inputs; a transposed conv scatters every input element
    to (Cout/groups)*K*K outputs. mm: M*K*N; bmm: B*M*K*N.
    """
    if func in _CONV:
        return conv_macs(args, out)
    if func in (aten.mm.default, aten.addmm.default):
        a, b = (args[0], args[1]) if func is aten.mm.default else (args[1], args[2])
        return a.shape[0] * a.shape[1] * b.shape[1]
    if func in (aten.bmm.default, aten.baddbmm.default):
        a, b = (args[0], args[1]) if func is aten.bmm.default else (args[1], args[2])
        return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
    return 0


def pool_ops(func: Any, args: tuple, ins: list[torch.Tensor], out: torch.Tensor) -> int:
    """The lecture's pooling count: K*K per output element (adaptive windows summed exactly; a mean: the input)."""
    if func in _POOL:
        n = ins[0].dim() - 2
        return out.numel() * math.prod(_pair(args[1], n))
    if func in _ADAPTIVE:
        x = ins[0]
        per_axis = [sum(adaptive_windows(s, o)) for s, o in zip(x.shape[2:], out.shape[2:])]
        return x.shape[0] * x.shape[1] * math.prod(per_axis)
    if op_name(func) == "mean":
        return ins[0].numel()
    return 0


def propagate_rf(func: Any, kind: str | None, geo: Geometry | None, ins_rf: list[tuple], x: torch.Tensor | None,
                 out: torch.Tensor) -> tuple | None:
    """Receptive field and cumulative stride (jump) of `out`, per spatial axis, from those of the inputs.

    A K-kernel of stride s and dilation d on an input with field r and jump j: r' = r + (K-1)*d*j, j' = j*s.
    Two stacked 3x3 convs: r = 1 + 2 + 2 = 5, the field of one 5x5. Global pooling, flatten and fc see the whole map.
    """
    if not ins_rf:
        return None
    if len(ins_rf) == 1:
        rf, jump = ins_rf[0]
    else:
        rf, jump = tuple(map(max, *(r[0] for r in ins_rf))), tuple(map(max, *(r[1] for r in ins_rf)))
    if geo is not None and len(geo["kernel"]) == len(rf):
        kernel, dilation, stride = geo["kernel"], geo["dilation"], geo["stride"]
        if geo.get("transposed"):
            jump = tuple([j / s for j, s in zip(jump, stride)])
            return tuple([r + (k - 1) * d * j for r, k, d, j in zip(rf, kernel, dilation, jump)]), jump
        rf = tuple([r + (k - 1) * d * j for r, k, d, j in zip(rf, kernel, dilation, jump)])
        return rf, tuple([j * s for j, s in zip(jump, stride)])
    if kind == "flatten" and x is not None and x.dim() - 2 == len(rf):
        sizes = tuple(x.shape[2:])
        return tuple(r + (s - 1) * j for r, s, j in zip(rf, sizes, jump)), tuple(j * s for j, s in zip(jump, sizes))
    return rf, jump
