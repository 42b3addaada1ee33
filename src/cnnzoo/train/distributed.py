"""Several processes: torchrun's environment, the process group, and the few collectives training needs.

`torchrun --nproc-per-node N -m cnnzoo train ...` sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT; `setup` reads them and joins the group: gloo on CPU, nccl on CUDA (one GPU per process,
`cuda:LOCAL_RANK`). Without them, training runs in one process and every helper here is a no-op.
"""
from __future__ import annotations

import dataclasses
import datetime
import os

import torch
import torch.distributed as dist

from ..errors import CnnzooError

TIMEOUT = datetime.timedelta(minutes=int(os.environ.get("CNNZOO_DIST_TIMEOUT_MIN", "10")))


@dataclasses.dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """`auto`: the process's GPU if there is one, else the CPU."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise CnnzooError("device cuda was asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    if preference in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def setup(preference: str = "auto") -> DistEnv:
    """Join torchrun's process group if launched by torchrun; return this process's place and device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    device = pick_device(preference, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=TIMEOUT)
    return DistEnv(rank, world, local_rank, local_world, device)


def teardown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: list[float], env: DistEnv) -> list[float]:
    """Sum a few numbers over all processes (float64, so counts stay exact)."""
    if not env.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=env.device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_buffers(model: torch.nn.Module, env: DistEnv) -> None:
    """Give every process rank 0's buffers (batch-norm running statistics), so all evaluate one model."""
    if env.distributed:
        for buf in model.buffers():
            dist.broadcast(buf, src=0)


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()
