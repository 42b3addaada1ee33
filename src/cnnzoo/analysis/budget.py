"""Will it fit? The analyzer's estimate against the memory this machine has free, before allocating.

`--input-size 4000 --batch-size 256` would ask PyTorch for hundreds of GB; the allocation then fails
after minutes, or the kernel's OOM killer ends the process (and maybe others) without a word. The
meta-device analysis (`profile`, `training_memory`) costs milliseconds and allocates nothing, so every
command that is about to allocate activations asks here first and refuses in one line with the estimate
and the free memory.

Free memory: `MemAvailable` of /proc/meminfo (what can be allocated without swapping), and under a
cgroup limit (a container, a systemd slice) the room left below `memory.max`, whichever is smaller. An
estimate may exceed `FRACTION` of it: the allocator, the framework and the data loader need the rest.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import CnnzooError

FRACTION = 0.8
_INFER_LIVE = 3  # eval mode under no_grad: the largest output, its input and a temporary are alive at once


def available_bytes() -> int | None:
    """Bytes this process can still allocate (MemAvailable, capped by a cgroup limit); None if unknown."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            found.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def _size(input_size: Any) -> str:
    return "x".join(map(str, input_size)) if isinstance(input_size, (tuple, list)) else str(input_size)


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


def check_fits(need: int, what: str, hint: str) -> None:
    """Refuse `what` (e.g. "bench resnet18 at 3x4000x4000, batch 64") when `need` bytes will not fit."""
    free = available_bytes()
    if free is not None and need > FRACTION * free:
        raise CnnzooError(f"{what} needs about {_gib(need)} of memory (the analyzer's estimate) and "
                          f"{_gib(free)} is free; {hint}")


def inference_bytes(model: str, input_size: Any, batch_size: int, **model_kwargs: Any) -> int:
    """Peak bytes of an eval forward pass: the parameters and the few largest activations alive at once."""
    from .profiler import profile

    prof = profile(model, input_size, batch_size, **model_kwargs)
    largest = max((r.memory_bytes for r in prof.rows), default=0)
    return 4 * prof.total.params + _INFER_LIVE * largest


def training_bytes(model: str, input_size: Any, batch_size: int, optimizer: str = "momentum",
                   **model_kwargs: Any) -> int:
    """Peak bytes of one training step (`training_memory`: activations saved, weights, gradients, state)."""
    from .memory import training_memory

    return training_memory(model, input_size, batch_size, optimizer, **model_kwargs).total_bytes


def check_training(model: str, input_size: Any, batch_size: int, optimizer: str = "momentum",
                   **model_kwargs: Any) -> None:
    """Refuse a training run whose steps will not fit; `cnnzoo train` and `transfer` call it before building
    the model (the CLI, when the input size is known: --input-size given)."""
    need = training_bytes(model, input_size, batch_size, optimizer, **model_kwargs)
    check_fits(need, f"training {model} at {_size(input_size)}, batch {batch_size}",
               "lower --batch-size or --input-size")


def check_inference(model: str, input_size: Any, batch_size: int, **model_kwargs: Any) -> None:
    """Refuse an inference batch that will not fit (predict). A model the analyzer cannot build (an ONNX
    file of a foreign network) is not refused for that: the estimate is a guard, not a gate."""
    try:
        need = inference_bytes(model, input_size, batch_size, **model_kwargs)
    except CnnzooError:
        return
    check_fits(need, f"{model} at {_size(input_size)}, batch {batch_size}", "lower --batch-size or --input-size")
