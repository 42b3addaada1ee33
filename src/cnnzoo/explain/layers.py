"""Which layer Grad-CAM looks at: each family's last convolutional stage, as a table.

Grad-CAM (Selvaraju et al. 2017) weights a layer's channels by the mean gradient of the class score and sums
them: the deeper the layer, the more the map is about the class and the coarser it is. The paper's choice is
the last convolutional stage. Small inputs shrink that stage to a map of one or two positions (resnet18 on
32-pixel digits: layer4 is 1x1), which says nothing about *where*; so each family lists its stages from the
last backwards and the default is the last whose map is at least `MIN_SIDE` positions wide at the model's
input size: as fine as the last stage is at ImageNet's 224 pixels (7x7), so at the ImageNet sizes every
family's default is its last stage, and at 32-48 pixels a ResNet's is layer1 (layer2's cells would be as
large as the object: measured in tests/test_explain_evidence.py, 2x chance inside the box against 3-7x).
"""
from __future__ import annotations

from torch import nn

from ..errors import CnnzooError

MIN_SIDE = 7  # a map of 7x7 positions or more, as the last stage at 224; a 2x2 one only says which quadrant

# family -> its convolutional stages, the last first (module names, as `cnnzoo layers MODEL` prints them)
GRADCAM_LAYERS: dict[str, tuple[str, ...]] = {
    "AlexNet": ("features",),
    "ZFNet": ("features",),
    "VGG": ("features",),
    "GoogLeNet": ("inception5b", "inception4e", "inception3b"),
    "ResNet": ("layer4", "layer3", "layer2", "layer1"),
    "Pre-activation ResNet": ("layer4", "layer3", "layer2", "layer1"),
    "ResNeXt": ("layer4", "layer3", "layer2", "layer1"),
    "Wide ResNet": ("layer4", "layer3", "layer2", "layer1"),
    "SE-ResNet": ("layer4", "layer3", "layer2", "layer1"),
    "DenseNet": ("features", "features.transition3", "features.transition2"),
    "MobileNet V1": ("features", "features.11", "features.5", "features.3"),
    "MobileNet V2": ("features", "features.13", "features.6", "features.3"),
    "ShuffleNet": ("stage4", "stage3", "stage2"),
    "ShuffleNet V2": ("conv5", "stage3", "stage2"),
}


def output_shapes(model: nn.Module, input_size: int) -> dict[str, tuple[int, ...]]:
    """Every layer's output shape for one image (`cnnzoo layers`' table), computed on the meta device once
    per architecture, classes, channels and size."""
    from ..transfer.layers import _in_chans, list_layers

    card = getattr(model, "card", None)
    if card is None:
        return {layer.name: layer.shape for layer in list_layers(model, input_size)}
    return _registered_shapes(model, (card.name, model.num_classes, _in_chans(model), input_size))


def _registered_shapes(model: nn.Module, key: tuple) -> dict[str, tuple[int, ...]]:
    if key not in _SHAPES:
        from ..transfer.layers import list_layers

        _SHAPES[key] = {layer.name: layer.shape for layer in list_layers(model, key[3])}
    return _SHAPES[key]


_SHAPES: dict[tuple, dict[str, tuple[int, ...]]] = {}  # (name, classes, channels, size) -> shapes


def default_layer(model: nn.Module, input_size: int, shapes: dict[str, tuple[int, ...]] | None = None) -> str:
    """The family's last stage whose map is at least MIN_SIDE wide; the family's first stage when none is."""
    card = getattr(model, "card", None)
    stages = GRADCAM_LAYERS.get(getattr(card, "family", ""))
    if not stages:
        raise CnnzooError(f"{type(model).__name__} has no default Grad-CAM layer; pass --layer "
                          f"(`cnnzoo layers MODEL` lists them)")
    shapes = shapes if shapes is not None else output_shapes(model, input_size)
    for name in stages:
        shape = shapes.get(name, ())
        if len(shape) == 3 and min(shape[1:]) >= MIN_SIDE:
            return name
    return stages[0]


def check_spatial(name: str, shapes: dict[str, tuple[int, ...]], method: str) -> None:
    """A layer-based method needs a layer that runs and gives a map (C x H x W), else one line saying which do."""
    if name not in shapes:
        raise CnnzooError(f"no layer {name!r}; the layers with a map are: {', '.join(_spatial(shapes))}")
    if len(shapes[name]) != 3:
        raise CnnzooError(f"{method} needs a layer with a spatial map (C x H x W); {name} gives "
                          f"{'x'.join(map(str, shapes[name])) or 'no tensor'}. Layers with a map: "
                          f"{', '.join(_spatial(shapes)[-8:])}, ...")


def _spatial(shapes: dict[str, tuple[int, ...]]) -> list[str]:
    return [n for n, s in shapes.items() if len(s) == 3]
