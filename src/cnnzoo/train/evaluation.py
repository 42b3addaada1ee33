"""Testing: top-1/top-5 over a split, per-class accuracy and the confusion matrix (`cnnzoo evaluate`).

`evaluate_loader` is shared with the trainer's per-epoch validation; under torchrun each process
scores its shard and the counts are summed, so the figures are those of the whole split.
"""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from ..data import ImageDataset, collate, eval_transform, load_data
from ..errors import CnnzooError
from ..fileio import make_folder, write_text
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
    preds, targets, losses, confidence, skipped = [], [], [], [], []
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
            losses.append(F.cross_entropy(out, y, reduction="none").cpu())  # for the top losses
            confidence.append(out.softmax(1).amax(1).cpu())
    loss, top1, top5, n = all_sum([loss, top1, top5, n], env)
    result = {"loss": loss / max(n, 1), "top1": top1 / max(n, 1), "top5": top5 / max(n, 1), "images": int(n),
              "skipped": skipped}
    if keep_predictions:
        result["pred"] = torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)
        result["target"] = torch.cat(targets) if targets else torch.empty(0, dtype=torch.long)
        result["losses"] = torch.cat(losses) if losses else torch.empty(0)
        result["confidence"] = torch.cat(confidence) if confidence else torch.empty(0)
    return result


def _output_folder(target: str, ckpt_path: str) -> Path:
    """The run folder when given one (or a checkpoint inside it), else the checkpoint's folder."""
    p = Path(ckpt_path)
    return p.parent.parent if p.parent.name == "checkpoints" else p.parent


def evaluate(target: str | None = None, *, data: str | None = None, split: str = "test", which: str = "best",
             out: str | None = None, batch_size: int = 128, device: str = "auto", precision: str | None = None,
             workers: int = 0, model: str | None = None, weights: str | None = None,
             tta: str | None = None) -> dict[str, Any]:
    """Score a run's (or a checkpoint's) model on a split; write `eval-SPLIT.json` and `confusion-SPLIT.png`.

    `data` defaults to the data set the run was trained on, split the same way. Without a run, `model` and
    `weights` (e.g. "resnet50", "imagenet") score published or converted weights on `data`: for ImageNet's
    validation folder (one folder per synset), the folders in sorted order are the class indices, and every image
    is scored (`split` "all"); the report sets the published top-1/top-5 beside the measured ones.
    `tta` (flip, 5crop, 10crop) adds multi-crop figures, their gain and cost (`tta_section`).
    """
    dev = pick_device(device)
    if model is not None:
        return _evaluate_weights(model, weights, data, out, batch_size, dev, workers, tta)
    if target is None:
        raise CnnzooError("evaluate what? pass a run folder or checkpoint, or --model NAME --weights W --data D")
    net, info = load_checkpoint(target, which=which, device=dev)
    cfg = info.get("config") or {}
    spec = data or cfg.get("data")
    if not spec:
        raise CnnzooError("the checkpoint does not say which data it was trained on; pass --data")
    source = load_data(spec, val=cfg.get("val", 0.1), test=cfg.get("test", 0.1), split_seed=cfg.get("split_seed", 0),
                       root=cfg.get("data_root"))
    if split not in source.splits:
        raise CnnzooError(f"{spec} has no {split!r} split (it has {', '.join(source.splits)}); use --split")
    if source.classes != info["classes"]:
        raise CnnzooError(f"{spec} has classes {_short(source.classes)} but the model was trained on "
                          f"{_short(info['classes'])}; evaluate on data with the same class folders/labels")
    if tta:
        from ..data.tta import check_tta

        check_tta(tta, cfg.get("hflip"), target)
    folder = Path(out) if out else _output_folder(target, info["path"])
    prec = precision or cfg.get("precision", "fp32")
    report = _score(net, info, source.splits[split], f"{source.name}/{split}", folder, split, batch_size, dev,
                    prec, bool(cfg.get("channels_last", False)), workers)
    report.update({"checkpoint": info["path"], "epoch": info["epoch"], "data": spec})
    if tta:
        report["tta"] = tta_section(net, info, source.splits[split], f"{source.name}/{split}", batch_size, dev, tta,
                                    report, prec, workers)
    return _write_report(report, folder, split)


