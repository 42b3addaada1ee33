"""The device's ceilings, measured in the process that benchmarks: its matmul peak and its copy bandwidth.

A roofline needs two numbers: how many FLOPs per second the device can do at best (a large square matmul, the
best of a few runs, in the precision the convolutions run in) and how many bytes per second it can move (a
large tensor copy: bytes read plus bytes written). A model whose FLOPs per byte (its arithmetic intensity) is
below peak / bandwidth is memory-bound on this device, above it compute-bound.
"""
from __future__ import annotations

import dataclasses
import datetime
import platform
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..errors import CnnzooError


@dataclasses.dataclass
class DeviceInfo:
    """The machine the figures belong to, and its measured ceilings."""

    device: str  # "cpu" or "cuda:0"
    name: str  # the CPU model or the GPU's name
    threads: int  # torch intra-op threads (CPU) or streaming multiprocessors (CUDA)
    torch: str
    matmul_gflops: float  # measured peak in the precision convolutions run in (see `matmul_precision`)
    matmul_precision: str  # "fp32" or "tf32"
    bf16_gflops: float | None
    bandwidth_gbs: float  # measured copy bandwidth: bytes read + bytes written per second
    date: str
    host: str

    @property
    def where(self) -> str:
        """'cpu (AMD EPYC, 2 threads)' or 'cuda:0 (NVIDIA H100, 132 SMs)'."""
        unit = ("thread" if self.device == "cpu" else "SM") + ("" if self.threads == 1 else "s")
        return f"{self.device} ({self.name}, {self.threads} {unit})"

    def __str__(self) -> str:
        bf16 = f", bf16 {self.bf16_gflops:,.0f}" if self.bf16_gflops else ""
        return (f"{self.where[:-1]}, torch {self.torch}): matmul peak "
                f"{self.matmul_precision} {self.matmul_gflops:,.0f} GFLOP/s{bf16}, copy {self.bandwidth_gbs:,.1f} GB/s;"
                f" measured {self.date}")



def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_time(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    fn()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def matmul_peak(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                sizes: Sequence[int] = (1024, 2048), repeats: int = 3) -> float:
    """The best GFLOP/s of an n x n x n matmul, 2 n^3 FLOPs, over `sizes` (larger ones on CUDA)."""
    device = torch.device(device)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        best = max(best, 2 * n**3 / _best_time(lambda: a @ b, device, repeats) / 1e9)
    return best


def copy_bandwidth(device: str | torch.device = "cpu", mib: int = 128, repeats: int = 3) -> float:
    """GB/s of copying a `mib` MiB fp32 tensor into another: its bytes read plus its bytes written."""
    device = torch.device(device)
    src = torch.randn(mib * 2**18, device=device)
    dst = torch.empty_like(src)
    return 2 * src.nbytes / _best_time(lambda: dst.copy_(src), device, repeats) / 1e9


def device_info(device: str | torch.device = "cpu", quick: bool = False) -> DeviceInfo:
    """Name the device and measure its ceilings (`quick`: smaller matmuls, for a ~1 s check)."""
    device = torch.device(device)
    now = datetime.datetime.now().isoformat(timespec="seconds")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CnnzooError("--device cuda: no CUDA device is visible to PyTorch on this machine")
        props = torch.cuda.get_device_properties(device)
        tf32 = torch.backends.cudnn.allow_tf32  # cuDNN convolutions run in TF32 when allowed (PyTorch's default)
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            peak = matmul_peak(device, sizes=(2048,) if quick else (4096, 8192), repeats=5)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = old
        bf16 = matmul_peak(device, torch.bfloat16, sizes=(2048,) if quick else (4096, 8192), repeats=5)
        return DeviceInfo(str(device), props.name, props.multi_processor_count, torch.__version__, peak,
                          "tf32" if tf32 else "fp32", bf16, copy_bandwidth(device, 64 if quick else 512), now,
                          platform.node())
    if device.type != "cpu":
        raise CnnzooError(f"unsupported device {device}; use cpu or cuda")
    sizes = (512, 1024) if quick else (1024, 2048)
    peak = matmul_peak(device, sizes=sizes)
    bf16 = matmul_peak(device, torch.bfloat16, sizes=sizes[:1]) if _cpu_has_bf16() else None
    return DeviceInfo("cpu", _cpu_name(), torch.get_num_threads(), torch.__version__, peak, "fp32", bf16,
                      copy_bandwidth(device, 32 if quick else 128), now, platform.node())


def _cpu_flags() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _cpu_has_bf16() -> bool:
    return "avx512_bf16" in _cpu_flags() or "amx_bf16" in _cpu_flags()


def _cpu_name() -> str:
    for line in _cpu_flags().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
