"""The lecture's per-layer table, computed for any model on the meta device.

`profile("alexnet", 227)` builds the model on the meta device (shapes, no storage), runs one forward pass on
shapes alone, and records every ATen operator it makes, attributed to the innermost module that ran it.
Nothing is allocated, so the cost is the same at 224 or 4096 pixels and at batch 1 or 1024. A model passed in
is copied structurally first (its parameters are never read and it is never modified: no hooks, no buffers are
left behind on it); every module of the copy gets a forward that reports its calls (`_instrument`).

Two engines run that forward pass and book the same ATen calls with the same `_Recorder.record`:
- "meta": a meta tensor goes through the real model, and a TorchDispatchMode sees each ATen call. Exact by
  construction, but each call costs PyTorch's dispatch into Python and a meta tensor (20-40 us), which on a
  network of many cheap operators is a good part of what a real forward pass costs.
- "fast" (`fastpath.py`): the input, parameters and buffers are `fastmeta.Shape`s, plain Python objects that
  PyTorch hands to the profiler before dispatching anything; the calls CNNs are made of are lowered to the ATen
  calls the meta engine would have seen and answered by shape rules, known leaf modules without running their
  forward, and anything else goes to the meta engine, call by call. The tests hold it to the meta engine's rows
  for every registered model. `profile` uses it, and the meta engine for a model it cannot follow.

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
import gc
import itertools
from typing import Any, Iterable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..errors import CnnzooError
from . import fastmeta, fastpath, ops
from .fastmeta import TENSORS, Shape
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


# Argument types that never hold a tensor.
_PLAIN = frozenset({int, float, bool, str, type(None), torch.dtype, torch.device, torch.memory_format, torch.layout})


def _tensors(tree: Any) -> list[torch.Tensor]:
    """The tensors of an argument tuple, a list argument (torch.cat's) or an output, in order."""
    if isinstance(tree, TENSORS):
        return [tree]
    out: list[torch.Tensor] = []
    for a in tree.values() if isinstance(tree, dict) else tree:
        kind = type(a)
        if kind is Shape or kind not in _PLAIN and isinstance(a, torch.Tensor):
            out.append(a)
        elif kind is list or kind is tuple:
            if not _PLAIN.issuperset(map(type, a)):  # not a list of ints (a stride)
                out += [t for t in a if isinstance(t, TENSORS)]
        elif kind not in _PLAIN:
            out += [t for t in tree_flatten(a)[0] if isinstance(t, TENSORS)]
    return out


def _shape(t: torch.Tensor | None) -> tuple[int, ...]:
    if t is None:
        return ()
    shape = t.shape
    return tuple(shape[1:]) if len(shape) > 1 else tuple(shape)


def _reuses(out: torch.Tensor, x: torch.Tensor | None) -> bool:
    """Whether `out` is `x` (an in-place op) or a view of the same tensor (flatten): no new storage.

    Only a module's output is tested so: a functional view's row is booked inside the dispatch, where its output
    is not a view yet (autograd's view tracking marks it on the way out), so it counts as allocating (a
    functional flatten's few KB). Both engines book it so."""
    if x is None:
        return False
    base = out._base if out._base is not None else out
    return base is x or base is x._base


_NO_GEOMETRY: ops.Geometry = {}


class _Recorder(TorchDispatchMode):
    """Books every ATen call of the forward pass (`record`); the module wrappers tell it which module is running.

    As a dispatch mode it is the meta engine: it sees the ATen calls of a forward pass on meta tensors."""

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
        self.names: dict[str, int] = {}  # row name -> rows of that name so far
        self.other: collections.Counter[str] = collections.Counter()
        self.pending = 0  # parameters used by ops that make no row, credited to the next row
        self.matmul_macs = 0

    def unique(self, name: str) -> str:
        n = self.names[name] = self.names.get(name, 0) + 1
        return name if n == 1 else f"{name}#{n}"

    # --- module calls (see _instrument) ---------------------------------------------------------------------
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
        self._leaf_row(frame.path, module, frame.kind, frame.input, outs[0], frame.params, frame.macs + frame.pool,
                       frame.geo, self.rf.get(id(outs[0])))

    def leaf(self, path: str, module: nn.Module, kind: str, x: Any, out: Any, params: int, macs: int = 0,
             pool: int = 0, geo: ops.Geometry | None = None, info: tuple | None = None) -> Any:
        """Book a leaf module's call that the fast engine answered without running it, as `post` books the others.

        `params`: those it uses first (`use`); `macs`: of its conv or matrix product; `pool`: its pooling count;
        `info`: the output's receptive field and jump. Returns `out`."""
        self.rf[id(out)] = info
        self.keep.append(out)
        self.matmul_macs += macs
        op = type(module).__name__
        self._add_row(path or op.lower(), kind, op, path, x, out, params, macs + pool, geo, info, not _reuses(out, x))
        return out

    def _leaf_row(self, path: str, module: nn.Module, kind: str, x: Any, out: Any, params: int, flops: int,
                  geo: ops.Geometry | None, rf: tuple | None) -> None:
        op = type(module).__name__
        self._add_row(path or op.lower(), kind, op, path, x, out, params, flops, geo, rf, not _reuses(out, x))

    def _add_row(self, name: str, kind: str, op: str, path: str, x: Any, out: Any, params: int, flops: int,
                 geo: ops.Geometry | None, rf: tuple | None, allocates: bool) -> None:
        """Append a row; the parameters used by calls that made none so far are its own."""
        geo = geo or _NO_GEOMETRY
        shape = _shape(x)
        params, self.pending = params + self.pending, 0
        # Row's fields in their order: by position a Row costs a third of what it costs by keyword.
        self.rows.append(Row(
            self.unique(name), kind, op, path, shape, shape if x is not None and out.shape is x.shape else _shape(out),
            out.numel() * out.element_size(), params, flops,
            geo.get("filters") if kind == "conv" else out.shape[-1] if kind == "fc" else None,
            geo.get("kernel"), geo.get("stride"), geo.get("pad"), geo.get("groups"), rf and rf[0], rf and rf[1],
            allocates))

    def use(self, t: Any) -> int:
        """The size of `t` if it is a parameter that the forward pass uses here for the first time, else 0."""
        i = id(t)
        if i in self.params and i not in self.used:
            self.used.add(i)
            return self.params[i]
        return 0

    # --- ATen calls ----------------------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = fastmeta.run(func, args, kwargs)
        self.record(func, args, kwargs, result)
        return result

    def record(self, func: Any, args: tuple, kwargs: dict, result: Any) -> None:
        """Book one ATen call and its result (meta tensors or Shapes): a row, or its share of the running leaf's."""
        ins = _tensors(args)
        if kwargs:
            ins += _tensors(kwargs)
        outs = _tensors(result) if not isinstance(result, TENSORS) else [result]
        out = outs[0] if outs else None
        new_params = 0
        rf, params = self.rf, self.params
        acts = []
        for t in ins:
            if id(t) in rf:
                acts.append(t)
            else:
                new_params += self.use(t)
        if not acts:  # bookkeeping on weights or buffers: remember weight-derived tensors for the fc test below
            if any(id(t) in params or id(t) in self.derived for t in ins):
                self.derived.update(id(t) for t in outs)
                self.keep += outs
            self._credit(new_params)
            return
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
            return
        if kind is None:
            self._credit(new_params)
            return
        self._row(func, kind, geo, info, x, out, acts, ins, args, new_params, macs)

    def _row(self, func, kind, geo, info, x, out, acts, ins, args, new_params, macs) -> None:
        """A row for an ATen call outside any leaf module: a functional add, cat, relu, mean, flatten..."""
        if kind == "matmul" and any(id(t) in self.params or id(t) in self.derived for t in ins):
            kind = "fc"  # F.linear outside an nn.Linear: activations times a weight
        flops = macs + (ops.pool_ops(func, args, ins, out) if kind == "pool" else 0)
        if kind == "other":
            self.other[func._overloadpacket.__name__] += 1
        path = self.stack[-1].path if self.stack else ""
        suffix = _suffix(func, kind)
        self._add_row(f"{path}.{suffix}" if path else suffix, kind, func._overloadpacket.__name__, path, x, out,
                      new_params, flops, geo, info, not any(out is t for t in acts))  # in place; see _reuses

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


ENGINES = ("auto", "fast", "meta")


def profile(model: str | nn.Module, input_size: Any = None, batch_size: int = 1,
            dtype: torch.dtype = torch.float32, engine: str = "auto", **model_kwargs) -> Profile:
    """The lecture's per-layer table of `model` (a registered name or any nn.Module) at `input_size`.

    `input_size`: 227, (227, 199) or (3, 227, 227); by default the model card's size (AlexNet's 227, else 224).
    Computed on the meta device in eval mode: no weight and no activation is allocated, whatever the size.
    `engine`: "fast" or "meta" (see the module's docstring; both give the same rows); "auto" is the fast one,
    and the meta one for a model whose forward the fast one cannot follow (its errors are the ones raised).
    """
    if engine not in ENGINES:
        raise CnnzooError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    # A profile makes thousands of small objects, so the cyclic collector would run its passes over the whole
    # heap (the caller's model included) during it: about a tenth of the fast engine's time. It leaves no cycle
    # behind (_profile breaks the copy's), so pausing the collector defers no garbage.
    collecting = gc.isenabled()
    gc.disable()
    try:
        if engine == "auto":
            try:
                return _profile(model, input_size, batch_size, dtype, True, model_kwargs)
            except Exception:  # noqa: BLE001 - whatever failed, the meta engine gives the answer or the right error
                engine = "meta"
        return _profile(model, input_size, batch_size, dtype, engine == "fast", model_kwargs)
    finally:
        if collecting:
            gc.enable()


def _profile(model: str | nn.Module, input_size: Any, batch_size: int, dtype: torch.dtype, fast: bool,
             model_kwargs: dict) -> Profile:
    rec = _Recorder({})
    engine = fastpath.Engine(rec) if fast else None
    named: dict[str, nn.Module] = {}
    copies: list[nn.Module] = []
    try:
        net, label, size, min_side = meta_model(
            model, input_size, dtype, make=fastpath.shape_of if engine else None,
            visit=_instrument(rec, named, copies, engine), defer=engine.defer if engine else None,
            twins=engine.twins if engine else None, **model_kwargs)

        def register_input(x: Any) -> None:  # the image: receptive field 1 pixel, jump 1 pixel
            rec.rf[id(x)] = ((1,) * (x.dim() - 2), (1,) * (x.dim() - 2))
            rec.keep.append(x)

        with torch.no_grad():
            run_meta(net, label, size, batch_size, dtype, min_side, mode=engine.running() if engine else rec,
                     prepare=register_input, new_input=fastmeta.Shape if engine else None)
        twins = engine.twins if engine else {}
        unused = _unused(named, rec, twins)
        rows = rec.rows
        return Profile(
            model=label, input=size, batch_size=batch_size, dtype=dtype, rows=rec.rows,
            unused_params=sum(p.numel() for p in unused.values()),
            unused_modules=_covering_modules(named, unused, rec.used, twins), other_ops=dict(rec.other),
            matmul_macs=rec.matmul_macs,
            modules={p: type(m).__name__ for p, m in named.items()},
            conv_fc_macs=sum(r.flops for r in rows if r.type in ("conv", "fc", "matmul")),
            lecture_memory_bytes=sum(r.memory_bytes for r in rows if r.type in ("conv", "fc")),
            allocated_bytes=sum(r.memory_bytes for r in rows if r.allocates))
    finally:
        for m in copies:  # a copy, its reporting forward and its Deferred children refer to each other: free them
            d = m.__dict__
            d.pop("forward", None)
            if type(d["_modules"]) is not dict:
                d["_modules"] = dict(dict.items(d["_modules"]))


_SEQUENTIAL = nn.Sequential.forward


def _instrument(rec: _Recorder, named: dict[str, nn.Module], copies: list[nn.Module], engine: Any = None) -> Any:
    """The `visit` for the model's copy (`meta.meta_copy`): collects its modules in `named` (`copies`: those that
    are copies) and its parameters in `rec.params`, sets eval mode, and gives each copy a forward that reports its
    calls to `rec`.

    `Module.__call__` runs `self.forward`, which an instance attribute overrides: so the copy needs no hook (a
    global hook would also send every module of the process down `__call__`'s slow path while it is set), and
    the caller's model is never touched. With the fast `engine`, a known leaf module's calls are answered
    without running its forward (`fastpath.Engine.answer`), and a Sequential's known leaves are not even copied
    (`fastpath.Engine.sequence`). Attributes are set past `Module.__setattr__`, whose checks would cost more than
    the rest of the copy."""
    params = rec.params

    def visit(path: str, m: nn.Module, stand_ins: dict[str, Any], deferred: bool) -> None:
        named[path] = m
        for t in stand_ins.values():
            if t is not None:
                params[id(t)] = t.numel()
        if deferred:  # an original, left in a Sequential's copy, whose forward books it (under this path)
            engine.paths[id(m)] = path
            return
        copies.append(m)
        d = m.__dict__
        d["training"] = False
        if type(m).forward is not _SEQUENTIAL or "forward" in d:
            d["forward"] = _reporting(rec, path, m, m.forward, engine, engine.leaf(m) if engine is not None else None)
        elif engine is not None:  # (the meta engine needs no frame for a Sequential: it would show nowhere)
            d["forward"] = engine.sequence(m)

    return visit


def _reporting(rec: _Recorder, path: str, module: nn.Module, forward: Any, engine: Any, book: Any) -> Any:
    def reporting_forward(*args, **kwargs):
        if book is not None:
            out = engine.answer(book, path, module, args, kwargs)
            if out is not NotImplemented:  # else: not for these arguments
                return out
        rec.pre(path, module, args)
        out = forward(*args, **kwargs)
        rec.post(module, out)
        return out

    return reporting_forward


def _unused(named: dict[str, nn.Module], rec: _Recorder, twins: dict[int, Any]) -> dict[str, Any]:
    """The parameters the forward pass never used, by name (a shared one once, under its first name).

    `twins`: id(parameter) -> its stand-in, for the modules that stayed the originals (`meta_copy`'s `defer`)."""
    if len(rec.used) == len(rec.params):  # all of them: the usual case, known without a walk
        return {}
    unused: dict[str, Any] = {}
    for p, m in named.items():
        for n, t in m._parameters.items():
            t = twins.get(id(t), t)
            if t is not None and id(t) not in rec.used and all(t is not u for u in unused.values()):
                unused[f"{p}.{n}" if p else n] = t
    return unused


def _covering_modules(named: dict[str, nn.Module], unused: dict[str, Any], used: set[int],
                      twins: dict[int, Any]) -> tuple[str, ...]:
    """The fewest module paths whose parameters are all unused and cover every unused parameter."""
    if not unused:
        return ()
    clean: dict[int, bool] = {}
    covered: list[str] = []
    for path, m in named.items():
        if not _clean(m, used, clean, twins):  # the quick test first: none of its parameters is used
            continue
        names = [f"{path}.{n}" if path else n for n, _ in m.named_parameters()]
        if names and all(n in unused for n in names) and not any(path.startswith(c + ".") for c in covered):
            covered.append(path)
    rest = [n for n in unused if not any(n.startswith(c + ".") for c in covered)]
    return tuple(covered + rest)


def _clean(m: nn.Module, used: set[int], memo: dict[int, bool], twins: dict[int, Any]) -> bool:
    """Whether no parameter of `m` or its submodules is in `used` (a walk that copies no deferred submodule)."""
    c = memo.get(id(m))
    if c is None:
        c = memo[id(m)] = (all(t is None or id(twins.get(id(t), t)) not in used for t in m._parameters.values())
                           and all(s is None or _clean(s, used, memo, twins) for s in dict.values(m._modules)))
    return c
