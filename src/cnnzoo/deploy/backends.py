"""Inference backends, and the choice of the fastest one that still gives the model's answers.

A backend maps a batch of preprocessed images (N x C x H x W, float32) to logits (NumPy, N x classes):
- `eager`: the PyTorch model as trained (fp32, NCHW): the reference.
- `bf16`: bfloat16 autocast on channels-last tensors, where the CPU computes bf16 natively (AVX-512
  BF16 / AMX) or on a GPU; oneDNN's convolutions prefer NHWC.
- `compile`: `torch.compile` (Inductor); minutes of compilation on a big model, so never chosen by `auto`.
- `onnxruntime`: the model exported to ONNX (in memory) under onnxruntime's graph optimisations.
- `int8`: that ONNX model statically quantised by onnxruntime (QDQ, per-channel int8 weights, uint8
  activations), calibrated on images of the user's own data set.

`select_backend` is the rule `predict` and `serve` follow: run every candidate on real images, keep
those whose top-1 agrees with the fp32 reference on at least 99% of them (and, for fp32 backends, whose
logits match to export tolerance), time the survivors at the batch size that will be served, variants
interleaved so that a noisy machine slows all of them alike, and take the fastest.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import CnnzooError
from .meta import Source

NAMES = ("eager", "bf16", "compile", "onnxruntime", "int8")
MIN_AGREEMENT = 0.99


class Backend:
    """Callable: float32 N x C x H x W tensor -> float32 logits array. `name` says which backend."""

    name = "backend"

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        raise NotImplementedError


class TorchBackend(Backend):
    """Eager PyTorch, optionally bf16 autocast + channels_last, optionally `torch.compile`d."""

    def __init__(self, model: torch.nn.Module, *, bf16: bool = False, compile: bool = False) -> None:
        from ..models.base import Logits

        self.bf16 = bf16
        self.name = "compile" if compile else "bf16" if bf16 else "eager"
        model = Logits(model).eval()
        if bf16:
            model = model.to(memory_format=torch.channels_last)
        self.model = torch.compile(model) if compile else model

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            if self.bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return self.model(x.contiguous(memory_format=torch.channels_last)).float().numpy()
            return self.model(x).float().numpy()


class OrtBackend(Backend):
    """An onnxruntime session on the CPU (model given as a file path or as serialised bytes)."""

    def __init__(self, model: str | bytes, name: str = "onnxruntime", threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        # Idle worker threads sleep instead of spinning: on a shared or busy CPU (a server decoding uploads
        # beside it) spinning threads steal the cores the rest of the work needs.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3  # errors only: its warnings go to stderr, which is the user's
        self.name = name
        self.model_bytes = model if isinstance(model, bytes) else Path(model).read_bytes()
        self.session = ort.InferenceSession(self.model_bytes, opts, providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.input = first.name
        # Exported without --dynamic-batch, the file takes exactly this many images at a time.
        self.fixed_batch = first.shape[0] if isinstance(first.shape[0], int) else None

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        n, fixed = len(x), self.fixed_batch
        if fixed is None or n == fixed:
            return self._run(x)
        padded = torch.cat([x, x.new_zeros((-n % fixed, *x.shape[1:]))])  # the last chunk filled up with zeros
        return np.concatenate([self._run(c) for c in padded.split(fixed)])[:n]

    def _run(self, x: torch.Tensor) -> np.ndarray:
        return self.session.run(None, {self.input: np.ascontiguousarray(x.numpy(), dtype=np.float32)})[0]


def bf16_supported() -> bool:
    """Whether this CPU computes bfloat16 natively (else bf16 is emulated and slower than fp32)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def onnx_bytes(source: Source) -> bytes:
    """The source as serialised ONNX with a dynamic batch: the file itself, or an in-memory export."""
    if source.kind == "onnx":
        return Path(source.path).read_bytes()
    from .export import to_onnx, trace

    meta = source.meta
    ep = trace(source.module, torch.randn(2, meta.in_chans, meta.input_size, meta.input_size), dynamic_batch=True)
    return to_onnx(ep, meta).SerializeToString()


