"""Which activations a model offers as features, and extracting them (the lecture's "off-the-shelf feature").

Every module that runs in an eval-mode forward pass can be named (`layer1.1`, `features.28`, ...), and
some have the lecture's names:

- `pool` (every model): the input of the last linear layer, `forward_head(x, pre_logits=True)`, i.e. the
  globally pooled last feature map for ResNet-style models, and fc7 for AlexNet and VGG.
- `fc6`, `fc7`, `fc8` (AlexNet, ZFNet, VGG): the two 4096-wide layers after their ReLU (the activations
  Caffe's in-place ReLU left in the blobs that DeCAF and its successors used) and the logits. In eval
  mode dropout is the identity, so fc7 *is* `pool`.

Activations are read with forward hooks, which work on every architecture (no tracing). A 4-D map is
averaged over its positions, so a convolutional layer gives one value per channel; a module called
more than once per pass (ResNet's shared ReLU) gives its last call's output.
"""
from __future__ import annotations

import difflib
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..errors import CnnzooError

PRE_LOGITS = "pool"


class Layer(NamedTuple):
    name: str  # what `--layer` accepts
    target: str  # a module name, or PRE_LOGITS
    shape: tuple[int, ...]  # the activation's shape for one image, before spatial averaging
    note: str


def aliases(model: nn.Module) -> dict[str, tuple[str, str]]:
    """The lecture's layer names for this model: alias -> (module name or PRE_LOGITS, what it is)."""
    out = {PRE_LOGITS: (PRE_LOGITS, "the input of the last linear layer (pre-logits)")}
    head = getattr(model, "classifier", None)
    if isinstance(head, nn.Sequential):
        hidden = [i for i, m in enumerate(head[:-1]) if isinstance(m, nn.Linear)]
        if len(hidden) == 2:  # AlexNet, ZFNet, VGG: fc6, fc7 (4096 each), then fc8
            relu6 = next(i for i in range(hidden[0], len(head)) if isinstance(head[i], nn.ReLU))
            out["fc6"] = (f"classifier.{relu6}", f"fc6 after its ReLU (classifier.{relu6})")
            out["fc7"] = (PRE_LOGITS, "fc7 after its ReLU: the input of fc8 (= pool)")
            if isinstance(head[-1], nn.Linear):
                out["fc8"] = (f"classifier.{len(head) - 1}", "fc8: the class scores (logits)")
    return out


def resolve_layer(model: nn.Module, layer: str) -> str:
    """The module name (or PRE_LOGITS) that `layer`, an alias or a module name, refers to."""
    names = aliases(model)
    if layer in names:
        return names[layer][0]
    modules = dict(model.named_modules())
    if layer and layer in modules:
        return layer
    close = difflib.get_close_matches(layer, [*names, *modules], n=4, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    name = getattr(getattr(model, "card", None), "name", type(model).__name__)
    raise CnnzooError(f"{name} has no layer {layer!r}; {hint}`cnnzoo layers {name}` lists them")


def list_layers(model: nn.Module, input_size: int = 224) -> list[Layer]:
    """The aliases, then every module an eval-mode forward pass calls, in call order, with its output shape.

    Run on a copy of the model on the meta device, so it costs no memory and no arithmetic.
    """
    probe = _meta_copy(model)
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for name, module in probe.named_modules():
        if name:
            hooks.append(module.register_forward_hook(
                lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:]))
                if isinstance(o, torch.Tensor) else None))
    with torch.no_grad():
        probe(torch.empty(1, _in_chans(probe), input_size, input_size, device="meta"))
    for h in hooks:
        h.remove()
    order = [n for n, _ in probe.named_modules() if n in shapes]  # print(model)'s order
    pre = (probe.num_features,)  # the last linear layer's input
    layers = [Layer(alias, target, pre if target == PRE_LOGITS else shapes.get(target, ()), note)
              for alias, (target, note) in aliases(probe).items()]
    return layers + [Layer(n, n, shapes[n], "") for n in order]


def _meta_copy(model: nn.Module) -> nn.Module:
    card = getattr(model, "card", None)
    if card is not None:  # rebuilding on meta is cheaper than copying real weights
        from ..models import create_model

        with torch.device("meta"):
            return create_model(card.name, num_classes=model.num_classes, in_chans=_in_chans(model)).eval()
    import copy

    return copy.deepcopy(model).to("meta").eval()


def _in_chans(model: nn.Module) -> int:
    return next(m.in_channels for m in model.modules() if isinstance(m, nn.Conv2d))


def feature_size(shape: tuple[int, ...]) -> int:
    """The length of the feature vector a layer gives: channels for a map, else all values."""
    return shape[0] if len(shape) == 3 else int(np.prod(shape)) if shape else 0


def _vector(t: torch.Tensor) -> torch.Tensor:
    return t.float().mean(dim=(2, 3)) if t.ndim == 4 else t.float().flatten(1)


class Extractor:
    """`Extractor(model, layer)(x)` -> one feature vector per image, from the layer's activations."""

    def __init__(self, model: nn.Module, layer: str) -> None:
        self.model, self.target = model, resolve_layer(model, layer)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        if self.target == PRE_LOGITS:
            return _vector(m.forward_head(m.forward_features(x), pre_logits=True))
        box: list[torch.Tensor] = []

        def keep(module, args, output):
            if not isinstance(output, torch.Tensor):
                raise CnnzooError(f"layer {self.target} outputs a {type(output).__name__}, not a tensor; pick another")
            box.append(_vector(output))  # a new tensor: later in-place ops cannot change it

        hook = m.get_submodule(self.target).register_forward_hook(keep)
        try:
            m(x)
        finally:
            hook.remove()
        if not box:
            raise CnnzooError(f"layer {self.target} does not run in an eval-mode forward pass; pick another")
        return box[-1]


def extract(model: nn.Module, loader: DataLoader, layer: str, *, device: torch.device | str = "cpu",
            precision: str = "fp32") -> tuple[np.ndarray, np.ndarray]:
    """(features N x D float32, labels N int64) of every readable image the loader yields, in eval mode."""
    from ..train.evaluation import autocast

    device = torch.device(device)
    model.eval()
    ext = Extractor(model, layer)
    feats, labels = [], []
    for x, y, _ in loader:
        if not len(y):
            continue
        with autocast(device, precision):
            feats.append(ext(x.to(device)).float().cpu())
        labels.append(y)
    if not feats:
        raise CnnzooError("no image could be read to extract features from")
    return torch.cat(feats).numpy(), torch.cat(labels).numpy().astype(np.int64)
