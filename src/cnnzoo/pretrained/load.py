"""Published weights by name, read and made to mean what they meant where they were published.

`read_published("resnet50", "imagenet:v1")` fetches the file (see `fetch`), reads it safely (`weights.read_weights`),
converts pytorchcv's key layout to cnnzoo's, and records what the weights need to be used right: ImageNet's class
names, the preprocessing they were evaluated with (resize, crop, mean, std) and the published accuracy.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import CnnzooError
from ..weights import Log, Weights, read_weights
from .fetch import Check, cache_dir, fetch, log_to_stderr, verified
from .tables import Published, resolve


def read_published(model: str, spec: str = "imagenet", *, cache: str | os.PathLike | None = None,
                   log: Log | None = None) -> Weights:
    p = resolve(model, spec)
    path = fetch(p.url, p.file, Check(sha256=p.sha256, sha1=p.sha1), cache=cache, log=log)
    weights = read_weights(path, model=model, log=log)
    weights.info.update(info_of(p))
    return weights


def cached(model: str, spec: str = "imagenet") -> Path | None:
    """The verified cached file of `model`'s published weights, if it is already on this machine (no download)."""
    try:
        p = resolve(model, spec)
    except CnnzooError:  # no published weights, or no such tag: nothing can be cached
        return None
    path = cache_dir() / p.file
    return path if path.is_file() and verified(path, Check(sha256=p.sha256, sha1=p.sha1)) else None


def info_of(p: Published) -> dict:
    """What a published set says about its use: classes, preprocessing, and where it came from and how good it is."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return {"classes": list(_IMAGENET_CATEGORIES), "input_size": p.crop, "crop_pct": p.crop_pct,
            "mean": list(p.mean), "std": list(p.std), "interpolation": p.interpolation,
            "published": {"spec": p.spec, "source": p.source, "tag": p.tag, "top1": p.top1, "top5": p.top5,
                          "url": p.url}}


def create_model(name: str, num_classes: int = 1000, in_chans: int = 3, pretrained: object = None, *,
                 log: Log | None = None, **kwargs):
    """`cnnzoo.create_model`: a registered model, with weights when `pretrained` is given.

    `pretrained=True` or `"imagenet"`: the model's default published ImageNet weights (torchvision's DEFAULT, or
    pytorchcv's for the models torchvision lacks); `"imagenet:TAG"` another published set (`cnnzoo weights list`);
    a path or URL: any file `cnnzoo.weights.read_weights` takes, a pytorchcv `.pth` included. A head of another size is
    re-initialised and a first convolution adapted to `in_chans`, and both are reported (to `log`, default stderr).
    What the weights mean (classes, preprocessing, published accuracy) is kept in `model.pretrained_cfg`.

    When the weights fill every tensor of the model (the usual case: the published classes and channels), the model
    is built on the meta device and takes the file's tensors as they are: initialising 25M parameters randomly, only
    to overwrite them, costs as much as reading the file (benchmarks/load_weights.py).
    """
    from ..models import create_model as build
    from ..weights import load_pretrained, read_weights

    if pretrained is None or pretrained is False:
        return build(name, num_classes=num_classes, in_chans=in_chans, **kwargs)
    source = "imagenet" if pretrained is True else pretrained
    weights = read_weights(source, model=name, log=log)
    model = _take_whole(build, name, num_classes, in_chans, kwargs, weights)
    if model is not None:
        (log or log_to_stderr)(f"loaded {len(weights.state_dict)} tensors from {weights.path} into {name}")
    else:
        model = build(name, num_classes=num_classes, in_chans=in_chans, **kwargs)
        load_pretrained(model, weights, log=log)
    model.pretrained_cfg = {k: v for k, v in weights.info.items() if v is not None}
    return model


def _take_whole(build, name: str, num_classes: int, in_chans: int, kwargs: dict, weights: Weights):
    """The model built on the meta device with the weights' tensors assigned, or None when they do not fill it
    exactly (a new head, an adapted first layer, a non-persistent buffer): then it is built and loaded as usual."""
    import torch

    from ..weights import fit_state_dict

    with torch.device("meta"):
        model = build(name, num_classes=num_classes, in_chans=in_chans, **kwargs)
    sd, reinit, notes = fit_state_dict(model, weights.state_dict)  # a misfit raises its one-line error here
    if reinit or notes:
        return None
    own = model.state_dict()
    sd = {**sd, **{k: torch.zeros((), dtype=torch.long) for k in own if k not in sd and k.endswith(
        "num_batches_tracked")}}  # older files lack batch norm's step counter
    if set(sd) != set(own):
        return None
    model.load_state_dict(sd, strict=True, assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        return None
    return model