def _evaluate_weights(name: str, weights: str | None, spec: str | None, out: str | None, batch_size: int,
                      dev: torch.device, workers: int, tta: str | None = None) -> dict[str, Any]:
    from ..models import create_model, get_card
    from ..weights import file_classes, load_pretrained, read_weights

    if not weights or not spec:
        raise CnnzooError("--model needs --weights (e.g. imagenet) and --data (e.g. the ImageNet validation folder)")
    get_card(name)  # an unknown name fails here, with suggestions
    w = read_weights(weights, model=name)
    with torch.device("meta"):
        probe = create_model(name)
    n = file_classes(probe, w.state_dict)
    source = load_data(spec, val=0, test=0)  # every image: the folders, sorted, are the class indices
    if len(source.classes) != n:
        raise CnnzooError(f"{spec} has {len(source.classes)} class folders, the weights {n} classes; ImageNet's "
                          f"validation set has one folder per synset (n01440764, ...), 1000 in all")
    net = create_model(name, num_classes=n).to(dev)
    load_pretrained(net, w, log=lambda line: None)
    info = {"model": name, "classes": w.info.get("classes") or source.classes, "in_chans": 3,
            "input_size": int(w.info.get("input_size") or get_card(name).input_size),
            "mean": w.info.get("mean") or [0.485, 0.456, 0.406], "std": w.info.get("std") or [0.229, 0.224, 0.225],
            "crop_pct": float(w.info.get("crop_pct") or 0.875)}
    folder = Path(out) if out else Path("runs") / f"eval-{name}-{Path(spec).name}"
    report = _score(net.eval(), info, source.splits["train"], f"{source.name}/all", folder, "all", batch_size, dev,
                    "fp32", False, workers)
    report.update({"checkpoint": str(w.path), "epoch": None, "data": spec, "weights": str(weights),
                   "published": w.info.get("published")})
    if tta:
        report["tta"] = tta_section(net, info, source.splits["train"], f"{source.name}/all", batch_size, dev, tta,
                                    report, "fp32", workers)
    return _write_report(report, folder, "all")


def measure(model: torch.nn.Module, info: dict, split_data, title: str, batch_size: int, dev: torch.device,
            precision: str = "fp32", channels_last: bool = False, workers: int = 0,
            tta: str | None = None) -> dict[str, Any]:
    """`evaluate_loader` over one split through the eval preset of `info`, or through the `tta` views with the
    model averaging its softmax over them (`data.tta`); with `seconds`, the wall time of the pass."""
    from ..data.tta import Views, ViewAverage

    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    args = (info["input_size"], info["mean"], info["std"])
    kw = {"in_chans": info["in_chans"], "crop_pct": info["crop_pct"]}
    tf = Views(tta, *args, **kw) if tta else eval_transform(*args, **kw)
    ds = ImageDataset(split_data, tf, in_chans=info["in_chans"])
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate,
                        pin_memory=dev.type == "cuda")
    net, env = ViewAverage(model) if tta else model, DistEnv(device=dev)
    kw = {"env": env, "precision": precision, "channels_last": channels_last and not tta}
    # warm-up on one batch, untimed: the first call's allocations and kernel choices would bill the first pass
    evaluate_loader(net, DataLoader(Subset(ds, range(min(len(ds), batch_size))), batch_size=batch_size,
                                    collate_fn=collate), **kw)
    start = time.perf_counter()
    r = evaluate_loader(net, loader, keep_predictions=True, **kw)
    r["seconds"] = time.perf_counter() - start
    if r["images"] == 0:
        raise CnnzooError(f"no image of {title} could be read; run `cnnzoo data check` on it")
    return r