def quantize_int8(model: bytes, calibration: torch.Tensor, batch: int = 16) -> bytes:
    """onnxruntime static quantisation (QDQ; int8 per-channel weights, uint8 activations, MinMax ranges)."""
    import onnxruntime.quantization as q
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration.split(batch))

        def get_next(self):
            x = next(self.batches, None)
            return None if x is None else {"input": x.numpy()}

    with tempfile.TemporaryDirectory(prefix="cnnzoo-int8-") as tmp:
        raw, pre, out = (os.path.join(tmp, n) for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        Path(raw).write_bytes(model)
        quant_pre_process(raw, pre, skip_symbolic_shape=True)  # folds batch norms into convolutions first
        q.quantize_static(pre, out, Reader(), quant_format=q.QuantFormat.QDQ, per_channel=True,
                          activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                          calibrate_method=q.CalibrationMethod.MinMax)
        return Path(out).read_bytes()


def candidates(source: Source, calibration: torch.Tensor | None) -> list[str]:
    """The backends `auto` considers for this source on this machine."""
    names = ["onnxruntime"] if source.kind == "onnx" else ["eager", "onnxruntime"]
    if source.kind == "torch" and bf16_supported():
        names.append("bf16")
    if calibration is not None:
        names.append("int8")
    return names


def build_backend(name: str, source: Source, calibration: torch.Tensor | None = None,
                  fp32_onnx: bytes | None = None) -> Backend:
    """One backend by name; `fp32_onnx` reuses an export already made."""
    if name not in NAMES:
        raise CnnzooError(f"unknown backend {name!r}; choose auto or one of {', '.join(NAMES)}")
    if name in ("eager", "bf16", "compile"):
        if source.kind != "torch":
            raise CnnzooError(f"backend {name} needs the PyTorch model (a run or checkpoint), not {source.path}")
        return TorchBackend(source.module, bf16=name == "bf16", compile=name == "compile")
    model = fp32_onnx or onnx_bytes(source)
    if name == "onnxruntime":
        return OrtBackend(model)
    if calibration is None:
        raise CnnzooError("backend int8 needs calibration images (the model's data set, or images you pass)")
    return OrtBackend(quantize_int8(model, calibration), name="int8")


# --- choosing ------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Measured:
    name: str
    agreement: float | None = None  # top-1 agreement with the fp32 reference on the probe images
    max_abs_diff: float | None = None
    seconds: float | None = None  # median time of one batch
    ok: bool = False
    note: str = ""


@dataclasses.dataclass
class Selection:
    backend: Backend
    measured: list[Measured]
    reason: str


def logits_in_chunks(backend: Backend, x: torch.Tensor, batch: int) -> np.ndarray:
    return np.concatenate([backend(c) for c in x.split(batch)])


def time_interleaved(backends: dict[str, Backend], x: torch.Tensor, *, rounds: int = 5, budget_s: float = 20.0,
                     drop_slower: float | None = 2.0) -> dict[str, float]:
    """Median seconds per call of each backend on `x`, calls interleaved (A B C A B C ...).

    After two rounds, a backend more than `drop_slower` times slower than the fastest stops being timed:
    it cannot win, and on a big model each of its calls costs seconds.
    """
    for b in backends.values():
        b(x)  # warm-up: first-call allocations, oneDNN primitive creation, compilation
    times: dict[str, list[float]] = {k: [] for k in backends}
    active = dict(backends)
    start = time.perf_counter()
    for r in range(rounds):
        for name, b in active.items():
            t = time.perf_counter()
            b(x)
            times[name].append(time.perf_counter() - t)
        if r >= 1 and drop_slower:
            best = min(float(np.median(times[n])) for n in active)
            active = {n: b for n, b in active.items() if np.median(times[n]) <= drop_slower * best}
        if r >= 1 and time.perf_counter() - start > budget_s:
            break
    return {k: float(np.median(v)) for k, v in times.items()}


def select_backend(source: Source, probe: torch.Tensor, *, batch_size: int, probe_what: str = "probe images",
                   names: list[str] | None = None, calibration: torch.Tensor | None = None,
                   min_agreement: float = MIN_AGREEMENT) -> Selection:
    """The fastest backend whose answers match the fp32 model's on `probe` (see the module docstring).

    All candidates are timed first; then, fastest first, each is checked against the reference until
    one passes, so slower candidates cost no probing.
    """
    from .export import ATOL, RTOL

    names = names or candidates(source, calibration)
    fp32 = onnx_bytes(source) if any(n in ("onnxruntime", "int8") for n in names) else None
    ref_backend = build_backend("eager" if source.kind == "torch" else "onnxruntime", source, fp32_onnx=fp32)
    ref = logits_in_chunks(ref_backend, probe, batch_size)
    tol = ATOL + RTOL * float(np.abs(ref).max())
    built: dict[str, Backend] = {}
    measured = {name: Measured(name) for name in names}
    for name in names:
        try:
            built[name] = ref_backend if name == ref_backend.name else build_backend(name, source, calibration, fp32)
        except Exception as exc:  # a backend that cannot be built here is skipped, with the reason shown
            measured[name].note = f"unavailable: {str(exc).splitlines()[0][:160]}"
    if not built:
        raise CnnzooError("no backend could be built; try --backend eager")
    x = probe[torch.arange(batch_size) % len(probe)]
    for name, sec in time_interleaved(built, x).items():
        measured[name].seconds = sec
    chosen = None
    for name in sorted(built, key=lambda n: measured[n].seconds):
        m = measured[name]
        if chosen is not None:
            m.note = "slower: not checked"
            continue
        out = ref if built[name] is ref_backend else logits_in_chunks(built[name], probe, batch_size)
        m.agreement = float((out.argmax(1) == ref.argmax(1)).mean())
        m.max_abs_diff = float(np.abs(out - ref).max())
        exact = name in ("eager", "compile", "onnxruntime")  # fp32: must also match to export tolerance
        m.ok = m.agreement >= min_agreement and (not exact or m.max_abs_diff <= 10 * tol)
        if m.ok:
            chosen = name
        else:
            m.note = (f"rejected: top-1 agreement {100 * m.agreement:.1f}% on {probe_what}" if m.agreement < min_agreement
                      else f"rejected: logits differ by {m.max_abs_diff:.2g}")
    if chosen is None:
        raise CnnzooError("no backend reproduces the model's answers; try --backend eager")
    base, best = measured.get(ref_backend.name), measured[chosen]
    speed = f", {base.seconds / best.seconds:.1f}x {base.name}" if base and base.seconds and chosen != base.name else ""
    reason = f"fastest at batch {batch_size}{speed}, top-1 agreement {100 * best.agreement:.1f}% on {probe_what}"
    return Selection(built[chosen], list(measured.values()), reason)


def format_selection(sel) -> str:
    """A Selection (or a Predictor, which keeps one's fields) as lines: the choice, then every candidate."""
    lines = [f"backend: {sel.backend.name} ({sel.reason})"]
    for m in sel.measured:
        t = f"{1000 * m.seconds:8.1f} ms/batch" if m.seconds else " " * 16
        a = f"agreement {100 * m.agreement:5.1f}%" if m.agreement is not None else " " * 16
        lines.append(f"  {m.name:<12} {t}  {a}  {m.note}".rstrip())
    return "\n".join(lines)
