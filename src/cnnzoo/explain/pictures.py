"""The pictures: heat over the photo, the first layer's filters (ZFNet Fig. 2), a layer's strongest channels.

Every PNG is written to a temporary file beside the target and renamed into place, so a failed write leaves
the previous picture intact and no temporary file behind.
"""
from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import CnnzooError
from .attribution import Explanation


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def save_figure(figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CnnzooError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        _plt().close(figure)
    return path


def draw_overlay(ax, e: Explanation, title: str | None = None, fontsize: int = 10) -> None:
    """The photo in grey-scale or colour, the heat in 'inferno' on top, opaque where the heat is strong."""
    photo = np.asarray(e.image, dtype=np.float32) / 255
    ax.imshow(photo, cmap="gray" if photo.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    heat = e.heatmap.numpy()
    rgba = _plt().get_cmap("inferno")(heat)
    rgba[..., 3] = 0.1 + 0.55 * heat  # the photo shows through where the model did not look
    ax.imshow(rgba, interpolation="bilinear")
    ax.set_title(title if title is not None else e.title(), fontsize=fontsize)
    ax.set_xticks([]), ax.set_yticks([])


def overlay_png(e: Explanation, path: str | os.PathLike, source_name: str = "") -> Path:
    """Photo and heat side by side, one PNG: the class, its probability and the method in the title."""
    plt = _plt()
    w, h = e.image.size
    scale = 4.0 / max(w, h)
    figure, (left, right) = plt.subplots(1, 2, figsize=(2 * w * scale + 0.6, h * scale + 0.9))
    photo = np.asarray(e.image, dtype=np.float32) / 255
    left.imshow(photo, cmap="gray" if photo.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    left.set_title(f"input ({w}x{h})", fontsize=10)
    left.set_xticks([]), left.set_yticks([])
    draw_overlay(right, e, title=f"{e.method}{f' ({e.layer})' if e.layer else ''}")
    figure.suptitle(f"{source_name + ': ' if source_name else ''}{e.label} {100 * e.probability:.1f}%"
                    + (f"  (predicted {e.predicted} {100 * e.predicted_probability:.1f}%)"
                       if e.predicted != e.label else ""), fontsize=11)
    return save_figure(figure, path)


def write_index(folder: str | os.PathLike, rows: Sequence[tuple[str, str, str]], title: str) -> Path:
    """index.html: one row per (image, method, png file name), pictures side by side per image."""
    folder = Path(folder)
    by_image: dict[str, list[tuple[str, str]]] = {}
    for image, method, png in rows:
        by_image.setdefault(image, []).append((method, png))
    body = "".join(
        f"<h2>{html.escape(image)}</h2><div class=row>"
        + "".join(f"<figure><img src='{html.escape(png)}' alt='{html.escape(method)}'>"
                  f"<figcaption>{html.escape(method)}</figcaption></figure>" for method, png in items)
        + "</div>" for image, items in by_image.items())
    page = (f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title><style>body{{font-family:"
            f"sans-serif;margin:2em}}.row{{display:flex;flex-wrap:wrap;gap:1em}}img{{max-width:480px}}</style>"
            f"<h1>{html.escape(title)}</h1>{body}")
    path = folder / "index.html"
    tmp = folder / ".index.html.tmp"
    try:
        tmp.write_text(page)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CnnzooError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def filter_grid(model: nn.Module, path: str | os.PathLike, title: str = "") -> Path:
    """The first convolution's filters as small pictures, each scaled to its own range (ZFNet Fig. 2):
    RGB where the filter has three input channels, else one grey picture per filter (its mean over inputs)."""
    plt = _plt()
    w = first_conv(model).weight.detach().float().cpu()  # out x in x k x k
    if w.shape[1] != 3:
        w = w.mean(1, keepdim=True)
    lo = w.amin(dim=(1, 2, 3), keepdim=True)
    hi = w.amax(dim=(1, 2, 3), keepdim=True)
    w = (w - lo) / (hi - lo).clamp_min(1e-12)
    n, k = w.shape[0], w.shape[-1]
    cols = math.ceil(math.sqrt(n * 1.5))
    rows = math.ceil(n / cols)
    figure, axes = plt.subplots(rows, cols, figsize=(cols * 0.5 + 0.4, rows * 0.5 + 0.7), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            f = w[i].permute(1, 2, 0).numpy()
            ax.imshow(f if f.shape[2] == 3 else f[..., 0], cmap=None if f.shape[2] == 3 else "gray",
                      interpolation="nearest", vmin=0, vmax=1)
    figure.suptitle(title or f"first-layer filters: {n} of {k}x{k}, each scaled to its own range", fontsize=10)
    return save_figure(figure, path)


def activation_grid(maps: torch.Tensor, photo: np.ndarray, path: str | os.PathLike, title: str,
                    strongest: int = 16) -> Path:
    """The `strongest` channels of a layer's map (C x H x W) by mean activation, beside the input."""
    plt = _plt()
    order = maps.float().mean(dim=(1, 2)).argsort(descending=True)[:strongest]
    cols = min(len(order) + 1, 6)
    rows = math.ceil((len(order) + 1) / cols)
    figure, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.7 + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes.flat[0].imshow(photo, cmap="gray" if photo.ndim == 2 else None, interpolation="nearest")
    axes.flat[0].set_title("input", fontsize=9)
    for ax, c in zip(list(axes.flat)[1:], order.tolist()):
        ax.imshow(maps[c].float().numpy(), cmap="viridis", interpolation="nearest")
        ax.set_title(f"channel {c}\nmean {float(maps[c].float().mean()):.2f}", fontsize=8)
    figure.suptitle(title, fontsize=10)
    return save_figure(figure, path)
