"""Ensembles: several trained models as one, predicting the mean of their softmax.

The lecture's ILSVRC 2016 winner was an ensemble, and AlexNet, VGG and GoogLeNet all report their best figures
for several networks averaged: p(class | x) = (1/M) sum_m softmax(f_m(x)). `Ensemble` returns the log of that
mean (`data.tta.mean_log_softmax`), so softmax of its output is the mean probability exactly and it is, for
`evaluate`, `predict`, `serve`, `export` and the inference backends, one more classifier.

    from cnnzoo.deploy.ensemble import load_ensemble, evaluate_ensemble
    source = load_ensemble(["runs/a", "runs/b"])      # a Source like load_source's: predict, serve, export it
    report = evaluate_ensemble(["runs/a", "runs/b"])  # each member's top-1/top-5, the ensemble's, the gain

What members must share, and why:
- the class names, in the same order: probabilities are averaged class by class;
- the input geometry (channels, input size, eval crop): the ensemble is one model with one input tensor, so
  that one ONNX graph, one server batch and one preprocessing serve every member. A different resize or crop
  is not a function of the other member's input tensor (the pixels it needs were cropped away), so it is refused.
- not the normalisation: member m's input is the first member's, re-normalised by the affine map
  x_m = (x * std_0 + mean_0 - mean_m) / std_m, inside the graph (`Renormalise`), which is exact.
Members trained on different splits of the same data would test one on the other's training images, so
`evaluate_ensemble` refuses that unless told which data to use.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.tta import mean_log_softmax
from ..errors import CnnzooError
from .meta import ModelMeta, Source, is_onnx, load_source


ONNX_MEMBER = ("{} is an ONNX file; an ensemble is built from run folders or checkpoints (export the ensemble "
               "itself: cnnzoo export RUN1 RUN2 ...)")


class Renormalise(nn.Module):
    """A member fed the ensemble's input normalised for the first member: x -> member(x * scale + shift)."""

    def __init__(self, member: nn.Module, scale: list[float], shift: list[float]) -> None:
        super().__init__()
        self.member = member
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32).view(-1, 1, 1))
        self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32).view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.member(x * self.scale + self.shift)


class Ensemble(nn.Module):
    """N x C x H x W -> N x classes: log of the mean of the members' softmax (see the module docstring)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [m(x) for m in self.members]
        logits = torch.stack([o.logits if hasattr(o, "logits") else o for o in outs], dim=1)  # N x M x classes
        return mean_log_softmax(logits, dim=1)


def _geometry(meta: ModelMeta) -> tuple:
    return meta.in_chans, meta.input_size, round(meta.crop_pct, 6)


def check_members(metas: list[ModelMeta], names: list[str]) -> None:
    """Refuse, in one line, members that do not share classes or input geometry (see the module docstring)."""
    first, name0 = metas[0], names[0]
    for meta, name in zip(metas[1:], names[1:]):
        if meta.classes != first.classes:
            raise CnnzooError(f"ensemble members disagree on their classes: {name0} has {_short(first.classes)}, "
                              f"{name} has {_short(meta.classes)}; averaging needs the same class names in the same "
                              f"order")
        if _geometry(meta) != _geometry(first):
            what = "channels {} input {} px eval crop {}"
            raise CnnzooError(f"ensemble members take different inputs: {name0} {what.format(*_geometry(first))}, "
                              f"{name} {what.format(*_geometry(meta))}; an ensemble feeds its members one image, "
                              f"so train them with the same --input-size and --crop-pct (normalisation may differ)")


def member_modules(modules: list[nn.Module], metas: list[ModelMeta]) -> list[nn.Module]:
    """The members, each wrapped in `Renormalise` where its normalisation differs from the first member's."""
    m0, s0 = metas[0].mean, metas[0].std
    out = []
    for module, meta in zip(modules, metas):
        if (meta.mean, meta.std) == (m0, s0):
            out.append(module)
            continue
        scale = [a / b for a, b in zip(s0, meta.std)]
        shift = [(a - m) / s for a, m, s in zip(m0, meta.mean, meta.std)]
        out.append(Renormalise(module, scale, shift))
    return out


