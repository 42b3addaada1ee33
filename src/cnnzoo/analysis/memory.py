"""How much memory one training step needs, estimated on the meta device, and measured for real on the CPU.

    step memory ~= activations kept for backward + parameters + gradients + optimizer state

The activations are not guessed from layer outputs (torchinfo's "2 x outputs of the layers with parameters"
misses every ReLU, pool and add): the forward pass runs in train mode on meta tensors under
`torch.autograd.graph.saved_tensors_hooks`, which sees exactly the tensors autograd keeps for backward: a
conv's input, batch norm's input and statistics, a max pool's indices (int64), dropout's mask, the input batch
itself. Each storage counts once, however many views of it are saved, and parameters are counted apart.
Optimizer state: SGD none, SGD with momentum one buffer per parameter, Adam/AdamW two buffers and a step count.

`measure_training_peak` runs real steps on the CPU and integrates torch.profiler's allocation events to the
peak; the tests hold the estimate to it.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from ..errors import CnnzooError
from .meta import meta_model, run_meta
from .profiler import _tensors

OPTIMIZERS = {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 2}  # state buffers per parameter


@dataclasses.dataclass(frozen=True)
class TrainingMemory:
    """Bytes one training step holds at its peak, by kind; `total_bytes` is their sum."""

    model: str
    input: tuple[int, int, int]
    batch_size: int
    optimizer: str
    params_bytes: int
    grads_bytes: int
    optimizer_bytes: int
    activations_bytes: int  # tensors saved for backward (the input batch included) and the model's output

    @property
    def total_bytes(self) -> int:
        return self.params_bytes + self.grads_bytes + self.optimizer_bytes + self.activations_bytes

    def __str__(self) -> str:
        mib = lambda b: f"{b / 2**20:,.1f} MiB"  # noqa: E731
        return (f"training memory of {self.model} at {'x'.join(map(str, self.input))}, batch {self.batch_size}, "
                f"{self.optimizer}: {mib(self.total_bytes)} = activations saved for backward "
                f"{mib(self.activations_bytes)} + parameters {mib(self.params_bytes)} + gradients "
                f"{mib(self.grads_bytes)} + optimizer state {mib(self.optimizer_bytes)}")


def _check_optimizer(optimizer: str) -> str:
    opt = optimizer.lower()
    if opt not in OPTIMIZERS:
        raise CnnzooError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    return opt


def training_memory(model: str | nn.Module, input_size: Any = None, batch_size: int = 1,
                    optimizer: str = "momentum", dtype: torch.dtype = torch.float32,
                    **model_kwargs) -> TrainingMemory:
    """Estimate one training step's peak memory (train mode, meta device: nothing is allocated)."""
    opt = _check_optimizer(optimizer)
    net, label, size, min_side = meta_model(model, input_size, dtype, **model_kwargs)
    net.train()
    params = list({id(p): p for p in net.parameters()}.values())
    trainable = [p for p in params if p.requires_grad]
    param_storages = {p.untyped_storage()._cdata for p in params}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = t.untyped_storage()._cdata
        if key not in param_storages:
            saved[key] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = run_meta(net, label, size, batch_size, dtype, min_side)
    for t in _tensors(out):  # the logits (and auxiliary logits) live until the loss is computed
        saved.setdefault(t.untyped_storage()._cdata, t.untyped_storage().nbytes())
    nbytes = lambda ps: sum(p.numel() * p.element_size() for p in ps)  # noqa: E731
    step_counts = 4 * len(trainable) if opt.startswith("adam") else 0  # Adam's per-parameter float32 step
    return TrainingMemory(
        model=label, input=size, batch_size=batch_size, optimizer=opt, params_bytes=nbytes(params),
        grads_bytes=nbytes(trainable), optimizer_bytes=OPTIMIZERS[opt] * nbytes(trainable) + step_counts,
        activations_bytes=sum(saved.values()))


def measure_training_peak(model: nn.Module, input_size: tuple[int, int, int], batch_size: int,
                          optimizer: str = "momentum", num_classes: int = 1000, steps: int = 2) -> int:
    """The peak bytes a real training step holds on the CPU (model, data, state and every temporary).

    Runs `steps` SGD/Adam steps under torch.profiler with `profile_memory=True` (the first creates the
    gradients and the optimizer state) and integrates its allocation events, in time order, to a peak on top of
    what was live before: parameters, buffers and the batch. `model` is trained in place.
    """
    opt = _check_optimizer(optimizer)
    from torch.profiler import ProfilerActivity, profile as torch_profile

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    make = {"sgd": lambda: torch.optim.SGD(params, lr=1e-3),
            "momentum": lambda: torch.optim.SGD(params, lr=1e-3, momentum=0.9),
            "adam": lambda: torch.optim.Adam(params, lr=1e-4),
            "adamw": lambda: torch.optim.AdamW(params, lr=1e-4)}[opt]
    optim = make()
    x = torch.randn(batch_size, *input_size)
    y = torch.randint(0, num_classes, (batch_size,))
    live = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers(), x, y])

    def step() -> None:
        optim.zero_grad(set_to_none=True)
        outs = _tensors(model(x))
        loss = sum(nn.functional.cross_entropy(o, y) for o in outs)
        loss.backward()
        optim.step()

    with torch_profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for _ in range(steps):
            step()
    events = sorted(((e.time_range.start, e.self_cpu_memory_usage if e.name != "[memory]" else e.cpu_memory_usage)
                     for e in prof.events()), key=lambda e: e[0])
    now = peak = 0
    for _, delta in events:
        now += delta
        peak = max(peak, now)
    return live + peak
