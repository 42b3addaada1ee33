"""Testing: top-1/top-5 over a split, per-class accuracy and the confusion matrix (`cnnzoo evaluate`).

`evaluate_loader` is shared with the trainer's per-epoch validation; under torchrun each process
scores its shard and the counts are summed, so the figures are those of the whole split.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..data import ImageDataset, collate, eval_transform, load_data
from ..errors import CnnzooError
from .checkpoint import load_checkpoint
from .distributed import DistEnv, all_sum, pick_device
from .metrics import confusion_matrix, per_class_accuracy, plot_confusion, topk_correct
from .prepare import amp_dtype


def autocast(device: torch.device, precision: str):
    dtype = amp_dtype(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def logits_of(out) -> torch.Tensor:
    """The main logits of a model's output (a tensor, or a named tuple with `logits` such as GoogLeNet's)."""
    return out.logits if hasattr(out, "logits") else out


@torch.no_grad()
def evaluate_loader(model: torch.nn.Module, loader: DataLoader, *, env: DistEnv, precision: str,
                    channels_last: bool, keep_predictions: bool = False) -> dict[str, Any]:
    """Mean cross-entropy (no smoothing), top-1 and top-5 accuracy over every process's shard."""
    model.eval()
    loss, top1, top5, n = 0.0, 0, 0, 0
    preds, targets, skipped = [], [], []
    for x, y, bad in loader:
        skipped += bad
        if not len(y):
            continue
        x, y = x.to(env.device, non_blocking=True), y.to(env.device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(env.device, precision):
            out = logits_of(model(x)).float()
        loss += float(F.cross_entropy(out, y, reduction="sum"))
        c1, c5 = topk_correct(out, y)
        top1, top5, n = top1 + c1, top5 + c5, n + len(y)
        if keep_predictions:
            preds.append(out.argmax(1).cpu())
            targets.append(y.cpu())
    loss, top1, top5, n = all_sum([loss, top1, top5, n], env)
    result = {"loss": loss / max(n, 1), "top1": top1 / max(n, 1), "top5": top5 / max(n, 1), "images": int(n),
              "skipped": skipped}
    if keep_predictions:
        result["pred"] = torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)
        result["target"] = torch.cat(targets) if targets else torch.empty(0, dtype=torch.long)
    return result


def _output_folder(target: str, ckpt_path: str) -> Path:
    """The run folder when given one (or a checkpoint inside it), else the checkpoint's folder."""
    p = Path(ckpt_path)
    return p.parent.parent if p.parent.name == "checkpoints" else p.parent


def evaluate(target: str, *, data: str | None = None, split: str = "test", which: str = "best",
             out: str | None = None, batch_size: int = 128, device: str = "auto", precision: str | None = None,
             workers: int = 0) -> dict[str, Any]:
    """Score a run's (or a checkpoint's) model on a split; write `eval-SPLIT.json` and `confusion-SPLIT.png`.

    `data` defaults to the data set the run was trained on, split the same way.
    """
    dev = pick_device(device)
    model, info = load_checkpoint(target, which=which, device=dev)
    cfg = info.get("config") or {}
    spec = data or cfg.get("data")
    if not spec:
        raise CnnzooError("the checkpoint does not say which data it was trained on; pass --data")
    source = load_data(spec, val=cfg.get("val", 0.1), test=cfg.get("test", 0.1), split_seed=cfg.get("split_seed", 0))
    if split not in source.splits:
        raise CnnzooError(f"{spec} has no {split!r} split (it has {', '.join(source.splits)}); use --split")
    if source.classes != info["classes"]:
        raise CnnzooError(f"{spec} has classes {_short(source.classes)} but the model was trained on "
                          f"{_short(info['classes'])}; evaluate on data with the same class folders/labels")
    precision = precision or cfg.get("precision", "fp32")
    channels_last = bool(cfg.get("channels_last", False))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    tf = eval_transform(info["input_size"], info["mean"], info["std"], in_chans=info["in_chans"],
                        crop_pct=info["crop_pct"])
    ds = ImageDataset(source.splits[split], tf, in_chans=info["in_chans"])
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate,
                        pin_memory=dev.type == "cuda")
    r = evaluate_loader(model, loader, env=DistEnv(device=dev), precision=precision, channels_last=channels_last,
                        keep_predictions=True)
    if r["images"] == 0:
        raise CnnzooError(f"no image of the {split} split could be read; run `cnnzoo data check {spec}`")
    cm = confusion_matrix(r["pred"], r["target"], len(info["classes"]))
    folder = Path(out) if out else _output_folder(target, info["path"])
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / f"confusion-{split}.png"
    plot_confusion(cm, info["classes"], png, f"{info['model']} on {source.name}/{split}: top-1 {100 * r['top1']:.2f}%")
    report = {
        "checkpoint": info["path"], "model": info["model"], "epoch": info["epoch"], "data": spec, "split": split,
        "images": r["images"], "top1": r["top1"], "top5": r["top5"], "loss": r["loss"],
        "per_class": {c: acc for c, acc in zip(info["classes"], per_class_accuracy(cm))},
        "per_class_images": {c: int(v) for c, v in zip(info["classes"], cm.sum(1).tolist())},
        "confusion": cm.tolist(), "skipped": [list(s) for s in r["skipped"]], "confusion_png": str(png),
    }
    tmp = folder / f".eval-{split}.json.tmp"
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(folder / f"eval-{split}.json")
    report["json"] = str(folder / f"eval-{split}.json")
    return report


def _short(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")


def format_report(r: dict[str, Any], worst: int = 10) -> str:
    """The report as text: headline figures, then per-class accuracy (all classes, or the `worst` when many)."""
    lines = [f"{r['model']} ({r['checkpoint']}, epoch {r['epoch']}) on {r['data']} / {r['split']}: {r['images']} images",
             f"top-1 {100 * r['top1']:.2f}%   top-5 {100 * r['top5']:.2f}%   loss {r['loss']:.4f}"]
    if r["skipped"]:
        lines.append(f"skipped {len(r['skipped'])} unreadable image(s): " + "; ".join(s[0] for s in r["skipped"][:5]))
    items = [(c, a, r["per_class_images"][c]) for c, a in r["per_class"].items()]
    if len(items) > 30:
        items = sorted((i for i in items if i[1] is not None), key=lambda i: i[1])[:worst]
        lines.append(f"the {worst} least accurate classes:")
    else:
        lines.append("per-class accuracy:")
    width = max(len(c) for c, _, _ in items)
    lines += [f"  {c:<{width}}  {'-' if a is None else f'{100 * a:6.2f}%'}  ({n} images)" for c, a, n in items]
    lines.append(f"confusion matrix: {r['confusion_png']}   report: {r['json']}")
    return "\n".join(lines)
