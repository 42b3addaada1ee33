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


def meta_copy(model: nn.Module, dtype: torch.dtype | None = None) -> nn.Module:
    """A copy of `model` whose parameters and buffers are empty meta tensors; `model` itself is untouched.

    The copy is structural: every module is copied shallowly (its attributes are shared; its parameter, buffer and
    submodule dictionaries are its own), so copying costs microseconds per module and no weight is ever read or
    duplicated. The profiler's hooks are global ones, removed when it returns, so no hook is ever added to the
    original. A forward that mutates a plain Python attribute (a list, a counter) would mutate the original's;
    none of cnnzoo's or torchvision's models does.
    """
    model = getattr(model, "_orig_mod", model)  # torch.compile wraps the module it analyses
    tensors: dict[int, torch.Tensor] = {}
    modules: dict[int, nn.Module] = {}

    def twin(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in tensors:
            dt = dtype if dtype is not None and t.is_floating_point() else t.dtype
            # A plain tensor stands in for a Parameter: modules read `_parameters` without checking the type.
            twin = torch.empty_like(t, device="meta", dtype=dt)
            tensors[id(t)] = twin.requires_grad_() if t.requires_grad and twin.is_floating_point() else twin
        return tensors[id(t)]

    def clone(m: nn.Module) -> nn.Module:
        if id(m) not in modules:
            c = modules[id(m)] = m.__class__.__new__(m.__class__)  # copy.copy, without __reduce_ex__
            d = c.__dict__  # filled past Module.__setattr__, whose checks cost more than the copy
            d.update(m.__dict__)
            d["_parameters"] = {k: None if v is None else twin(v) for k, v in m._parameters.items()}
            d["_buffers"] = {k: None if v is None else twin(v) for k, v in m._buffers.items()}
            d["_modules"] = {k: None if v is None else clone(v) for k, v in m._modules.items()}
        return modules[id(m)]

    return clone(model)


def meta_model(model: str | nn.Module, input_size: Any = None, dtype: torch.dtype = torch.float32,
               **model_kwargs) -> tuple[nn.Module, str, tuple[int, int, int], int | None]:
    """(meta model, its label, (C, H, W), the card's minimum input side or None) for a name or a module."""
    if isinstance(model, str):
        from ..models import create_model, get_card

        card = get_card(model)
        size = parse_input_size(input_size, card.input_size, model_kwargs.get("in_chans", 3))
        model_kwargs.setdefault("in_chans", size[0])
        with torch.device("meta"), SkipInit():
            net = create_model(model, **model_kwargs)
        return net.to(dtype), model, size, card.min_input_size
    if not isinstance(model, nn.Module):
        raise CnnzooError(f"expected a model name or an nn.Module, got {type(model).__name__}")
    card = getattr(model, "card", None)
    size = parse_input_size(input_size, card.input_size if card else 224)
    label = card.name if card else type(getattr(model, "_orig_mod", model)).__name__
    return meta_copy(model, dtype), label, size, card.min_input_size if card else None


def run_meta(net: nn.Module, label: str, size: tuple[int, int, int], batch_size: int, dtype: torch.dtype,
             min_side: int | None, mode: TorchDispatchMode | None = None, prepare: Any = None) -> Any:
    """One forward pass on an empty meta batch, user errors (a too small input) turned into CnnzooErrors."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise CnnzooError(f"batch size must be a whole number >= 1, got {batch_size!r}")
    x = torch.empty(batch_size, *size, device="meta", dtype=dtype)
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
