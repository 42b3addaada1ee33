"""DenseNet: torchvision parity, parameter counts, memory-efficient checkpointing, and old weight-file keys."""
from __future__ import annotations

import re

import pytest
import torch
import torchvision
from torch import nn

from cnnzoo.models import create_model
from cnnzoo.models.densenet import remap_legacy_densenet_keys
from parity import assert_parity, count_params, randomize_batchnorm

# torchvision's DenseNet*_Weights.IMAGENET1K_V1.meta["num_params"]
NUM_PARAMS = {
    "densenet121": 7_978_856,
    "densenet161": 28_681_000,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
}


@pytest.mark.parametrize("name", sorted(NUM_PARAMS))
def test_parity_with_torchvision(name):
    # 32 pixels leave a 1x1 map after the last transition: every layer still runs.
    assert_parity(create_model(name), getattr(torchvision.models, name)(weights=None), input_size=(3, 32, 32))


@pytest.mark.parametrize("name", sorted(NUM_PARAMS))
def test_num_params(name):
    with torch.device("meta"):
        model = create_model(name)
    assert count_params(model) == NUM_PARAMS[name]
    weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
    assert weights.meta["num_params"] == NUM_PARAMS[name]


def test_growth_and_compression():
    """Block i emits c + n_i * k channels; each transition halves them (Table 1: 64 -> 256 -> 128 -> ...)."""
    model = create_model("densenet121")
    blocks = dict(model.features.named_children())
    assert blocks["transition1"].conv.in_channels == 64 + 6 * 32 == 256
    assert blocks["transition1"].conv.out_channels == 128
    assert blocks["transition2"].conv.in_channels == 128 + 12 * 32 == 512
    assert blocks["transition3"].conv.in_channels == 256 + 24 * 32 == 1024
    assert model.num_features == 512 + 16 * 32 == 1024
    layer = blocks["denseblock2"]["denselayer5"]
    assert (layer.conv1.in_channels, layer.conv1.out_channels, layer.conv2.out_channels) == (128 + 4 * 32, 128, 32)


def test_memory_efficient_is_exact():
    """Checkpointing changes what is stored, not what is computed: outputs, gradients and the batch-norm
    running statistics (which torchvision's version updates twice) are identical."""
    plain = create_model("densenet121")
    randomize_batchnorm(plain)
    lean = create_model("densenet121", memory_efficient=True)
    lean.load_state_dict(plain.state_dict())
    recomputed = []
    lean.features.denseblock1.denselayer1.relu1.register_forward_hook(lambda *_: recomputed.append(1))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    outs = []
    for model in (plain, lean):
        model.train()
        y = model(x)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outs.append(y)
    assert len(recomputed) == 2, "the bottleneck was not recomputed in the backward pass"
    assert torch.equal(outs[0], outs[1])
    grads = dict(plain.named_parameters())
    for name, p in lean.named_parameters():
        assert torch.equal(p.grad, grads[name].grad), name
    for (name, a), b in zip(plain.state_dict().items(), lean.state_dict().values()):
        assert torch.equal(a, b), name


def test_memory_efficient_eval_and_no_grad():
    model = create_model("densenet121", memory_efficient=True).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 1000)


def _old_style(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keys of torchvision's pre-0.4 DenseNet files ('norm.1' for 'norm1'), which lacked batch counters."""
    out = {}
    for key, value in state_dict.items():
        old = re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", key)
        if old != key and key.endswith("num_batches_tracked"):
            continue
        out[old] = value
    return out


def test_loads_old_torchvision_keys():
    reference = torchvision.models.densenet121(weights=None).eval()
    randomize_batchnorm(reference)
    old = _old_style(reference.state_dict())
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    assert "features.denseblock1.denselayer1.norm1.weight" not in old

    ours = create_model("densenet121").eval()
    ours.load_state_dict(old, strict=True)  # the pre-hook renames them
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ours(x), reference(x))

    # Also when the DenseNet sits inside another module (the keys then carry a prefix).
    wrapped = nn.Sequential(create_model("densenet121"))
    wrapped.load_state_dict({f"0.{k}": v for k, v in old.items()}, strict=True)
    assert torch.equal(wrapped[0].features.denseblock4.denselayer16.conv2.weight,
                       reference.features.denseblock4.denselayer16.conv2.weight)


def test_remap_legacy_densenet_keys():
    current = torchvision.models.densenet121(weights=None).state_dict()
    old = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v for k, v in current.items()}
    remapped = remap_legacy_densenet_keys(old)
    assert list(remapped) == list(current)
    assert list(remap_legacy_densenet_keys(current)) == list(current)  # current keys pass through
    assert "features.transition1.norm.weight" in remapped  # not a dense layer: untouched


def test_min_input_size():
    model = create_model("densenet121").train()
    card = model.card
    assert card.min_input_size == 29
    model(torch.randn(2, 3, 29, 29)).sum().backward()
    with pytest.raises(RuntimeError):
        model(torch.randn(2, 3, 28, 28))
