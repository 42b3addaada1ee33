"""Export a trained model to ONNX or a `torch.export` program, and prove the export computes the same logits.

Both formats start from one `torch.export.export` of the model in eval mode (non-strict tracing, batch
dimension symbolic when asked). ONNX goes through PyTorch's dynamo exporter (onnxscript, opset 20),
which lowers every op to ONNX primitives; the result passes `onnx.checker.check_model(full_check=True)`.

The layers the research notes flag as exporter traps are handled and verified, not assumed:
- `LocalResponseNorm` (AlexNet, VGG-11-LRN, GoogLeNet-paper): PyTorch computes it as pad + 3-D average
  pool + pow, and the exporter keeps exactly that formula (Pad, AveragePool, Pow) rather than ONNX's
  LRN op, whose padding for even sizes and alpha scaling differ from PyTorch's. Parity checked below.
- Adaptive average pooling to a size that does not divide the map (VGG's 7x7 head on a 5x5 map): the
  legacy exporter refuses it ("output size is not factor of input size"); the dynamo exporter gathers
  the windows by index. Parity checked below.
A layer an exporter cannot express (e.g. fractional max pooling, data-dependent control flow) is refused
with an error that names the layer (`features.3 (FractionalMaxPool2d)`) and the exporter's reason.

Verification: the written file is loaded back (onnxruntime, or `torch.export.load`) and run on fresh
random inputs (two batch sizes when the batch is dynamic) and on real images of the model's own data
set; the largest absolute logit difference must be within `atol + rtol * max|logit|`, or the file is
removed and the export fails.
"""
from __future__ import annotations

import dataclasses
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CnnzooError
from ..models.base import Logits
from .images import Preprocess, read_image, real_images
from .meta import META_KEY, ModelMeta, Source, load_source

FORMATS = ("onnx", "pt2")
ATOL, RTOL = 1e-4, 1e-4


class ExportError(CnnzooError):
    """An exporter could not express the model, or the exported model computes different logits."""


@dataclasses.dataclass
class Check:
    """One verification: the exported model against PyTorch on some inputs."""

    inputs: str  # e.g. "random, batch 3" or "8 test images of digits"
    max_abs_diff: float | None  # None when skipped
    tol: float | None
    ok: bool
    note: str = ""


@dataclasses.dataclass
class ExportReport:
    path: str
    format: str
    model: str
    input_shape: list[Any]  # ["batch", C, H, W] or [N, C, H, W]
    runtime: str  # what ran the exported file for the checks
    seconds: float
    size_bytes: int
    checks: list[Check]
    notes: list[str]  # how exporter-sensitive layers were exported
    opset: int | None = None

    @property
    def max_abs_diff(self) -> float:
        return max((c.max_abs_diff for c in self.checks if c.max_abs_diff is not None), default=float("nan"))


# --- naming the layer an exporter cannot express -------------------------------------------------------

def _root_cause(exc: BaseException) -> str:
    """The exporter's own reason, without its boilerplate (first `<class ...>: message` line, else line 1)."""
    text = str(exc)
    found = re.findall(r"<class '[\w.]+'>: (.+)", text)
    line = found[0] if found else (text.strip().splitlines() or [type(exc).__name__])[0]
    return re.sub(r"\x1b\[[0-9;]*m", "", line).strip()[:300]


def _layer_of(stack: dict | None) -> str | None:
    if not stack:
        return None
    path, kind = list(stack.values())[-1]
    kind = getattr(kind, "__name__", str(kind)).rsplit(".", 1)[-1].strip("'>")
    path = re.sub(r"^L\['self'\]\.?|^model\.?", "", str(path)).replace("._modules['", ".").replace("']", "")
    return f"{path.removeprefix('model.') or '(top level)'} ({kind})"


