"""CPU threads: the cores this process may use, and torch's thread count for a block of work.

torch's thread count is process-wide, so a library call that sets it (training, a speed measurement) gives the
caller's setting back when it returns."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask; os.cpu_count() counts the whole machine)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Within: torch uses `n` CPU threads (None: as it is); after: the caller's setting again."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