def _score(model: torch.nn.Module, info: dict, split_data, title: str, folder: Path, split: str, batch_size: int,
           dev: torch.device, precision: str, channels_last: bool, workers: int) -> dict[str, Any]:
    """Top-1/top-5, loss, per-class accuracy and the confusion matrix (drawn into `folder`) of one split."""
    r = measure(model, info, split_data, title, batch_size, dev, precision, channels_last, workers)
    classes = info["classes"]
    cm = confusion_matrix(r["pred"], r["target"], len(classes))
    make_folder(folder)
    png = folder / f"confusion-{split}.png"
    plot_confusion(cm, classes, png, f"{info['model']} on {title}: top-1 {100 * r['top1']:.2f}%")
    report = {
        "model": info["model"], "split": split, "images": r["images"], "top1": r["top1"], "top5": r["top5"],
        "loss": r["loss"], "per_class": {c: acc for c, acc in zip(classes, per_class_accuracy(cm))},
        "per_class_images": {c: int(v) for c, v in zip(classes, cm.sum(1).tolist())},
        "confusion": cm.tolist(), "skipped": [list(s) for s in r["skipped"]], "confusion_png": str(png),
        "seconds": r["seconds"], "ms_per_image": 1000 * r["seconds"] / r["images"],
    }
    from ..explain.mistakes import add_mistakes  # top losses with Grad-CAM, most-confused pairs

    add_mistakes(report, model, info, split_data, r, cm, folder, split)
    return report


def tta_section(model: torch.nn.Module, info: dict, split_data, title: str, batch_size: int, dev: torch.device,
                tta: str, base: dict[str, Any], precision: str = "fp32", workers: int = 0) -> dict[str, Any]:
    """Multi-crop figures beside the single centre crop of `base` (a `_score` report): the gain, and the cost
    (time per image, as a multiple of the centre crop's; both passes decode and transform every image)."""
    from ..data.tta import VIEWS

    r = measure(model, info, split_data, title, batch_size, dev, precision, False, workers, tta=tta)
    return {"views": tta, "n_views": VIEWS[tta], "top1": r["top1"], "top5": r["top5"], "loss": r["loss"],
            "gain_top1": r["top1"] - base["top1"], "gain_top5": r["top5"] - base["top5"],
            "ms_per_image": 1000 * r["seconds"] / r["images"], "cost_x": r["seconds"] / base["seconds"]}


def format_tta(t: dict[str, Any]) -> str:
    """One line: the multi-crop top-1/top-5, the gain over the centre crop, the cost."""
    return (f"--tta {t['views']} ({t['n_views']} views, softmax averaged): top-1 {100 * t['top1']:.2f}% "
            f"({100 * t['gain_top1']:+.2f} points over the centre crop), top-5 {100 * t['top5']:.2f}% "
            f"({100 * t['gain_top5']:+.2f}); {t['ms_per_image']:.2f} ms/image, {t['cost_x']:.1f}x the centre crop")


def _write_report(report: dict[str, Any], folder: Path, split: str) -> dict[str, Any]:
    write_text(folder / f"eval-{split}.json", json.dumps(report, indent=1))
    report["json"] = str(folder / f"eval-{split}.json")
    return report


def _short(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")


def format_report(r: dict[str, Any], worst: int = 10) -> str:
    """The report as text: headline figures, then per-class accuracy (all classes, or the `worst` when many)."""
    whence = (f"epoch {r['epoch']}" if r.get("epoch") is not None else f"{len(r['members'])} members"
              if r.get("members") else f"weights {r.get('weights')}")
    lines = [f"{r['model']} ({r['checkpoint']}, {whence}) on {r['data']} / {r['split']}: {r['images']} images",
             f"top-1 {100 * r['top1']:.2f}%   top-5 {100 * r['top5']:.2f}%   loss {r['loss']:.4f}"]
    pub = r.get("published")
    if pub:
        shown = "   ".join(f"{k} {v:.2f}%" for k, v in (("top-1", pub["top1"]), ("top-5", pub["top5"])) if v is not None)
        lines.append(f"published ({pub['source']}, {pub['spec']}): {shown}")
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
    if r.get("tta"):
        lines.insert(2, format_tta(r["tta"]))
    from ..explain.mistakes import format_mistakes

    lines += format_mistakes(r)
    lines.append(f"confusion matrix: {r['confusion_png']}   report: {r['json']}")
    return "\n".join(lines)
