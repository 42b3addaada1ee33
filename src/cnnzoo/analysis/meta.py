"""The model on the meta device: built from its name, or copied from a module without touching it.

Meta tensors have shapes and dtypes but no storage, so a model built or copied here costs no weight memory,
and a forward pass on a meta batch costs no activation memory, whatever the input size.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from ..errors import CnnzooError


def parse_input_size(size: Any, default: int = 224, channels: int = 3) -> tuple[int, int, int]:
    """227 -> (3, 227, 227); "3x227x227", "227x199", (227, 199), (1, 28, 28) -> (C, H, W)."""
    if size is None:
        size = default
    if isinstance(size, str):
        try:
            size = tuple(int(s) for s in size.lower().replace(",", "x").split("x"))
        except ValueError:
            raise CnnzooError(f"input size {size!r}: expected 227, 227x199 or 3x227x227") from None
    if isinstance(size, int):
        size = (size,)
    size = tuple(int(s) for s in size)
    if len(size) == 1:
        size = (channels, size[0], size[0])
    elif len(size) == 2:
        size = (channels, *size)
    if len(size) != 3 or min(size) < 1:
        raise CnnzooError(f"input size {size!r}: expected positive C, H, W (e.g. 3x227x227)")
    return size  # type: ignore[return-value]


def meta_copy(model: nn.Module, dtype: torch.dtype | None = None, make: Any = None, visit: Any = None,
              defer: Any = None, twins: dict[int, Any] | None = None) -> nn.Module:
    """A copy of `model` whose parameters and buffers are empty meta tensors; `model` itself is untouched.

    The copy is structural: every module is copied shallowly (its attributes are shared; its parameter, buffer and
    submodule dictionaries are its own), so copying costs microseconds per module and no weight is ever read or
    duplicated. The profiler's module wrappers go on the copy's own `__dict__`, so nothing is ever added to the
    original. A forward that mutates a plain Python attribute (a list, a counter) would mutate the original's;
    none of cnnzoo's or torchvision's models does. `make(tensor, dtype)`: what stands in for each parameter and
    buffer (default: an empty meta tensor; the profiler's fast engine uses a `fastmeta.Shape`).
    `visit(path, module, params, deferred)`: called for each module in `named_modules` order, with its
    parameters' stand-ins, as soon as they are made (so that the profiler needs no second walk of the tree).
    `defer(parent_copy)`: None, or which of its children (a predicate on the originals) may stay the originals in
    the parent's copy until something reads them from there (`Deferred`); `visit` then gets the original, with
    `deferred=True`, and gets its copy when one is made. `twins`: the dictionary (id of an original tensor -> its
    stand-in) to keep the stand-ins in, for a caller that looks them up.
    """
    model = getattr(model, "_orig_mod", model)  # torch.compile wraps the module it analyses
    return _Copier(dtype, make or _meta_twin, visit, defer, {} if twins is None else twins).clone(model, "")


class _Copier:
    """meta_copy's walk (a class, not a recursive closure: that would be a reference cycle holding the copy)."""

    def __init__(self, dtype: torch.dtype | None, make: Any, visit: Any, defer: Any, twins: dict[int, Any]) -> None:
        self.dtype, self.make, self.visit, self.defer = dtype, make, visit, defer
        self.tensors = twins  # id(original) -> its twin, so that shared tensors stay shared
        self.modules: dict[int, nn.Module] = {}  # id(original) -> its copy
        self.deferred: dict[int, str] = {}  # id(original left in its parent's copy) -> its path

    def twin(self, t: torch.Tensor) -> Any:
        s = self.tensors.get(id(t))
        if s is None:
            dtype = self.dtype if self.dtype is not None and t.is_floating_point() else t.dtype
            s = self.tensors[id(t)] = self.make(t, dtype)
        return s

    def twins(self, tensors: dict[str, torch.Tensor | None]) -> dict[str, Any]:
        """A copy's own dictionary of twins (a new one, even when empty)."""
        twin = self.twin
        return {k: None if v is None else twin(v) for k, v in tensors.items()} if tensors else {}

    def clone(self, m: nn.Module, path: str) -> nn.Module:
        c = self.modules.get(id(m))
        if c is None:
            c = self.modules[id(m)] = m.__class__.__new__(m.__class__)  # copy.copy, without __reduce_ex__
            d = c.__dict__  # filled past Module.__setattr__, whose checks cost more than the copy
            d.update(m.__dict__)
            children = d["_modules"]
            d["_parameters"] = params = self.twins(d["_parameters"])
            d["_buffers"] = self.twins(d["_buffers"])
            if self.visit is not None:
                self.visit(self.deferred.get(id(m), path) if self.deferred else path, c, params, False)
            d["_modules"] = self.children(c, children, path) if children else {}
        return c

    def children(self, c: nn.Module, children: dict[str, nn.Module | None], path: str) -> dict[str, Any]:
        deferrable = self.defer(c) if self.defer is not None else None
        if deferrable is None:
            return {k: None if v is None else self.clone(v, f"{path}.{k}" if path else k) for k, v in children.items()}
        copies: dict[str, Any] = {}
        later: list[str] = []
        for k, v in children.items():
            p = f"{path}.{k}" if path else k
            if v is None or id(v) in self.modules or not deferrable(v):
                copies[k] = None if v is None else self.clone(v, p)
                continue
            copies[k] = v
            later.append(k)
            if id(v) not in self.deferred:  # (a shared module is listed once, as named_modules lists it)
                self.deferred[id(v)] = p
                if self.visit is not None:
                    self.visit(p, v, self.twins(v._parameters), True)
        return Deferred(copies, later, self, path) if later else copies


class Deferred(dict):
    """A copy's submodules, some of them still the originals (`meta_copy`'s `defer`): each is copied when read.

    Module code reads its submodules by attribute (`__getitem__`), `items()`, `values()` or `get`, which all give
    copies; only `dict.items(deferred)` sees the originals (with `pending`, the names of those still original)."""

    __slots__ = ("_copier", "_path", "pending")

    def __init__(self, children: dict[str, Any], pending: list[str], copier: _Copier, path: str) -> None:
        super().__init__(children)
        self.pending, self._copier, self._path = set(pending), copier, path

    def __getitem__(self, key: str) -> Any:
        if key in self.pending:
            self.pending.discard(key)
            path = f"{self._path}.{key}" if self._path else key
            dict.__setitem__(self, key, self._copier.clone(dict.__getitem__(self, key), path))
        return dict.__getitem__(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.pending.discard(key)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: str) -> None:
        self.pending.discard(key)
        dict.__delitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self:
            return default
        return self[key]  # (a copy, made now if need be)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self[key]
        return dict.pop(self, key, *default)

    def items(self) -> Any:
        return dict.items(self._copied())

    def values(self) -> Any:
        return dict.values(self._copied())

    def copy(self) -> dict[str, Any]:
        return dict(self._copied())

    def _copied(self) -> Deferred:
        for key in list(self.pending):
            self[key]
        return self


def _meta_twin(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # A plain tensor stands in for a Parameter: modules read `_parameters` without checking the type.
    twin = torch.empty_like(t, device="meta", dtype=dtype)
    return twin.requires_grad_() if t.requires_grad and twin.is_floating_point() else twin


def meta_model(model: str | nn.Module, input_size: Any = None, dtype: torch.dtype = torch.float32,
               make: Any = None, visit: Any = None, defer: Any = None, twins: dict[int, Any] | None = None,
               **model_kwargs) -> tuple[nn.Module, str, tuple[int, int, int], int | None]:
    """(meta model, its label, (C, H, W), the card's minimum input side or None) for a name or a module.

    `make`, `visit`, `defer`, `twins`: as `meta_copy`'s (a model built from its name is then copied too)."""
    if isinstance(model, str):
        from ..models import create_model, get_card

        card = get_card(model)
        size = parse_input_size(input_size, card.input_size, model_kwargs.get("in_chans", 3))
        model_kwargs.setdefault("in_chans", size[0])
        with torch.device("meta"), SkipInit():
            net = create_model(model, **model_kwargs)
        net = net.to(dtype) if make is None and visit is None else meta_copy(net, dtype, make, visit, defer, twins)
        return net, model, size, card.min_input_size
    if not isinstance(model, nn.Module):
        raise CnnzooError(f"expected a model name or an nn.Module, got {type(model).__name__}")
    card = getattr(model, "card", None)
    size = parse_input_size(input_size, card.input_size if card else 224)
    label = card.name if card else type(getattr(model, "_orig_mod", model)).__name__
    return meta_copy(model, dtype, make, visit, defer, twins), label, size, card.min_input_size if card else None


def run_meta(net: nn.Module, label: str, size: tuple[int, int, int], batch_size: int, dtype: torch.dtype,
             min_side: int | None, mode: Any = None, prepare: Any = None, new_input: Any = None) -> Any:
    """One forward pass on an empty meta batch, user errors (a too small input) turned into CnnzooErrors.

    `mode`: a context (a TorchDispatchMode) to run it in; `new_input(shape, dtype)` makes the batch (default:
    an empty meta tensor)."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise CnnzooError(f"batch size must be a whole number >= 1, got {batch_size!r}")
    shape = (batch_size, *size)
    x = new_input(shape, dtype) if new_input is not None else torch.empty(shape, device="meta", dtype=dtype)
    if prepare is not None:
        prepare(x)
    try:
        if mode is None:
            return net(x)
        with mode:
            return net(x)
    except (RuntimeError, ValueError, IndexError) as exc:
        hint = f"; {label} needs at least {min_side}x{min_side}" if min_side else ""
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        shape = "x".join(map(str, size))
        raise CnnzooError(f"{label}: the forward pass fails on a {shape} input ({msg}){hint}") from exc


class SkipInit(TorchDispatchMode):
    """Builds a model on the meta device without running its initialisers (in-place ops on empty tensors)."""

    INIT = {"normal_", "uniform_", "fill_", "zero_", "erfinv_", "mul_", "add_", "sub_", "div_", "clamp_", "copy_",
            "exponential_", "bernoulli_", "random_", "log_normal_", "cauchy_", "geometric_"}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._overloadpacket.__name__ in self.INIT and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))