def ensemble_meta(metas: list[ModelMeta]) -> ModelMeta:
    """The ensemble's description: the first member's interface, its members listed."""
    first = metas[0]
    same_data = all((m.data, m.split) == (first.data, first.split) for m in metas)
    return dataclasses.replace(
        first, model="ensemble", data=first.data if same_data else None, split=first.split if same_data else {},
        epoch=None, best_top1=None, checkpoint=None, hflip=all(m.hflip for m in metas) if metas else None,
        members=[{"model": m.model, "checkpoint": m.checkpoint, "mean": m.mean, "std": m.std} for m in metas])


def ensemble_source(sources: list[Source], names: list[str]) -> Source:
    """One Source (a torch Ensemble) from loaded PyTorch members."""
    for src, name in zip(sources, names):
        if src.kind != "torch":
            raise CnnzooError(ONNX_MEMBER.format(name))
    metas = [s.meta for s in sources]
    check_members(metas, names)
    module = Ensemble(member_modules([s.module for s in sources], metas)).eval()
    return Source("torch", ensemble_meta(metas), " + ".join(map(str, names)), module)


def load_ensemble(sources: list[str | os.PathLike], weights: str | None = None) -> Source:
    """`load_source` of one source; of several, their ensemble (`weights` names one model's weights, so it
    goes with one source only)."""
    sources = list(sources)
    if not sources:
        raise CnnzooError("no model given; pass a run folder, a checkpoint or an ONNX file")
    if len(sources) == 1:
        return load_source(sources[0], weights)
    if weights is not None:
        raise CnnzooError("--weights names one model's weights; an ensemble takes run folders or checkpoints only")
    _refuse_duplicates(sources)
    for s in sources:
        if is_onnx(s):
            raise CnnzooError(ONNX_MEMBER.format(s))
    return ensemble_source([load_source(s) for s in sources], [str(s) for s in sources])


def _refuse_duplicates(sources: list) -> None:
    from ..train.checkpoint import resolve_path

    seen: dict[str, str] = {}
    for s in sources:
        key = str((resolve_path(s) if is_trained_source(str(s)) else Path(s).expanduser()).resolve())
        if key in seen:
            raise CnnzooError(f"{s} is given twice (as {seen[key]}); an ensemble of a model with itself is that model")
        seen[key] = str(s)


def is_trained_source(item: str) -> bool:
    """A run folder, a checkpoint or an ONNX file: a model, not an image, on a command line before the images
    (an ONNX file among several is then refused by `ensemble_source`, with the reason)."""
    p = Path(item).expanduser()
    if p.is_dir():
        return (p / "checkpoints").is_dir() or any((p / n).is_file() for n in ("best.pt", "last.pt"))
    return p.is_file() and p.suffix.lower() in (".pt", ".onnx")


def split_sources(items: list[str]) -> tuple[list[str], list[str]]:
    """`predict RUN1 RUN2 IMAGE...`: the leading run folders and checkpoints, then the images."""
    n = 0
    while n < len(items) and is_trained_source(items[n]):
        n += 1
    return items[:n], items[n:]


