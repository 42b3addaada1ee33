"""What an evaluation got wrong: the top losses (the test images the model is most confidently wrong about,
each with the Grad-CAM of the class it said) and the most-confused class pairs, as fastai's
`ClassificationInterpretation` shows them. `cnnzoo evaluate` adds both to its report."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..deploy.meta import ModelMeta, Source
from ..errors import CnnzooError
from ..models.base import ZooModel

TOP_LOSSES = 8
PAIRS = 5


def confused_pairs(cm: torch.Tensor | np.ndarray, classes: list[str], n: int = PAIRS) -> list[dict[str, Any]]:
    """The `n` largest off-diagonal cells of the confusion matrix (rows: true class), largest first."""
    cm = np.asarray(cm)
    cells = [(int(cm[t, p]), t, p) for t in range(len(cm)) for p in range(len(cm)) if t != p and cm[t, p] > 0]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [{"true": classes[t], "predicted": classes[p], "count": k} for k, t, p in cells[:n]]


def _readable(split, skipped: list) -> list[int]:
    """Dataset indices of the images the evaluation scored, in its order (unreadable files were skipped)."""
    bad = {s[0] if isinstance(s, (list, tuple)) else getattr(s, "path", s) for s in skipped}
    if not bad or split.paths is None:
        return list(range(len(split)))
    return [i for i, p in enumerate(split.paths) if p not in bad]


def raw_image(split, i: int, mode: str) -> Image.Image:
    """Sample i of a split as the file is (or as the in-memory image is), before preprocessing."""
    if split.paths is not None:
        from ..deploy.images import read_image

        return read_image(split.paths[i], mode)
    img = split.images[i]
    img = (img.float() * 255 if img.is_floating_point() else img.float()).round().clamp(0, 255).to(torch.uint8)
    arr = img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()
    return Image.fromarray(arr).convert(mode)


def top_losses(result: dict[str, Any], split, classes: list[str], n: int = TOP_LOSSES) -> list[dict[str, Any]]:
    """The `n` wrong predictions with the largest cross-entropy, largest first."""
    index = _readable(split, result.get("skipped", []))
    pred, target, loss, conf = (result[k] for k in ("pred", "target", "losses", "confidence"))
    wrong = (pred != target).nonzero().flatten()
    order = wrong[loss[wrong].argsort(descending=True)][:n].tolist()
    return [{"index": index[k], "image": split.paths[index[k]] if split.paths is not None else f"#{index[k]}",
             "true": classes[int(target[k])], "predicted": classes[int(pred[k])],
             "probability": float(conf[k]), "loss": float(loss[k])} for k in order]


def plot_top_losses(model: torch.nn.Module, info: dict[str, Any], split, losses: list[dict[str, Any]],
                    path: str | os.PathLike, title: str) -> Path:
    """A grid: each top loss with the Grad-CAM of the class the model said, titled said / true / loss."""
    from .attribution import explain
    from .pictures import _plt, draw_overlay, save_figure

    meta = ModelMeta.from_info(info)
    source = Source("torch", meta, str(info.get("path", "")), model)
    mode = "L" if meta.in_chans == 1 else "RGB"
    cols = min(len(losses), 4)
    rows = math.ceil(len(losses) / cols)
    figure, axes = _plt().subplots(rows, cols, figsize=(cols * 2.4, rows * 2.6 + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, item in zip(axes.flat, losses):
        e = explain(source, raw_image(split, item["index"], mode), "gradcam", target=item["predicted"])
        draw_overlay(ax, e, title=f"said {item['predicted']} {100 * item['probability']:.0f}%\n"
                                  f"true {item['true']}, loss {item['loss']:.2f}", fontsize=8)
    figure.suptitle(title, fontsize=10)
    return save_figure(figure, path)


def add_mistakes(report: dict[str, Any], model: torch.nn.Module, info: dict[str, Any], split, result: dict[str, Any],
                 cm, folder: Path, split_name: str) -> None:
    """Add `confused_pairs`, `top_losses` and `top_losses_png` (when there is a mistake) to an eval report."""
    classes = info["classes"]
    report["confused_pairs"] = confused_pairs(cm, classes)
    report["top_losses"] = top_losses(result, split, classes)
    report["top_losses_png"] = None
    if report["top_losses"] and not isinstance(model, ZooModel):  # an ensemble or a multi-view wrapper
        report["top_losses_png_error"] = ("Grad-CAM reads one network's layer; explain each member "
                                          "(`cnnzoo explain RUN IMAGE`) for pictures")
    elif report["top_losses"]:
        was = model.training
        try:
            png = folder / f"top-losses-{split_name}.png"
            report["top_losses_png"] = str(plot_top_losses(
                model.float(), info, split, report["top_losses"], png,
                f"{info['model']}: the {len(report['top_losses'])} most confident mistakes on {split_name}, "
                f"with the Grad-CAM of the class it said"))
        except CnnzooError as exc:  # an architecture Grad-CAM cannot read: the numbers stand without the picture
            report["top_losses_png_error"] = str(exc)
        finally:
            model.train(was)


def format_mistakes(r: dict[str, Any]) -> list[str]:
    """Lines for the text report."""
    lines = []
    if r.get("confused_pairs"):
        lines.append("most confused (true -> predicted: images):")
        lines += [f"  {p['true']} -> {p['predicted']}: {p['count']}" for p in r["confused_pairs"]]
    if r.get("top_losses"):
        lines.append("top losses (most confidently wrong):")
        lines += [f"  {t['image']}: said {t['predicted']} ({100 * t['probability']:.1f}%), true {t['true']}, "
                  f"loss {t['loss']:.2f}" for t in r["top_losses"]]
        if r.get("top_losses_png"):
            lines.append(f"  with Grad-CAM: {r['top_losses_png']}")
    elif "top_losses" in r:
        lines.append("no mistakes: every image is classified correctly")
    return lines