def _layer_in_program(ep: torch.export.ExportedProgram, exc: BaseException) -> str | None:
    """The layer whose graph node the ONNX translator failed on (by node name, else by op name)."""
    text = str(exc)
    names = re.findall(r"translating node %(\w+)", text)
    targets = re.findall(r"op='([\w.]+)'", text) + re.findall(r"target=torch\.ops\.([\w.]+)\.\w+\]", text)
    for node in ep.graph.nodes:
        op = ".".join(str(node.target).split(".")[:2])  # aten.fractional_max_pool2d.default -> aten.fractional_max_pool2d
        if node.name in names or op in targets:
            return _layer_of(node.meta.get("nn_module_stack"))
    return None


def _layer_in_trace(model: nn.Module, x: torch.Tensor, dynamic_shapes) -> str | None:
    """Trace again with hooks that keep the stack of running modules; the innermost at the failure is it."""
    running: list[str] = []
    handles = []
    for name, mod in model.named_modules():
        label = f"{name.removeprefix('model.')} ({type(mod).__name__})" if name != "model" else f"{type(mod).__name__}.forward"
        handles.append(mod.register_forward_pre_hook(lambda m, a, n=label: running.append(n)))
        handles.append(mod.register_forward_hook(lambda m, a, o: running.pop()))
    try:
        torch.export.export(model, (x,), dynamic_shapes=dynamic_shapes, strict=False)
    except Exception:
        return running[-1] if len(running) > 1 else None
    finally:
        for h in handles:
            h.remove()
    return None


def trace(model: nn.Module, x: torch.Tensor, dynamic_batch: bool) -> torch.export.ExportedProgram:
    """`torch.export.export` of `Logits(model)` in eval mode, the batch dimension symbolic if asked."""
    model = Logits(model).eval()
    dyn = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.export(model, (x,), dynamic_shapes=dyn, strict=False)
    except Exception as exc:
        layer = _layer_in_trace(model, x, dyn)
        where = f" in layer {layer}" if layer else ""
        raise ExportError(f"torch.export cannot trace the model{where}: {_root_cause(exc)}") from exc


def to_onnx(ep: torch.export.ExportedProgram, meta: ModelMeta):
    """The ONNX ModelProto of a traced program, its input/output named, its batch dim called 'batch',
    and `meta` stored in its metadata."""
    import onnx

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(ep, dynamo=True, verbose=False, optimize=True,
                                        input_names=["input"], output_names=["logits"])
    except Exception as exc:
        layer = _layer_in_program(ep, exc)
        where = f" layer {layer}" if layer else " the model"
        raise ExportError(f"the ONNX exporter cannot express{where}: {_root_cause(exc)}") from exc
    proto = program.model_proto
    for value in list(proto.graph.input) + list(proto.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if dim.HasField("dim_param"):
            dim.dim_param = "batch"
    onnx.helper.set_model_props(proto, {META_KEY: meta.to_json()})
    return proto


def _sensitive_layers(model: nn.Module, meta: ModelMeta, op_types: set[str]) -> list[str]:
    """Notes on how the layers the research flags as exporter traps came out (see the module docstring)."""
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [m.register_forward_pre_hook(lambda m, a, n=n: sizes.__setitem__(n, tuple(a[0].shape[-2:])))
             for n, m in model.named_modules() if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))]
    with torch.no_grad():
        model(torch.zeros(1, meta.in_chans, meta.input_size, meta.input_size))
    for h in hooks:
        h.remove()
    notes = []
    how = "ONNX LRN op" if "LRN" in op_types else "Pad + AveragePool + Pow, PyTorch's own formula"
    for name, m in model.named_modules():
        if isinstance(m, nn.LocalResponseNorm):
            notes.append(f"{name} LocalResponseNorm(size={m.size}): exported as {how}; covered by the checks")
        elif name in sizes:
            out = m.output_size if isinstance(m.output_size, tuple) else (m.output_size, m.output_size)
            out = tuple(o or s for o, s in zip(out, sizes[name]))
            if any(s % o for s, o in zip(sizes[name], out)):
                notes.append(f"{name} {type(m).__name__} {sizes[name][0]}x{sizes[name][1]} -> {out[0]}x{out[1]} "
                             "(not a divisor): exported as index gathers; covered by the checks")
    return notes