def _short(names: list[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")


# --- evaluation ------------------------------------------------------------------------------------------

def _run_name(info: dict[str, Any]) -> str:
    p = Path(info["path"])
    return p.parent.parent.name if p.parent.name == "checkpoints" else p.stem


def _split_of(info: dict[str, Any]) -> tuple:
    cfg = info.get("config") or {}
    return cfg.get("data"), cfg.get("val", 0.1), cfg.get("test", 0.1), cfg.get("split_seed", 0)


def evaluate_ensemble(targets: list[str], *, data: str | None = None, split: str = "test", which: str = "best",
                      out: str | None = None, batch_size: int = 128, device: str = "auto",
                      tta: str | None = None) -> dict[str, Any]:
    """Each member's top-1/top-5 and their ensemble's (mean of softmax) on one split; writes the ensemble's
    `eval-SPLIT.json` and `confusion-SPLIT.png` into `out` (default: RUNS/ensemble-NAME1+NAME2...).

    Members are scored with their own preprocessing; the ensemble with the first member's (see the module
    docstring). `tta` adds the ensemble's multi-crop figures (`train.evaluation.tta_section`)."""
    from ..data import load_data
    from ..train.checkpoint import load_checkpoint
    from ..train.distributed import pick_device
    from ..data.tta import check_tta
    from ..train.evaluation import _score, _write_report, measure, tta_section

    _refuse_duplicates(targets)
    dev = pick_device(device)
    loaded = [load_checkpoint(t, which=which, device=dev) for t in targets]
    infos = [info for _, info in loaded]
    metas = [ModelMeta.from_info(info) for info in infos]
    check_members(metas, list(targets))
    splits = {_split_of(info) for info in infos}
    if data is None and len(splits) > 1:
        raise CnnzooError("ensemble members were trained on different data or splits (" +
                          "; ".join(f"{t}: {_split_of(i)[0]} split_seed {_split_of(i)[3]}" for t, i in zip(targets, infos)) +
                          "): one member's test images would be another's training images; train them on the same "
                          "split, or pass --data")
    spec, val, test, split_seed = _split_of(infos[0])
    spec = data or spec
    if not spec:
        raise CnnzooError("the checkpoints do not say which data they were trained on; pass --data")
    source = load_data(spec, val=val, test=test, split_seed=split_seed)
    if split not in source.splits:
        raise CnnzooError(f"{spec} has no {split!r} split (it has {', '.join(source.splits)}); use --split")
    if source.classes != metas[0].classes:
        raise CnnzooError(f"{spec} has classes {_short(source.classes)} but the members were trained on "
                          f"{_short(metas[0].classes)}; evaluate on data with the same classes")
    if tta:
        check_tta(tta, all(m.hflip is not False for m in metas), " + ".join(map(str, targets)))
    part = source.splits[split]
    members = []
    for target, (net, info) in zip(targets, loaded):
        r = measure(net, info, part, f"{source.name}/{split}", batch_size, dev)
        members.append({"source": str(target), "model": info["model"], "checkpoint": info["path"],
                        "epoch": info["epoch"], "top1": r["top1"], "top5": r["top5"], "loss": r["loss"]})
    module = Ensemble(member_modules([net for net, _ in loaded], metas)).to(dev).eval()
    e_info = {**infos[0], "model": f"ensemble of {len(targets)}"}
    first = Path(infos[0]["path"])
    folder = Path(out) if out else (first.parent.parent.parent if first.parent.name == "checkpoints" else first.parent) \
        / ("ensemble-" + "+".join(_run_name(i) for i in infos))[:120]
    report = _score(module, e_info, part, f"{source.name}/{split}", folder, split, batch_size, dev, "fp32", False, 0)
    best = max(members, key=lambda m: m["top1"])
    report.update({"checkpoint": " + ".join(m["checkpoint"] for m in members), "epoch": None, "data": spec,
                   "members": members, "best_member": best["source"], "gain_top1": report["top1"] - best["top1"],
                   "gain_top5": report["top5"] - max(m["top5"] for m in members),
                   "gain_top1_over_mean": report["top1"] - sum(m["top1"] for m in members) / len(members)})
    if tta:
        report["tta"] = tta_section(module, e_info, part, f"{source.name}/{split}", batch_size, dev, tta, report)
    return _write_report(report, folder, split)


def format_members(r: dict[str, Any]) -> str:
    """The member table of an ensemble report: each member's top-1/top-5, the ensemble, its gain. The best member
    is picked after the fact, on the same test images, so the gain over it is biased low; the gain over the
    members' mean is the unbiased one."""
    rows = [(m["source"], m["model"], m["top1"], m["top5"]) for m in r["members"]]
    rows.append((f"ensemble (mean of {len(rows)} softmax)", "", r["top1"], r["top5"]))
    width = max(len(s) for s, *_ in rows)
    mw = max(len(m) for _, m, *_ in rows)
    lines = [f"  {'member':<{width}}  {'model':<{mw}}   top-1    top-5"]
    lines += [f"  {s:<{width}}  {m:<{mw}}  {100 * a:6.2f}%  {100 * b:6.2f}%" for s, m, a, b in rows]
    lines.append(f"  gain over the best member ({r['best_member']}): top-1 {100 * r['gain_top1']:+.2f} points, "
                 f"top-5 {100 * r['gain_top5']:+.2f} points; over the members' mean top-1 "
                 f"{100 * r['gain_top1_over_mean']:+.2f} points")
    return "\n".join(lines)
