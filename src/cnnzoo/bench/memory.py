"""Peak memory of one step: the CUDA allocator's peak, or on the CPU every storage operators return, counted live.

PyTorch keeps allocator statistics on CUDA only. On the CPU the process's RSS moves with the allocator's caching
and with every other thread, so it cannot tell a 5 MB activation from noise. `LiveStorages` counts instead: a
`TorchDispatchMode` sees every ATen operator's outputs; each new storage is added with its size and a weak
reference, and after each operator the storages that died are subtracted. The peak is over the step, on top of
what was live before it (weights, buffers, the batch, the optimizer's state). That covers every activation,
every tensor autograd saves, every gradient and buffer; scratch space an operator allocates and frees inside
itself (a convolution's workspace) is not seen.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .device import sync


class LiveStorages(TorchDispatchMode):
    """Counts the bytes of every storage operators return, until it is freed; `peak` is the most at once.

    `baseline` tensors (weights, buffers, the batch) are counted from the start and never as new."""

    def __init__(self, baseline: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        self.live: dict[int, tuple[int, int]] = {}  # StorageImpl address -> (weak reference, bytes)
        self.now = 0
        for t in baseline:
            self._add(t)
        self.peak = self.start = self.now

    def _add(self, t: torch.Tensor) -> None:
        s = t.untyped_storage()
        if s._cdata not in self.live:
            self.live[s._cdata] = (s._weak_ref(), s.nbytes())
            self.now += s.nbytes()

    def _sweep(self) -> None:
        for key, (ref, nbytes) in list(self.live.items()):
            if torch.UntypedStorage._expired(ref):
                torch.UntypedStorage._free_weak_ref(ref)
                del self.live[key]
                self.now -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self._sweep()  # first forget what died, so that a recycled address is not taken for a live storage
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self._add(t)
        self.peak = max(self.peak, self.now)
        return out

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        for ref, _ in self.live.values():
            torch.UntypedStorage._free_weak_ref(ref)
        self.live.clear()


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind `tensors` (views and shared weights once)."""
    return sum({t.untyped_storage()._cdata: t.untyped_storage().nbytes() for t in tensors}.values())


def peak_memory(step: Callable[[], None], device: torch.device, baseline: Iterable[torch.Tensor] = ()) -> int:
    """Peak bytes held during one `step`, `baseline` (what is live before it: weights, batch...) included.

    CUDA: the allocator's peak above what was allocated before the step (other models on the device excluded),
    plus the baseline. CPU: a `LiveStorages` count."""
    baseline = list(baseline)
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        sync(device)
        return storage_bytes(baseline) + torch.cuda.max_memory_allocated(device) - before
    with LiveStorages(baseline) as live:
        step()
    return live.peak
