"""docs/lecture-errata.md, asserted: for each slip in the lecture, the number the arithmetic gives."""
from __future__ import annotations

import pytest
import torchvision

from cnnzoo.analysis import Totals, profile


@pytest.fixture(scope="module")
def alexnet():
    return {r.name: r for r in profile("alexnet", 227).rows}


@pytest.fixture(scope="module")
def vgg16():
    return profile("vgg16", 224)


def test_e1_alexnet_conv4_flop(alexnet):
    # Slide: 145 MFLOP. 256*13*13 outputs x 384*3*3 multiply-adds each.
    assert alexnet["features.8"].flops == 256 * 13 * 13 * 384 * 3 * 3 == 149_520_384
    assert round(alexnet["features.8"].flops / 1e6) == 150 != 145


def test_e2_alexnet_fc6_params(alexnet):
    # Slide: "= 37,725,832" in the text, 37,749 (K) in the table, which is the flop count 37,748,736.
    assert alexnet["classifier.1"].params == 9216 * 4096 + 4096 == 37_752_832
    assert round(alexnet["classifier.1"].params / 1000) == 37_753


def test_e3_alexnet_fc7_fc8_params_include_the_biases(alexnet):
    # Slide: 16,777 and 4,096 (K): the weights alone (= the flop counts); the biases add 4,096 and 1,000.
    assert alexnet["classifier.4"].params == 16_781_312 and round(16_781_312 / 1000) == 16_781
    assert alexnet["classifier.6"].params == 4_097_000 and round(4_097_000 / 1000) == 4_097


def test_e4_alexnet_total_memory_is_the_conv_fc_rows_only():
    p = profile("alexnet", 227)
    assert round(p.lecture_memory_kb / 1024, 1) == 1.9  # "AlexNet total: 1.9 MB" = conv + fc outputs
    table = Totals.of(r for r in p.rows if r.type in ("conv", "pool", "flatten", "fc") and r.name != "avgpool")
    assert table.memory_kb == 2339.15625 and round(table.memory_kb / 1024, 1) == 2.3  # the slide's rows summed


def test_e5_vgg16_total_memory(vgg16):
    # Slide: 48.6 MB (25x). Conv + fc outputs, as for AlexNet's 1.9 MB:
    alex = profile("alexnet", 227)
    assert vgg16.lecture_memory_kb == 52_955.90625
    assert round(vgg16.lecture_memory_kb / 1024, 1) == 51.7
    assert round(vgg16.lecture_memory_kb / alex.lecture_memory_kb, 1) == 27.0
    # The slide's figure is the same sum without one 3x3 256->256 conv at 56x56 (3,136 KB):
    conv3_3 = next(r for r in vgg16.rows if r.name == "features.14")
    assert conv3_3.memory_kb == 3136
    assert round((vgg16.lecture_memory_kb - conv3_3.memory_kb) / 1024, 1) == 48.7  # 48.65: the slide's 48.6


def test_e6_vgg16_total_flop(vgg16):
    # Slide: 13.6 GFLOP (19.4x), also on the ResNet slides. 15.47 G multiply-adds in the convs and fcs.
    alex = profile("alexnet", 227)
    assert vgg16.conv_fc_macs == 15_470_264_320
    assert round(vgg16.total.flops / 1e9, 1) == 15.5
    assert round(vgg16.total.flops / alex.total.flops, 1) == 21.6
    conv3_3 = next(r for r in vgg16.rows if r.name == "features.14")
    assert round((vgg16.conv_fc_macs - conv3_3.flops) / 1e9, 1) == 13.6  # the same conv3 layer dropped
    assert round(vgg16.total.params / alex.total.params, 1) == 2.3  # "138M (2.3x)": right


def googlenet_stem():
    return [r for r in profile("googlenet_paper", 224).rows if r.type in ("conv", "pool")][:5]


def test_e7_googlenet_stem_mflop():
    # Slide: "MFLOP: 418"; its own rows 118 + 2 + 13 + 347 + 1 add up to 481.
    assert Totals.of(googlenet_stem()).flops == 480_836_608


def test_e8_vgg16_stem_comparison(vgg16):
    # Slide: "VGG-16 memory 42.9 MB (5.7x), params 1.1M (8.9x), MFLOP 7485 (17.8x)" from 224 down to 28.
    stem = vgg16.select("conv", "pool").rows[:10]  # conv1_1 ... pool3
    assert stem[-1].output == (256, 28, 28)
    v, g = Totals.of(stem), Totals.of(googlenet_stem())
    assert (v.memory_kb, v.params, v.flops) == (52_528, 1_735_488, 9_340_764_160)
    assert (round(v.memory_kb / 1024, 1), round(v.memory_kb / g.memory_kb, 1)) == (51.3, 6.9)
    assert round(v.params / g.params, 1) == 13.9
    assert round(v.flops / g.flops, 1) == 19.4
    # The slide's figures are its conv rows without conv3_3 (and without pools):
    short = Totals.of(r for r in stem if r.type == "conv" and r.name != "features.14")
    assert (short.memory_kb, short.params, round(short.flops / 1e6)) == (43_904, 1_145_408, 7485)


def test_e9_googlenet_fc_memory():
    # Slide: fc 1024 -> 1000, memory 0 KB. 1000 outputs x 4 bytes / 1024:
    fc = next(r for r in profile("googlenet", 224).rows if r.name == "fc")
    assert fc.memory_kb == 3.90625 and round(fc.memory_kb) == 4


def test_e10_vgg16_fc_head_params(vgg16):
    # Slide: fc6 102,760 K params (the flop count), fc7 16,777, fc8 4,096: biases left out.
    rows = {r.name: r for r in vgg16.rows}
    fcs = ("classifier.0", "classifier.3", "classifier.6")
    assert [round(rows[n].params / 1000) for n in fcs] == [102_765, 16_781, 4_097]
    assert round(rows["classifier.0"].flops / 1000) == 102_760


@pytest.mark.parametrize("name,slide,right", [("resnet34", 3.6, 3.7), ("resnet50_v1", 3.8, 3.9)])
def test_e11_resnet_gflop_column(name, slide, right):
    gmac = profile(name, 224).conv_fc_macs / 1e9
    assert round(gmac, 1) == right != slide


def test_e12_alexnet_parameter_count_on_the_training_slide():
    # Slide: "500,000 neurons, 50,000,000 parameters". The lecture's own table says 61M.
    p = profile("alexnet", 227)
    assert p.total.params == 61_100_840
    assert sum(r.memory_bytes // 4 for r in p.rows if r.type in ("conv", "fc")) == 501_288  # the neurons: right
    paper = profile("alexnet_2012", 227)
    assert paper.total.params == 60_965_224  # the 2012 paper's two-tower network: "60 million"


@pytest.mark.parametrize("name,slide", [("resnet50", 7.13), ("resnet101", 6.44), ("resnet152", 5.94)])
def test_e13_resnet_top5_errors_are_truncated(name, slide):
    acc5 = torchvision.models.get_model_weights(name)["IMAGENET1K_V1"].meta["_metrics"]["ImageNet-1K"]["acc@5"]
    assert round(100 - acc5, 2) == round(slide + 0.01, 2)
