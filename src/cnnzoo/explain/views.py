"""What `cnnzoo explain`, `filters` and `activations` do, as library calls a user can make from Python."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import CnnzooError
from .attribution import explain, load_image, method_name, torch_source
from .pictures import activation_grid, filter_grid, overlay_png, write_index


def explain_images(source: Any, images: Sequence[str], out: str | os.PathLike, *, methods: Sequence[str] = ("gradcam",),
                   weights: str | None = None, target: int | str | None = None, layer: str | None = None,
                   log=print) -> list[Path]:
    """An overlay PNG per image and method in `out` (IMAGE-METHOD.png), and index.html when there are several."""
    from ..deploy.images import expand_inputs

    methods = [method_name(m) for m in methods]  # a bad method fails before any work
    files, failures = expand_inputs(list(images))
    for f in failures:
        raise CnnzooError(f"image {f.input!r}: {f.error}")
    src = torch_source(source, weights)
    out = Path(out)
    name = src.meta.model
    written, rows = [], []
    for file in files:
        for method in methods:
            e = explain(src, file, method, target=target, layer=layer)
            png = out / f"{_stem(file)}-{method}.png"
            written.append(overlay_png(e, png, source_name=name))
            rows.append((str(file), e.title(), png.name))
            log(f"{file}: {e.title()} -> {png}")
    if len(written) > 1:
        written.append(write_index(out, rows, f"{name}: what the network looked at"))
        log(f"index: {written[-1]}")
    return written


def _stem(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem) or "image"


def filters(source: Any, out: str | os.PathLike, *, weights: str | None = None) -> Path:
    """The first-layer filter grid of a trained model (ZFNet Fig. 2 style)."""
    src = torch_source(source, weights)
    return filter_grid(src.module, out, title=f"{src.meta.model}: first-layer filters, each scaled to its own range")


def layer_maps(source: Any, image: Any, layer: str, *, weights: str | None = None) -> tuple[torch.Tensor, np.ndarray, str]:
    """(the layer's C x H x W map for the image, the image as an array, the module name)."""
    from ..deploy.images import Preprocess
    from ..transfer.layers import PRE_LOGITS, resolve_layer
    from .layers import check_spatial, output_shapes

    src = torch_source(source, weights)
    model = src.module.eval()
    name = resolve_layer(model, layer)
    shapes = output_shapes(model, src.meta.input_size)
    if name == PRE_LOGITS:
        raise CnnzooError(f"{layer} is the pooled feature vector, not a map; pick a layer with C x H x W output")
    check_spatial(name, shapes, "activations")
    img = load_image(image, src.meta)
    box: list[torch.Tensor] = []
    hook = model.get_submodule(name).register_forward_hook(lambda m, i, o: box.append(o.detach().clone()))
    try:
        with torch.no_grad():
            model(Preprocess(src.meta)(img).unsqueeze(0))
    finally:
        hook.remove()
    return box[-1][0], np.asarray(img, dtype=np.float32) / 255, name


def activations(source: Any, image: Any, layer: str, out: str | os.PathLike, *, weights: str | None = None,
                strongest: int = 16) -> Path:
    """The `strongest` channels of `layer` (by mean activation) for one image, as a PNG grid."""
    maps, photo, name = layer_maps(source, image, layer, weights=weights)
    what = Path(image).name if isinstance(image, (str, os.PathLike)) else "the image"
    return activation_grid(maps, photo, out, f"{name} on {what}: the {min(strongest, len(maps))} strongest "
                                              f"of {len(maps)} channels", strongest)
