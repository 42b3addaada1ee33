"""`explain(source, image)`: which pixels made the model say what it said, in the image file's own pixels.

The attribution maths is captum's (Kokhlikyan et al. 2020, PyTorch's own interpretability library): it works
on any `nn.Module` through hooks and autograd, and installs as pure Python on top of torch. pytorch-grad-cam
was the alternative; it pulls in opencv (a large native wheel) and covers only the CAM family, while captum
also has occlusion, saliency and integrated gradients. Captum has no Grad-CAM++, so neither has cnnzoo.

Methods (each gives a map over the model's input crop, then mapped back to the file):
- `gradcam` (Selvaraju et al. 2017): ReLU(sum_k alpha_k A^k), alpha_k = mean over positions of d y_c / d A^k,
  at a layer A (the family's last convolutional stage, `layers.GRADCAM_LAYERS`), upsampled bilinearly.
- `occlusion` (Zeiler & Fergus 2014, Fig. 7): a grey square slid over the image with stride patch/2; a pixel's
  heat is the mean drop of the class score over the patches covering it (score rises count as 0). The
  perturbed images are evaluated `batch` at a time.
- `saliency` (Simonyan et al. 2014): max over channels of |d y_c / d x|.
- `integrated_gradients` (Sundararajan et al. 2017): sum over channels of |(x - x0) * mean over the path
  of d y_c / d x|, from a black image x0, 32 steps.

The map is clipped at 0 and divided by its maximum (a map of zeros stays zeros: nothing raised the score).
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..deploy.images import Preprocess, read_image
from ..deploy.meta import ModelMeta, Source, load_source
from ..errors import CnnzooError
from ..models.base import Logits
from .layers import check_spatial, default_layer, output_shapes

METHODS = ("gradcam", "occlusion", "saliency", "integrated_gradients")
ALIASES = {"grad-cam": "gradcam", "ig": "integrated_gradients", "integrated-gradients": "integrated_gradients"}
GREY = 0.5  # occlusion's patch, in pixel values 0..1 before normalisation


@dataclasses.dataclass
class Explanation:
    """A heat map over the image file (H x W, 0..1) for the class `target`, and what the model said."""

    heatmap: torch.Tensor
    target: int
    label: str
    probability: float  # the model's probability of `target`
    method: str
    layer: str | None
    image: Image.Image  # the file as the model's mode (RGB or L), for drawing
    predicted: str  # the top class
    predicted_probability: float

    def title(self) -> str:
        said = f"{self.label} ({100 * self.probability:.1f}%)"
        if self.predicted != self.label:
            said += f"; predicted {self.predicted} ({100 * self.predicted_probability:.1f}%)"
        return f"{self.method}{f' at {self.layer}' if self.layer else ''}: {said}"


def torch_source(source: Any, weights: str | os.PathLike | None = None) -> Source:
    """A loaded Source with a PyTorch module: attribution needs gradients or at least the module."""
    src = source if isinstance(source, Source) else load_source(source, weights)
    if src.module is None:
        raise CnnzooError(f"{src.path} is an exported {src.kind} file: attributions need the PyTorch model "
                          f"(gradients, layer outputs); explain the run folder or checkpoint it came from")
    return src


def method_name(method: str) -> str:
    m = ALIASES.get(method.lower(), method.lower())
    if m in ("gradcam++", "gradcampp", "grad-cam++"):
        raise CnnzooError("gradcam++ is not offered: captum, the attribution library cnnzoo uses, has no "
                          f"Grad-CAM++; the methods are {', '.join(METHODS)}")
    if m not in METHODS:
        raise CnnzooError(f"unknown method {method!r}; the methods are {', '.join(METHODS)}")
    return m


def load_image(image: str | os.PathLike | Image.Image, meta: ModelMeta) -> Image.Image:
    mode = "L" if meta.in_chans == 1 else "RGB"
    if isinstance(image, Image.Image):
        return image.convert(mode)
    if not os.path.isfile(image):
        raise CnnzooError(f"image {str(image)!r} does not exist")
    try:
        return read_image(image, mode)
    except CnnzooError as exc:
        raise CnnzooError(f"cannot read image {image}: {exc}") from None


def class_index(target: int | str | None, classes: list[str], logits: torch.Tensor) -> int:
    """None: the predicted class; an int: that index; a str: that class name (or an index written as text)."""
    if target is None:
        return int(logits.argmax())
    if isinstance(target, str) and target in classes:
        return classes.index(target)
    try:
        index = int(target)
    except ValueError:
        shown = ", ".join(classes[:10]) + (" ..." if len(classes) > 10 else "")
        raise CnnzooError(f"unknown class {target!r}; the classes are {shown} (or an index 0-{len(classes) - 1})")
    if not 0 <= index < len(classes):
        raise CnnzooError(f"class index {index} is out of range: the model has {len(classes)} classes")
    return index


def explain(source: Any, image: str | os.PathLike | Image.Image, method: str = "gradcam",
            target: int | str | None = None, layer: str | None = None, *, weights: str | None = None,
            patch: int | None = None, batch: int = 32) -> Explanation:
    """Explain one image: `source` is a run folder, a checkpoint, a model name with `weights`, or a loaded Source.

    `target` is the class to explain (default: the predicted one); `layer` Grad-CAM's layer (default: the
    family's, see `layers.default_layer`); `patch` occlusion's square side in input pixels (default 1/7 of the
    input) and `batch` how many occluded images one forward pass evaluates.
    """
    method = method_name(method)
    src = torch_source(source, weights)
    meta, model = src.meta, Logits(src.module.eval())
    img = load_image(image, meta)
    x = Preprocess(meta)(img).unsqueeze(0)
    with torch.no_grad():
        probs = model(x).float().softmax(1)[0]
    index = class_index(target, meta.classes, probs)
    used = layer_for(src.module, meta, method, layer)
    crop_map = attribute(model, x, index, method, used, meta, patch=patch, batch=batch)
    heat = to_file_pixels(crop_map, img.size, meta.input_size, meta.crop_pct)
    top = int(probs.argmax())
    return Explanation(heat, index, meta.classes[index], float(probs[index]), method, used, img,
                       meta.classes[top], float(probs[top]))


def layer_for(module: nn.Module, meta: ModelMeta, method: str, layer: str | None) -> str | None:
    """The module name Grad-CAM hooks (an alias such as fc6 resolved); None for the other methods."""
    if method != "gradcam":
        if layer is not None:
            raise CnnzooError(f"--layer applies to gradcam only; {method} attributes to the input pixels")
        return None
    shapes = output_shapes(module, meta.input_size)
    if layer is None:
        return default_layer(module, meta.input_size, shapes)
    from ..transfer.layers import PRE_LOGITS, resolve_layer

    name = resolve_layer(module, layer)  # an unknown name fails here, naming close ones
    if name == PRE_LOGITS:
        raise CnnzooError(f"gradcam needs a layer with a spatial map; {layer} is the pooled vector. "
                          f"Try {default_layer(module, meta.input_size, shapes)}")
    check_spatial(name, shapes, "gradcam")
    return name


def attribute(model: nn.Module, x: torch.Tensor, target: int, method: str, layer: str | None, meta: ModelMeta,
              *, patch: int | None = None, batch: int = 32) -> torch.Tensor:
    """The method's map over the input crop (input_size x input_size), >= 0, max 1 (or all 0)."""
    from captum import attr

    x = x.clone().requires_grad_(method != "occlusion")
    norm = lambda v: torch.tensor([(v - m) / s for m, s in zip(meta.mean, meta.std)]).view(1, -1, 1, 1)
    if method == "gradcam":
        cam = attr.LayerGradCam(model, model.model.get_submodule(layer))
        try:
            a = cam.attribute(x, target=target, relu_attributions=True)
        except RuntimeError as exc:  # an in-place op after the layer (a ReLU(inplace=True)) breaks the hook
            raise CnnzooError(f"gradcam cannot read layer {layer}: the next module changes its output in "
                              f"place ({str(exc).splitlines()[0][:100]}); pick the module after it") from None
        a = F.interpolate(a.detach().sum(1, keepdim=True), size=x.shape[-2:], mode="bilinear", align_corners=False)
    elif method == "occlusion":
        side = patch or max(2, round(meta.input_size / 7))
        stride = max(1, side // 2)
        c = x.shape[1]
        with torch.no_grad():
            a = attr.Occlusion(model).attribute(x, target=target, sliding_window_shapes=(c, side, side),
                                                strides=(c, stride, stride), baselines=norm(GREY).expand_as(x),
                                                perturbations_per_eval=batch)
        a = a.sum(1, keepdim=True)  # the same drop on every channel of a pixel
    elif method == "saliency":
        a = attr.Saliency(model).attribute(x, target=target, abs=True).amax(1, keepdim=True)
    else:
        ig = attr.IntegratedGradients(model)
        a = ig.attribute(x, baselines=norm(0.0).expand_as(x), target=target, n_steps=32,
                         internal_batch_size=batch).abs().sum(1, keepdim=True)
    return unit(a.detach()[0, 0])


def unit(a: torch.Tensor) -> torch.Tensor:
    """Clip at 0, scale to max 1 (zeros stay zeros)."""
    a = a.float().clamp_min(0)
    peak = float(a.max())
    return a / peak if peak > 0 and math.isfinite(peak) else torch.zeros_like(a)


def crop_box(width: int, height: int, input_size: int, crop_pct: float) -> tuple[int, int, int, int, int, int]:
    """(resized width, resized height, crop left, crop top, crop width, crop height) of the eval transform, as
    torchvision computes them: the short side resized to floor(input_size / crop_pct), the long side to
    int(that * long / short), then a centre crop of input_size at offsets int(round((side - input_size) / 2))."""
    short = int(math.floor(input_size / crop_pct))
    if width <= height:
        rw, rh = short, int(short * height / width)
    else:
        rw, rh = int(short * width / height), short
    left, top = int(round((rw - input_size) / 2.0)), int(round((rh - input_size) / 2.0))
    return rw, rh, left, top, input_size, input_size


def to_file_pixels(crop_map: torch.Tensor, size: tuple[int, int], input_size: int, crop_pct: float) -> torch.Tensor:
    """A map over the centre crop -> a map over the file (H x W): placed where the crop came from in the
    resized image (0 outside it), then resized to the file's size; scaled to max 1 again."""
    width, height = size
    rw, rh, left, top, cw, ch = crop_box(width, height, input_size, crop_pct)
    canvas = torch.zeros(rh, rw)
    # the crop may overhang the resized image (crop_pct > 1): keep the part that lies on it
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + ch, rh), min(left + cw, rw)
    canvas[y0:y1, x0:x1] = crop_map[y0 - top:y1 - top, x0 - left:x1 - left]
    heat = F.interpolate(canvas[None, None], size=(height, width), mode="bilinear", align_corners=False,
                         antialias=height < rh or width < rw)[0, 0]
    return unit(heat)
