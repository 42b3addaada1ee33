"""What inference needs to know about a trained model, and where a deployable model comes from.

A deployable source is a run folder, a checkpoint (`.pt`, read with `weights_only=True` by the trainer's
`load_checkpoint`), or an ONNX file written by `cnnzoo export`, which carries the same description in
its metadata (key `cnnzoo`), so an exported file is self-sufficient: classes, input size, normalisation.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import CnnzooError

META_KEY = "cnnzoo"  # ONNX metadata_props key / torch.export extra file holding ModelMeta as JSON


@dataclasses.dataclass
class ModelMeta:
    """A trained model's interface: its classes and the preprocessing it was trained with."""

    model: str  # registered architecture name
    classes: list[str]
    in_chans: int
    input_size: int
    mean: list[float]
    std: list[float]
    crop_pct: float = 0.875  # eval: resize the short side to input_size / crop_pct, crop the centre
    data: str | None = None  # the data set it was trained on (a `load_data` spec), for real test images
    split: dict[str, float] = dataclasses.field(default_factory=dict)  # val, test, split_seed of that data
    epoch: int | None = None
    best_top1: float | None = None
    checkpoint: str | None = None
    hflip: bool | None = None  # trained on mirror images too (None: not recorded); test-time flips need it
    members: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # an ensemble's: model, checkpoint

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ModelMeta:
        raw = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> ModelMeta:
        """From the `info` dict of `cnnzoo.train.load_checkpoint`."""
        cfg = info.get("config") or {}
        classes = info.get("classes") or [str(i) for i in range(int(info["num_classes"]))]
        return cls(model=info["model"], classes=[str(c) for c in classes], in_chans=int(info["in_chans"]),
                   input_size=int(info["input_size"]), mean=[float(v) for v in info["mean"]],
                   std=[float(v) for v in info["std"]], crop_pct=float(info.get("crop_pct") or 0.875),
                   data=cfg.get("data"),
                   split={k: cfg[k] for k in ("val", "test", "split_seed") if k in cfg},
                   epoch=info.get("epoch"), best_top1=info.get("best_top1"), checkpoint=info.get("path"),
                   hflip=cfg.get("hflip"))

    @classmethod
    def untrained(cls, name: str, num_classes: int = 1000, in_chans: int = 3, input_size: int | None = None) -> ModelMeta:
        """For a registered model with random weights (benchmarks, tests): ImageNet normalisation."""
        from ..data import IMAGENET_MEAN, IMAGENET_STD
        from ..models import get_card

        mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
        if in_chans != 3:
            mean, std = [sum(mean) / 3] * in_chans, [sum(std) / 3] * in_chans
        return cls(model=name, classes=[f"class{i}" for i in range(num_classes)], in_chans=in_chans,
                   input_size=input_size or get_card(name).input_size, mean=mean, std=std)

    def card(self) -> dict[str, Any]:
        """The architecture's card (paper, year, ...) as a dict; empty for an unregistered name."""
        from ..models import get_card

        try:
            return {k: v for k, v in dataclasses.asdict(get_card(self.model)).items()
                    if k in ("name", "family", "paper", "authors", "year", "venue", "url", "lecture", "deviations")}
        except KeyError:
            return {}


@dataclasses.dataclass
class Source:
    """A loaded deployable model: a PyTorch module (eval mode, CPU) or an ONNX file, and its description."""

    kind: str  # "torch" or "onnx"
    meta: ModelMeta
    path: str
    module: torch.nn.Module | None = None


def is_onnx(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(".onnx")


def read_onnx_meta(path: str | os.PathLike) -> ModelMeta:
    """The ModelMeta that `cnnzoo export` stored in an ONNX file's metadata."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise CnnzooError(f"{str(path)!r} does not exist; pass a run folder, a .pt checkpoint or a .onnx file")
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # protobuf raises its own DecodeError, onnx a few others
        raise CnnzooError(f"{p} is not a readable ONNX file ({type(exc).__name__}: {str(exc)[:120]})") from None
    props = {prop.key: prop.value for prop in proto.metadata_props}
    if META_KEY not in props:
        raise CnnzooError(f"{p} has no '{META_KEY}' metadata (classes, input size, normalisation); "
                          "export it with `cnnzoo export RUN --format onnx`")
    return ModelMeta.from_json(props[META_KEY])


def load_source(source: str | os.PathLike, weights: str | os.PathLike | None = None) -> Source:
    """A run folder, a checkpoint, a `.onnx` file written by `cnnzoo export`, or a registered model name
    with `weights` (`imagenet[:TAG]`, a torchvision or pytorchcv `.pth`, a safetensors file, a URL: see
    `pretrained_source`)."""
    from ..models import list_models

    if weights is not None or str(source) in list_models():
        if weights is None:
            raise CnnzooError(f"{source} is an architecture, not a trained model; add --weights imagenet|FILE|URL, "
                              f"or pass a run folder")
        return pretrained_source(str(source), weights)
    if is_onnx(source):
        return Source("onnx", read_onnx_meta(source), str(source))
    from ..train.checkpoint import load_checkpoint

    model, info = load_checkpoint(source)
    return Source("torch", ModelMeta.from_info(info), info["path"], model.eval())


def pretrained_source(name: str, weights: str | os.PathLike) -> Source:
    """A registered architecture with published or converted weights, deployable without training.

    The class count and input channels are read off the file; 1000 classes are ImageNet's, named as
    torchvision names them. The input is the card's size with ImageNet normalisation (torchvision's
    eval preset), unless the file records its own.
    """
    from ..data import IMAGENET_MEAN, IMAGENET_STD
    from ..models import create_model, get_card
    from ..weights import file_classes, first_conv, load_pretrained, normalisation_of, read_weights

    card = get_card(name)  # an unknown name fails here, with suggestions
    w = read_weights(weights, model=name)
    with torch.device("meta"):
        probe = create_model(name)
    classes = w.info.get("classes") or _class_names(file_classes(probe, w.state_dict))
    conv = w.state_dict.get(f"{first_conv(probe)}.weight")
    in_chans = int(conv.shape[1]) if conv is not None and conv.ndim == 4 else 3
    model = create_model(name, num_classes=len(classes), in_chans=in_chans)
    load_pretrained(model, w, log=lambda line: None)  # every tensor fits, or a one-line error names the misfit
    mean, std = normalisation_of(w, in_chans) or (list(IMAGENET_MEAN), list(IMAGENET_STD))
    if len(mean) != in_chans:
        raise CnnzooError(f"{w.path} takes {in_chans}-channel input and records no normalisation for it; "
                          f"train or convert it with cnnzoo so that it does")
    meta = ModelMeta(model=name, classes=list(classes), in_chans=in_chans,
                     input_size=int(w.info.get("input_size") or card.input_size), mean=mean, std=std,
                     crop_pct=float(w.info.get("crop_pct") or 0.875), checkpoint=str(w.path))
    return Source("torch", meta, str(w.path), model.eval())


def _class_names(n: int) -> list[str]:
    if n == 1000:
        from torchvision.models._meta import _IMAGENET_CATEGORIES

        return list(_IMAGENET_CATEGORIES)
    if n == 0:
        raise CnnzooError("these weights have no classifier (features only); they cannot predict classes")
    return [f"class{i}" for i in range(n)]
