"""GoogLeNet: parity with torchvision, the paper's Table 1 parameter count, train/eval outputs, auxiliary heads."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from parity import assert_parity, count_params
from torch import nn

import cnnzoo
from cnnzoo.models.googlenet import AUX_LOSS_WEIGHT, GoogLeNetOutputs

# Table 1 of Szegedy et al. (arXiv 1409.4842), typed in from the paper independently of the model code:
# (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj, printed params in K).
TABLE1_INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32, 159),
    "3b": (128, 128, 192, 32, 96, 64, 380),
    "4a": (192, 96, 208, 16, 48, 64, 364),
    "4b": (160, 112, 224, 24, 64, 64, 437),
    "4c": (128, 128, 256, 24, 64, 64, 463),
    "4d": (112, 144, 288, 32, 64, 64, 580),
    "4e": (256, 160, 320, 32, 128, 128, 840),
    "5a": (256, 160, 320, 32, 128, 128, 1072),
    "5b": (384, 192, 384, 48, 128, 128, 1388),
}
TABLE1_PRINTED_OTHERS = {"conv1": 2.7, "conv2": 112, "linear": 1000}  # 7x7/2 conv; 1x1 + 3x3 convs; linear


def table1_weights() -> dict[str, int]:
    """Weights (no biases, as the table counts) of every row of Table 1, from its channel columns."""
    rows = {"conv1": 7 * 7 * 3 * 64, "conv2": 1 * 1 * 64 * 64 + 3 * 3 * 64 * 192}
    cin = 192
    for name, (c1, c3r, c3, c5r, c5, proj, _) in TABLE1_INCEPTION.items():
        rows[name] = cin * c1 + cin * c3r + 9 * c3r * c3 + cin * c5r + 25 * c5r * c5 + cin * proj
        cin = c1 + c3 + c5 + proj  # the depth column of the next row's input
    rows["linear"] = cin * 1000
    return rows


def tv_googlenet(aux_logits: bool = True) -> nn.Module:
    return torchvision.models.googlenet(weights=None, aux_logits=aux_logits, init_weights=True)


@pytest.mark.parametrize("aux_logits", [True, False])
def test_parity_with_torchvision(aux_logits):
    ours = cnnzoo.create_model("googlenet", aux_logits=aux_logits)
    ref = tv_googlenet(aux_logits)
    assert not ref.transform_input  # ours expects normally-normalised input, as torchvision does without it
    if aux_logits:  # torchvision returns (logits, aux_logits2, aux_logits1); ours (logits, aux1, aux2)
        assert_parity(ours, ref, input_size=(3, 64, 64),
                      train_outputs=lambda o: [o.logits, o.aux1, o.aux2],
                      reference_train_outputs=lambda o: [o.logits, o.aux_logits1, o.aux_logits2])
    else:
        assert_parity(ours, ref, input_size=(3, 32, 32))
        assert not any(k.startswith("aux") for k in ours.state_dict())


def test_googlenet_param_count_is_torchvisions():
    # torchvision counts without the auxiliary heads (its pretrained weights have none).
    meta = torchvision.models.get_weight("GoogLeNet_Weights.IMAGENET1K_V1").meta
    assert meta["num_params"] == 6_624_904
    with torch.device("meta"):
        assert count_params(cnnzoo.create_model("googlenet", aux_logits=False)) == 6_624_904
        assert count_params(cnnzoo.create_model("googlenet")) == count_params(tv_googlenet()) == 13_004_888


def test_table1_parameter_column_to_its_precision():
    rows = table1_weights()
    # The table's K is 1024 weights: its stem 3x3 row (with its 1x1 reduce) and the linear row are exact in it.
    assert rows["conv2"] == 112 * 1024 and rows["linear"] == 1000 * 1024
    # conv1 is printed as 2.7K, but 7x7x3x64 = 9,408 = 9.2K (the lecture's stem table says 9K): a misprint.
    assert rows["conv1"] == 9408
    # The other rows agree to within 1K where the module is 3a, 3b or 4b; elsewhere the printed column drifts
    # from its own channel columns by up to 7.5% (4c: 497.5K computed, 463K printed; 5a: 1018K vs 1072K).
    for name, (*_, printed) in TABLE1_INCEPTION.items():
        computed = rows[name] / 1024
        assert abs(computed - printed) <= (1 if name in ("3a", "3b", "4b") else 0.075 * printed), name
    total = sum(rows.values())
    assert total == 6_990_272
    printed_total = sum(p[-1] for p in TABLE1_INCEPTION.values()) + sum(TABLE1_PRINTED_OTHERS.values())
    # "~6.8M" to the table's two digits, both from its channel columns and from its own params column.
    assert round(total / 1024 / 1000, 1) == 6.8 == round(printed_total / 1000, 1)


def test_googlenet_paper_param_count_is_table1s():
    with torch.device("meta"):
        model = cnnzoo.create_model("googlenet_paper", aux_logits=False)
        full = cnnzoo.create_model("googlenet_paper")
    weights = sum(p.numel() for p in model.parameters() if p.dim() > 1)
    biases = sum(p.numel() for p in model.parameters() if p.dim() == 1)
    assert weights == sum(table1_weights().values()) == 6_990_272
    # One bias per output channel of every conv (stem 64 + 64 + 192; per module 1x1 + 3x3red + 3x3 + 5x5red
    # + 5x5 + proj), plus 1000 for the linear layer.
    conv_biases = 64 + 64 + 192 + sum(sum(r[:6]) for r in TABLE1_INCEPTION.values())
    assert biases == conv_biases + 1000 == 8_280
    # Each aux head: 1x1 conv 128 (+bias), FC 2048 -> 1024, linear 1024 -> 1000.
    aux = sum(cin * 128 + 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000 for cin in (512, 528))
    assert count_params(full) - count_params(model) == aux


def test_variants_differ_where_the_card_says():
    tv, paper = cnnzoo.create_model("googlenet"), cnnzoo.create_model("googlenet_paper")
    assert tv.inception3a.branch3[1].conv.kernel_size == (3, 3)
    assert paper.inception3a.branch3[1].conv.kernel_size == (5, 5)
    assert tv.maxpool4.kernel_size == 2 and paper.maxpool4.kernel_size == 3
    assert tv.dropout.p == 0.2 and paper.dropout.p == 0.4 and paper.aux1.dropout.p == tv.aux1.dropout.p == 0.7
    assert not any(isinstance(m, nn.BatchNorm2d) for m in paper.modules())
    assert all(m.bias is not None for m in paper.modules() if isinstance(m, nn.Conv2d))
    lrn = [m for m in paper.modules() if isinstance(m, nn.LocalResponseNorm)]
    assert [(m.size, m.alpha, m.beta, m.k) for m in lrn] == [(5, 1e-4, 0.75, 1.0)] * 2
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in tv.modules())


def test_paper_aux_head_pools_5x5_stride_3_at_224():
    aux = cnnzoo.create_model("googlenet_paper").aux1.eval()
    x = torch.randn(1, 512, 14, 14)  # inception 4a's map at 224
    pooled = F.avg_pool2d(x, 5, stride=3)
    expected = aux.fc2(F.relu(aux.fc1(torch.flatten(aux.conv(pooled), 1))))
    torch.testing.assert_close(aux(x), expected)
    # torchvision's adaptive 4x4 pooling is a different function at 14x14 (hence its card's deviation).
    assert not torch.allclose(pooled, F.adaptive_avg_pool2d(x, 4))


@pytest.mark.parametrize("name", ["googlenet", "googlenet_paper"])
def test_train_and_eval_outputs(name):
    model = cnnzoo.create_model(name, num_classes=10).train()
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert isinstance(out, GoogLeNetOutputs) and out._fields == ("logits", "aux1", "aux2")
    assert all(o.shape == (2, 10) for o in out)
    assert model.aux1.conv.conv.in_channels == 512 and model.aux2.conv.conv.in_channels == 528  # 4a, 4d
    with torch.no_grad():  # aux1 is the head on inception 4a: silence it and only out.aux1 goes to zero
        model.aux1.fc2.weight.zero_(), model.aux1.fc2.bias.zero_()
    out = model(x)
    assert not out.aux1.any() and out.aux2.any()
    loss = F.cross_entropy(out.logits, torch.tensor([1, 2]))
    loss = loss + AUX_LOSS_WEIGHT * sum(F.cross_entropy(a, torch.tensor([1, 2])) for a in out[1:])
    loss.backward()
    assert model.conv1.conv.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert isinstance(model(x), torch.Tensor) and model(x).shape == (2, 10)
    assert model.forward_features(x).shape == (2, 1024, 1, 1)
    headless = cnnzoo.create_model(name, num_classes=10, aux_logits=False).train()
    assert headless.aux1 is None and isinstance(headless(x), torch.Tensor)


@pytest.mark.parametrize("name", ["googlenet", "googlenet_paper"])
def test_reset_classifier_resets_aux_heads(name):
    model = cnnzoo.create_model(name).train()
    x = torch.randn(2, 3, 32, 32)
    old = (model.fc, model.aux1.fc2, model.aux2.fc2)
    model.reset_classifier(5)
    assert all(new is not o for new, o in zip((model.fc, model.aux1.fc2, model.aux2.fc2), old))
    assert [tuple(o.shape) for o in model(x)] == [(2, 5)] * 3
    model.reset_classifier(0)
    assert [tuple(o.shape) for o in model(x)] == [(2, 1024)] * 3


@pytest.mark.parametrize("name", ["googlenet", "googlenet_paper"])
def test_min_input_size_is_exact_in_both_modes(name):
    side = cnnzoo.get_card(name).min_input_size
    with torch.device("meta"):
        model = cnnzoo.create_model(name)
    for mode in (model.eval, model.train):
        mode()
        model(torch.empty(2, 3, side, side, device="meta"))
        with pytest.raises(RuntimeError, match="too small"):
            model(torch.empty(2, 3, side - 1, side - 1, device="meta"))


@pytest.mark.parametrize("name", ["googlenet", "googlenet_paper"])
def test_export_in_eval_mode(name):
    model = cnnzoo.create_model(name, num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), rtol=1e-4, atol=1e-5)


def test_card():
    card = cnnzoo.get_card("googlenet")
    assert card.torchvision == "googlenet" and cnnzoo.get_card("googlenet_paper").torchvision is None
    assert "ILSVRC 2014 winner, top-5 error 6.7%" in card.lecture and "124K params" in card.lecture and "481" in card.lecture  # E7: the slide says 418
