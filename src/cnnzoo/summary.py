"""A model at a glance: its card, size and layer structure, computed on the meta device (no weights allocated)."""
from __future__ import annotations

import torch
from torch import nn

from .models import create_model, get_card


def weight_layers(model: nn.Module) -> int:
    """Convolutions and linear layers: the lecture's "11 weight layers", "152 layers"."""
    return sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())


def meta_model(name: str, **kwargs) -> nn.Module:
    """The model with its parameters on the meta device: shapes and counts without the memory."""
    with torch.device("meta"):
        return create_model(name, **kwargs).eval()


def summarize(name: str, input_size: int | None = None) -> dict:
    """Weight layers, parameters, and the feature and output shapes at the card's input size (batch 1)."""
    card = get_card(name)
    size = input_size or card.input_size
    model = meta_model(name)
    x = torch.empty(1, 3, size, size, device="meta")
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model.forward_head(features)
    return {
        "name": name,
        "weight_layers": weight_layers(model),
        "params": sum(p.numel() for p in model.parameters()),
        "input": [3, size, size],
        "features": list(features.shape[1:]),
        "output": list(logits.shape[1:]),
    }


def format_summary(s: dict) -> str:
    c, h, w = s["features"]
    return (
        f"{s['weight_layers']} weight layers, {s['params']:,} parameters; "
        f"input {'x'.join(map(str, s['input']))} -> features {c}x{h}x{w} -> output {s['output'][0]} classes"
    )


def describe(name: str) -> str:
    """What `cnnzoo info` prints: the card, the summary line, and the module tree."""
    card = get_card(name)
    return "\n".join([str(card), "", format_summary(summarize(name)), "", repr(meta_model(name))])