# --- verification ---------------------------------------------------------------------------------------

def _compare(run, model: nn.Module, x: torch.Tensor, what: str, chunk: int | None) -> Check:
    """Max |difference| of the logits; a fixed-batch export is fed `chunk` images at a time."""
    with torch.no_grad():
        ref = Logits(model)(x).float().numpy()
    if chunk is None:
        got = run(x.numpy())
    else:
        idx = torch.arange(-(-len(x) // chunk) * chunk) % len(x)  # repeat images to fill the last chunk
        got = np.concatenate([run(x[i].numpy()) for i in idx.split(chunk)])[:len(x)]
    diff = float(np.abs(got - ref).max())
    tol = ATOL + RTOL * float(np.abs(ref).max())
    return Check(what, diff, tol, bool(diff <= tol) and got.shape == ref.shape)


def _checks(run, model: nn.Module, meta: ModelMeta, batches: list[int], real: torch.Tensor | None,
            real_what: str, chunk: int | None) -> list[Check]:
    g = torch.Generator().manual_seed(int(time.time_ns() % 2**31))  # fresh inputs every export
    shape = (meta.in_chans, meta.input_size, meta.input_size)
    checks = [_compare(run, model, torch.randn(b, *shape, generator=g), f"random, batch {b}", chunk)
              for b in batches]
    if real is None:
        checks.append(Check("real images", None, None, True, f"skipped: {real_what}; pass images to check on"))
    else:
        checks.append(_compare(run, model, real, real_what, chunk))
    return checks


def _real(meta: ModelMeta, images: list[str] | None, n: int = 16) -> tuple[torch.Tensor | None, str]:
    if images:
        from .images import ImageRejected, expand_inputs

        pre = Preprocess(meta)
        paths, failures = expand_inputs(images)
        if failures:  # the user named these images: checking on others instead would mislead
            raise CnnzooError(f"--images {failures[0].input}: {failures[0].error}")
        xs = []
        for p in paths[:n]:
            try:
                xs.append(pre(read_image(p, pre.mode)))
            except ImageRejected as exc:
                raise CnnzooError(f"--images {p}: {exc}") from None
        return torch.stack(xs), f"{len(xs)} given images"
    return real_images(meta, n)


def is_export(path: Path) -> bool:
    """Whether `path` is a file cnnzoo exported (ONNX or torch.export, both carry META_KEY): safe to replace."""
    try:
        with open(path, "rb") as f:
            return META_KEY.encode() in f.read(256 * 2**20)
    except OSError:
        return False


def check_out(out: str | os.PathLike, force: bool = False) -> Path:
    """Refuse, before any work, an output that is a folder or a file that is not a previous export."""
    out = Path(out)
    if out.is_dir():
        raise CnnzooError(f"cannot write {out}: it is a folder; pass a file name such as {out / 'model.onnx'}")
    if out.exists() and not force and not is_export(out):
        raise CnnzooError(f"{out} exists and is not a cnnzoo export; pass --force to replace it or choose "
                          f"another --out")
    return out


def export_model(model: nn.Module, meta: ModelMeta, fmt: str, out: str | os.PathLike, *,
                 dynamic_batch: bool = False, batch: int = 1, images: list[str] | None = None,
                 force: bool = False) -> ExportReport:
    """Export `model` (eval mode, CPU) to a temporary file next to `out`, verify it, then rename it to `out`.

    A failed check or write (full disk, file-size limit) leaves a previous `out` as it was."""
    if fmt not in FORMATS:
        raise CnnzooError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    from ..fileio import atomic_write, make_folder

    out = check_out(out, force)
    make_folder(out.parent)
    model = model.eval()
    start = time.perf_counter()
    x = torch.randn(2 if dynamic_batch else batch, meta.in_chans, meta.input_size, meta.input_size)
    ep = trace(model, x, dynamic_batch)
    batches = [1, 3] if dynamic_batch else [batch]
    real, real_what = _real(meta, images)
    done: dict = {"notes": [], "opset": None}

    def verify(tmp: Path) -> None:
        if fmt == "onnx":
            import onnx
            import onnxruntime as ort

            try:
                onnx.checker.check_model(str(tmp), full_check=True)
            except onnx.checker.ValidationError as exc:
                raise ExportError(f"onnx.checker rejects the exported model: {str(exc).splitlines()[0]}") from None
            session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
            run = lambda a: session.run(None, {"input": a})[0]  # noqa: E731
            done["runtime"] = f"onnxruntime {ort.__version__}"
        else:
            loaded = torch.export.load(str(tmp)).module()
            run = lambda a: loaded(torch.from_numpy(a)).detach().numpy()  # noqa: E731
            done["runtime"] = f"torch.export.load (torch {torch.__version__})"
        checks = done["checks"] = _checks(run, model, meta, batches, real, real_what,
                                          None if dynamic_batch else batch)
        bad = [c for c in checks if not c.ok]
        if bad:
            c = bad[0]
            raise ExportError(f"the exported {fmt} model differs from PyTorch on {c.inputs}: max |difference| "
                              f"{c.max_abs_diff:.3g} > tolerance {c.tol:.3g}; nothing was written")

    if fmt == "onnx":
        proto = to_onnx(ep, meta)
        done["opset"] = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        done["notes"] = _sensitive_layers(model, meta, {n.op_type for n in proto.graph.node})
        atomic_write(out, lambda f: f.write(proto.SerializeToString()), verify=verify)
    else:
        atomic_write(out, lambda f: torch.export.save(ep, f, extra_files={META_KEY: meta.to_json()}), verify=verify)
    checks, notes, opset, runtime = done["checks"], done["notes"], done["opset"], done["runtime"]
    shape = ["batch" if dynamic_batch else batch, meta.in_chans, meta.input_size, meta.input_size]
    return ExportReport(str(out), fmt, meta.model, shape, runtime, time.perf_counter() - start,
                        out.stat().st_size, checks, notes, opset)


def default_out(source: str | os.PathLike, meta: ModelMeta, fmt: str) -> Path:
    """RUN/export/MODEL.FMT for a run folder or a checkpoint inside one, else next to the checkpoint (an
    ensemble's: its first member's)."""
    p = Path(meta.checkpoint or (meta.members[0]["checkpoint"] if meta.members else source))
    folder = p.parent.parent if p.parent.name == "checkpoints" else p.parent
    return folder / "export" / f"{meta.model}.{fmt}"


def export_run(source: str | os.PathLike | Source, fmt: str = "onnx", out: str | os.PathLike | None = None, *,
               dynamic_batch: bool = False, images: list[str] | None = None, force: bool = False) -> ExportReport:
    """Export a run folder's (or a checkpoint's, or a `load_source` result's) model; `out` defaults to
    RUN/export/MODEL.FMT."""
    src = source if isinstance(source, Source) else load_source(source)
    if src.kind != "torch":
        raise CnnzooError(f"{source} is already an ONNX file; export reads a run folder or a .pt checkpoint")
    return export_model(src.module, src.meta, fmt, out or default_out(src.path, src.meta, fmt),
                        dynamic_batch=dynamic_batch, images=images, force=force)


def format_report(r: ExportReport) -> str:
    """The report as the CLI prints it."""
    shape = "x".join(map(str, r.input_shape))
    lines = [f"exported {r.model} to {r.path} ({r.format}{f', opset {r.opset}' if r.opset else ''}, "
             f"input {shape}, {r.size_bytes / 2**20:.1f} MiB, {r.seconds:.1f} s)",
             f"verified with {r.runtime} against PyTorch:"]
    for c in r.checks:
        if c.max_abs_diff is None:
            lines.append(f"  {c.inputs:<28} {c.note}")
        else:
            lines.append(f"  {c.inputs:<28} max |diff| {c.max_abs_diff:.2e}  (tolerance {c.tol:.1e})  ok")
    lines += [f"  note: {n}" for n in r.notes]
    return "\n".join(lines)
