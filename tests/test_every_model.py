"""The checks every registered model must pass, whatever its family."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnzoo
from cnnzoo.models import ZooModel

MODELS = cnnzoo.list_models()


def small_side(name: str) -> int:
    return max(32, cnnzoo.get_card(name).min_input_size)


def test_registry_is_populated():
    # The lecture's core architectures, at least; an empty registry would make every test below vacuous.
    for name in ["alexnet", "zfnet", "vgg16", "googlenet", "resnet50"]:
        assert name in MODELS


@pytest.mark.parametrize("name", MODELS)
def test_card(name):
    card = cnnzoo.get_card(name)
    assert card.name == name
    assert card.paper and card.authors and card.url.startswith("http")
    assert 1989 <= card.year <= 2025
    assert card.min_input_size <= card.input_size
    assert card.min_input_reason
    assert name in str(card)


@pytest.mark.parametrize("name", MODELS)
def test_meta_shapes_at_default_size(name):
    card = cnnzoo.get_card(name)
    with torch.device("meta"):
        model = cnnzoo.create_model(name).eval()
    assert isinstance(model, ZooModel)
    x = torch.empty(2, 3, card.input_size, card.input_size, device="meta")
    features = model.forward_features(x)
    assert features.dim() == 4 and features.shape[0] == 2
    assert model.forward_head(features, pre_logits=True).shape == (2, model.num_features)
    assert model(x).shape == (2, 1000)
    assert isinstance(model.get_classifier(), nn.Linear)
    assert model.get_classifier().out_features == 1000


@pytest.mark.parametrize("name", MODELS)
def test_min_input_size_is_exact(name):
    card = cnnzoo.get_card(name)
    with torch.device("meta"):
        model = cnnzoo.create_model(name)
    for mode in (model.eval, model.train):
        mode()
        model(torch.empty(2, 3, card.min_input_size, card.min_input_size, device="meta"))
    if card.min_input_size > 32:
        side = card.min_input_size - 1
        with pytest.raises(RuntimeError):
            model.eval()(torch.empty(2, 3, side, side, device="meta"))


@pytest.mark.parametrize("name", MODELS)
def test_grayscale_seven_classes_forward_backward(name):
    side = small_side(name)
    model = cnnzoo.create_model(name, num_classes=7, in_chans=1).train()
    out = model(torch.randn(2, 1, side, side))
    logits = out if isinstance(out, torch.Tensor) else out[0]
    assert logits.shape == (2, 7)
    loss = sum(o.float().pow(2).mean() for o in ([out] if isinstance(out, torch.Tensor) else out))
    loss.backward()
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 1
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, side, side)).shape == (1, 7)


@pytest.mark.parametrize("name", MODELS)
def test_reset_classifier_and_pooled_features(name):
    side = small_side(name)
    with torch.device("meta"):
        model = cnnzoo.create_model(name).eval()
        x = torch.empty(1, 3, side, side)
        model.reset_classifier(5)
        assert model(x).shape == (1, 5) and model.num_classes == 5
        model.reset_classifier(0)
        assert model(x).shape == (1, model.num_features)
        headless = cnnzoo.create_model(name, num_classes=0).eval()
        assert headless(x).shape == (1, headless.num_features)


@pytest.mark.parametrize("name", MODELS)
def test_torch_export(name):
    side = small_side(name)
    model = cnnzoo.create_model(name, num_classes=10).eval()
    x = torch.randn(1, 3, side, side)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(program.module()(x), expected, rtol=1e-4, atol=1e-5)
