"""The lecture's per-layer table, computed for any model on the meta device.

`profile("alexnet", 227)` builds the model on the meta device (shapes, no storage), runs one forward pass on a
meta tensor, and records every ATen operator it dispatches, attributed to the innermost module that ran it.
Nothing is allocated, so the cost is the same at 224 or 4096 pixels and at batch 1 or 1024. A model passed in
is copied to the meta device first (its parameters are never read and it is never modified: no hooks, no
buffers are left behind on it).

One row per operation the lecture would list: a leaf module (conv, pool, fc, norm, act, flatten, shuffle) is
one row whatever ATen ops it runs inside, and the functional operations that module hooks cannot see (the
residual add, torch.cat, the SE block's scaling multiply, F.relu, F.adaptive_avg_pool2d, x.mean((2, 3)),
torch.flatten, a view-transpose channel shuffle) are rows of their own, named after the module whose forward
ran them ("layer1.0.add"). Dropout and identities make no row (eval mode).

The convention, the lecture's (and stated in the footer of every output):
- memory = output elements * bytes per element / 1024 (KB), for every row, in-place and view rows included, as
  the lecture lists flatten's 36 KB; the footer also gives the newly allocated part. The lecture's own
  "AlexNet total: 1.9 MB" is the conv+fc rows only (`Profile.lecture_memory_kb`); its table rows sum to 2.3 MB.
- params = weights + biases of the layers the forward pass uses, shared parameters once; parameters the pass
  never touches (GoogLeNet's auxiliary heads in eval mode) are reported apart, not in the totals.
- flop = multiply-adds (MAC): conv Cout*H'*W'*(Cin/groups)*K*K, fc Cin*Cout, pool C*H'*W'*K*K; every other row 0.
Every figure is a Python int (or an exact multiple of 1/1024 KB), the rows sum exactly to the totals, and the
figures are for the whole batch.
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
from typing import Any, Iterable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..errors import CnnzooError
from . import fastmeta, ops
from .meta import meta_model, run_meta


@dataclasses.dataclass(slots=True)
class Row:
    """One line of the table. Shapes are per sample (C, H, W) or (C,); memory and flops are for the batch."""

    name: str
    type: str  # conv, fc, matmul, pool, norm, act, add, mul, concat, flatten, shuffle, other; "module" when grouped
    op: str  # the module's class, or the ATen operator of a functional row
    module: str  # dotted path of the module that ran it ("" = the model's own forward)
    input: tuple[int, ...]
    output: tuple[int, ...]
    memory_bytes: int
    params: int
    flops: int  # multiply-adds
    filters: int | None = None
    kernel: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    pad: tuple[int, ...] | None = None
    groups: int | None = None
    receptive_field: tuple[int, ...] | None = None
    jump: tuple[int, ...] | None = None  # cumulative stride: input pixels between neighbouring outputs
    allocates: bool = True  # False for in-place ops and views, whose output reuses their input's storage

    @property
    def memory_kb(self) -> float:
        return self.memory_bytes / 1024


@dataclasses.dataclass(frozen=True)
class Totals:
    memory_bytes: int = 0
    params: int = 0
    flops: int = 0
    rows: int = 0

    @property
    def memory_kb(self) -> float:
        return self.memory_bytes / 1024

    def __add__(self, other: Totals) -> Totals:
        return Totals(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    @classmethod
    def of(cls, rows: Iterable[Row]) -> Totals:
        return sum((cls(r.memory_bytes, r.params, r.flops, 1) for r in rows), cls())


@dataclasses.dataclass
class Profile:
    """The rows of one model at one input size, with the totals, the unused parameters, and the formatters."""

    model: str
    input: tuple[int, int, int]
    batch_size: int
    dtype: torch.dtype
    rows: list[Row]
    unused_params: int = 0
    unused_modules: tuple[str, ...] = ()
    other_ops: dict[str, int] = dataclasses.field(default_factory=dict)
    matmul_macs: int = 0  # every conv and matrix product, counted op by op: the cross-check of the conv+fc rows
    hidden: dict[str, Totals] = dataclasses.field(default_factory=dict)  # rows left out by `select`, by type
    modules: dict[str, str] = dataclasses.field(default_factory=dict)  # module path -> class name
    depth: int | None = None
    # Of the whole model, whatever `select` or `group` later shows:
    conv_fc_macs: int = 0  # multiply-adds of the conv and fc rows: torchvision's `_ops`, FlopCounterMode / 2
    lecture_memory_bytes: int = 0  # outputs of the conv and fc rows: the lecture's "AlexNet total: 1.9 MB"
    allocated_bytes: int = 0  # outputs of the rows that allocate (in-place ops and views excluded)

    @property
    def total(self) -> Totals:
        return Totals.of(self.rows)

    def by_type(self) -> dict[str, Totals]:
        out: dict[str, Totals] = {}
        for r in self.rows:
            out[r.type] = out.get(r.type, Totals()) + Totals(r.memory_bytes, r.params, r.flops, 1)
        return out

    @property
    def lecture_memory_kb(self) -> float:
        return self.lecture_memory_bytes / 1024

    @property
    def allocated_kb(self) -> float:
        return self.allocated_bytes / 1024

    def select(self, *types: str) -> Profile:
        """Only rows of these types (`select("conv", "pool", "flatten", "fc")` is the lecture's table).

        The totals become those of the rows shown; the footer says what was left out."""
        keep = [r for r in self.rows if r.type in types]
        hidden = dict(self.hidden)
        for r in self.rows:
            if r.type not in types:
                hidden[r.type] = hidden.get(r.type, Totals()) + Totals(r.memory_bytes, r.params, r.flops, 1)
        return dataclasses.replace(self, rows=keep, hidden=hidden)

    def head(self, n: int) -> Profile:
        """The first `n` rows (`select("conv", "pool").head(5)` is GoogLeNet's stem), totals of those rows."""
        hidden = dict(self.hidden)
        for r in self.rows[n:]:
            hidden[r.type] = hidden.get(r.type, Totals()) + Totals(r.memory_bytes, r.params, r.flops, 1)
        return dataclasses.replace(self, rows=self.rows[:n], hidden=hidden)

    def group(self, depth: int) -> Profile:
        """One row per module `depth` levels down (a stage at 1, a residual block at 2), with its subtotals.

        Consecutive rows under the same module merge; rows of shallower modules stay as they are."""
        if depth < 1:
            raise CnnzooError(f"depth must be at least 1, got {depth}")
        def key(r: Row) -> str | None:
            parts = r.module.split(".") if r.module else []
            return ".".join(parts[:depth]) if len(parts) >= depth else None

        rows: list[Row] = []
        for key, run in itertools.groupby(self.rows, key=key):
            run = list(run)
            if key is None or (len(run) == 1 and run[0].module == key):
                rows += run
                continue
            t = Totals.of(run)
            rows.append(Row(
                name=key, type="module", op=self.modules.get(key, ""), module=key, input=run[0].input,
                output=run[-1].output, memory_bytes=t.memory_bytes, params=t.params, flops=t.flops,
                receptive_field=run[-1].receptive_field, jump=run[-1].jump, allocates=any(r.allocates for r in run)))
        return dataclasses.replace(self, rows=rows, depth=depth)

    # Formatting lives in report.py; these are the short spellings.
    def table(self, flops: str = "mac") -> str:
        from .report import format_table
        return format_table(self, flops=flops)

    def markdown(self, flops: str = "mac") -> str:
        from .report import format_markdown
        return format_markdown(self, flops=flops)

    def csv(self, flops: str = "mac") -> str:
        from .report import format_csv
        return format_csv(self, flops=flops)

    def to_dict(self) -> dict:
        from .report import to_dict
        return to_dict(self)

    def json(self, indent: int | None = 1) -> str:
        from .report import format_json
        return format_json(self, indent=indent)

    def __str__(self) -> str:
        return self.table()


class _Frame:
    """A module call in progress; `kind` is its row type when the module is one row (a known leaf)."""

    __slots__ = ("path", "kind", "input", "params", "macs", "pool", "geo")

    def __init__(self, path: str, kind: str | None, input: torch.Tensor | None = None) -> None:
        self.path, self.kind, self.input = path, kind, input
        self.params = self.macs = self.pool = 0
        self.geo: ops.Geometry | None = None


_Tensor = torch.Tensor


def _tensors(tree: Any) -> list[torch.Tensor]:
    """The tensors of an argument tuple, a list argument (torch.cat's) or an output, in order."""
    if isinstance(tree, _Tensor):
        return [tree]
    out: list[torch.Tensor] = []
    for a in tree.values() if isinstance(tree, dict) else tree:
        if isinstance(a, _Tensor):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out += [t for t in a if isinstance(t, _Tensor)]
        elif a is not None and not isinstance(a, (int, float, bool, str, torch.dtype, torch.device)):
            out += [t for t in tree_flatten(a)[0] if isinstance(t, _Tensor)]
    return out


def _shape(t: torch.Tensor | None) -> tuple[int, ...]:
    return () if t is None else tuple(t.shape[1:]) if t.dim() > 1 else tuple(t.shape)


def _reuses(out: torch.Tensor, x: torch.Tensor | None) -> bool:
    """Whether `out` is `x` (an in-place op) or a view of the same tensor (flatten): no new storage."""
    if x is None:
        return False
    base = out._base if out._base is not None else out
    return base is x or base is x._base


class _Recorder(TorchDispatchMode):
    """Sees every ATen call of the forward pass; module hooks tell it which module is running."""

    def __init__(self, params: dict[int, int]) -> None:
        super().__init__()
        self.params = params  # id(parameter) -> numel
        self.used: set[int] = set()
        self.derived: set[int] = set()  # ids of tensors computed from parameters only (a transposed weight)
        self.rf: dict[int, tuple] = {}  # id(activation) -> (receptive field, jump)
        self.keep: list[torch.Tensor] = []  # keeps every recorded tensor alive, so that no id is reused
        self.stack: list[_Frame] = []
        self.collapse: _Frame | None = None  # the known leaf module whose ops all go into one row
        self.rows: list[Row] = []
        self.names: collections.Counter[str] = collections.Counter()
        self.other: collections.Counter[str] = collections.Counter()
        self.pending = 0  # parameters used by ops that make no row, credited to the next row
        self.matmul_macs = 0

    def unique(self, name: str) -> str:
        self.names[name] += 1
        return name if self.names[name] == 1 else f"{name}#{self.names[name]}"

    # --- module hooks --------------------------------------------------------------------------------------
    def pre(self, path: str, module: nn.Module, args: tuple) -> None:
        kind = None if self.collapse is not None else ops.module_kind(module)
        frame = _Frame(path, kind)
        if kind is not None:
            ins = _tensors(args)
            frame.input = ins[0] if ins else None
            self.collapse = frame
        self.stack.append(frame)

    def post(self, module: nn.Module, output: Any) -> None:
        frame = self.stack.pop()
        if frame is not self.collapse:
            return
        self.collapse = None
        outs = _tensors(output)
        if frame.kind == "skip" or not outs:
            self.pending += frame.params
            return
        out, geo = outs[0], frame.geo or {}
        rf = self.rf.get(id(out))
        filters = geo.get("filters") if frame.kind == "conv" else out.shape[-1] if frame.kind == "fc" else None
        self.rows.append(Row(
            name=self.unique(frame.path or type(module).__name__.lower()), type=frame.kind,
            op=type(module).__name__, module=frame.path, input=_shape(frame.input), output=_shape(out),
            memory_bytes=out.numel() * out.element_size(), params=frame.params + self._take_pending(),
            flops=frame.macs + frame.pool, filters=filters, kernel=geo.get("kernel"), stride=geo.get("stride"),
            pad=geo.get("pad"), groups=geo.get("groups"), receptive_field=rf and rf[0], jump=rf and rf[1],
            allocates=not _reuses(out, frame.input)))

    def _take_pending(self) -> int:
        p, self.pending = self.pending, 0
        return p

    # --- ATen calls ----------------------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = fastmeta.run(func, args, kwargs or {})
        ins = _tensors(args)
        if kwargs:
            ins += _tensors(kwargs)
        outs = _tensors(result) if not isinstance(result, _Tensor) else [result]
        out = outs[0] if outs else None
        new_params = 0
        rf, params = self.rf, self.params
        acts = []
        for t in ins:
            i = id(t)
            if i in rf:
                acts.append(t)
            elif i in params and i not in self.used:
                self.used.add(i)
                new_params += params[i]
        if not acts:  # bookkeeping on weights or buffers: remember weight-derived tensors for the fc test below
            if any(id(t) in params or id(t) in self.derived for t in ins):
                self.derived.update(id(t) for t in outs)
                self.keep += outs
            self._credit(new_params)
            return result
        x = acts[0]
        kind = ops.op_kind(func, ins, out, args) if out is not None else None
        geo = ops.geometry(func, args, ins, out) if kind == "conv" or kind == "pool" else None
        if out is None:
            info = None
        elif geo is None and kind != "flatten" and len(acts) == 1:
            info = rf[id(x)]  # elementwise or a view: the field does not change
        else:
            info = ops.propagate_rf(func, kind, geo, [rf[id(t)] for t in acts], x, out)
        if info is not None:
            for t in outs:
                rf[id(t)] = info
            self.keep += outs
        macs = ops.macs(func, args, ins, out) if kind == "conv" or kind == "matmul" else 0
        self.matmul_macs += macs
        frame = self.collapse
        if frame is not None:
            frame.params += new_params
            frame.macs += macs
            if kind == "pool" and frame.kind == "pool":
                frame.pool += ops.pool_ops(func, args, ins, out)
            if frame.geo is None and geo is not None:
                frame.geo = geo
            return result
        if kind is None:
            self._credit(new_params)
            return result
        self._row(func, kind, geo, info, x, out, acts, ins, args, new_params, macs)
        return result

    def _row(self, func, kind, geo, info, x, out, acts, ins, args, new_params, macs) -> None:
        """A row for an ATen call outside any leaf module: a functional add, cat, relu, mean, flatten..."""
        if kind == "matmul" and any(id(t) in self.params or id(t) in self.derived for t in ins):
            kind = "fc"  # F.linear outside an nn.Linear: activations times a weight
        flops = macs + (ops.pool_ops(func, args, ins, out) if kind == "pool" else 0)
        if kind == "other":
            self.other[func._overloadpacket.__name__] += 1
        path = self.stack[-1].path if self.stack else ""
        geo = geo or {}
        filters = geo.get("filters") if kind == "conv" else out.shape[-1] if kind == "fc" else None
        suffix = _suffix(func, kind)
        self.rows.append(Row(
            name=self.unique(f"{path}.{suffix}" if path else suffix), type=kind,
            op=func._overloadpacket.__name__, module=path, input=_shape(x), output=_shape(out),
            memory_bytes=out.numel() * out.element_size(), params=new_params + self._take_pending(), flops=flops,
            filters=filters, kernel=geo.get("kernel"), stride=geo.get("stride"), pad=geo.get("pad"),
            groups=geo.get("groups"), receptive_field=info and info[0], jump=info and info[1],
            allocates=not any(_reuses(out, t) for t in acts)))

    def _credit(self, params: int) -> None:
        if self.collapse is not None:
            self.collapse.params += params
        else:
            self.pending += params


def _suffix(func: Any, kind: str) -> str:
    if kind in ("flatten", "shuffle", "concat"):
        return kind
    name = ops.op_name(func)
    if kind == "norm":
        return next((n for n in ("batch_norm", "layer_norm", "group_norm") if n in name), name)
    return name


def profile(model: str | nn.Module, input_size: Any = None, batch_size: int = 1,
            dtype: torch.dtype = torch.float32, **model_kwargs) -> Profile:
    """The lecture's per-layer table of `model` (a registered name or any nn.Module) at `input_size`.

    `input_size`: 227, (227, 199) or (3, 227, 227); by default the model card's size (AlexNet's 227, else 224).
    Computed on the meta device in eval mode: no weight and no activation is allocated, whatever the size.
    """
    net, label, size, min_side = meta_model(model, input_size, dtype, **model_kwargs)
    named = dict(net.named_modules())
    for m in named.values():  # net.eval(), without Module.__setattr__'s checks on every module
        m.__dict__["training"] = False
    paths = {id(m): p for p, m in named.items()}
    params = {id(t): t.numel() for m in named.values() for t in m._parameters.values() if t is not None}
    rec = _Recorder(params)

    def pre(module: nn.Module, args: tuple) -> None:
        path = paths.get(id(module))
        if path is not None:
            rec.pre(path, module, args)

    def post(module: nn.Module, args: tuple, output: Any) -> None:
        if id(module) in paths:
            rec.post(module, output)

    # Global hooks, gone when this returns: neither the copy nor the caller's model ever holds one.
    handles = [nn.modules.module.register_module_forward_pre_hook(pre),
               nn.modules.module.register_module_forward_hook(post)]

    def register_input(x: torch.Tensor) -> None:  # the image: receptive field 1 pixel, jump 1 pixel
        rec.rf[id(x)] = ((1,) * (x.dim() - 2), (1,) * (x.dim() - 2))
        rec.keep.append(x)

    try:
        with torch.no_grad():
            run_meta(net, label, size, batch_size, dtype, min_side, mode=rec, prepare=register_input)
    finally:
        for h in handles:
            h.remove()
    unused: dict[str, torch.Tensor] = {}
    for p, m in named.items():
        for n, t in m._parameters.items():
            if t is not None and id(t) not in rec.used and all(t is not u for u in unused.values()):
                unused[f"{p}.{n}" if p else n] = t
    rows = rec.rows
    return Profile(
        model=label, input=size, batch_size=batch_size, dtype=dtype, rows=rec.rows,
        unused_params=sum(p.numel() for p in unused.values()), unused_modules=_covering_modules(net, unused),
        other_ops=dict(rec.other), matmul_macs=rec.matmul_macs,
        modules={p: type(m).__name__ for p, m in named.items()},
        conv_fc_macs=sum(r.flops for r in rows if r.type in ("conv", "fc", "matmul")),
        lecture_memory_bytes=sum(r.memory_bytes for r in rows if r.type in ("conv", "fc")),
        allocated_bytes=sum(r.memory_bytes for r in rows if r.allocates))


def _covering_modules(net: nn.Module, unused: dict[str, nn.Parameter]) -> tuple[str, ...]:
    """The fewest module paths whose parameters are all unused and cover every unused parameter."""
    if not unused:
        return ()
    covered: list[str] = []
    for path, m in net.named_modules():
        names = [f"{path}.{n}" if path else n for n, _ in m.named_parameters()]
        if names and all(n in unused for n in names) and not any(path.startswith(c + ".") for c in covered):
            covered.append(path)
    rest = [n for n in unused if not any(n.startswith(c + ".") for c in covered)]
    return tuple(covered + rest)
