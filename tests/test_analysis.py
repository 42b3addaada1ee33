"""The profiler against the lecture's tables (golden rows), and its promises: exact sums, no side effects, meta only."""
from __future__ import annotations

import pytest
import torch
import torchvision

import cnnzoo
from cnnzoo.analysis import Totals, profile
from cnnzoo.errors import CnnzooError

LECTURE = ("conv", "pool", "flatten", "fc")


def rows_by_name(p):
    return {r.name: r for r in p.rows}


# The lecture's AlexNet table at 227 (torchvision's variant, 64 filters in conv1), each row computed by hand:
# memory = C*H*W*4/1024, params = Cout*Cin*K*K + Cout, flops = Cout*H'*W' * Cin*K*K (pools: C*H'*W' * K*K).
ALEXNET_227 = [
    # name         type   in             out           k   s  p  memory KB  params  flops  lecture (KB, K, M)
    ("features.0", "conv", (3, 227, 227), (64, 56, 56), 11, 4, 2, 784, 23_296, 72_855_552, (784, 23, 73)),
    ("features.2", "pool", (64, 56, 56), (64, 27, 27), 3, 2, 0, 182.25, 0, 419_904, (182, 0, 0)),
    ("features.3", "conv", (64, 27, 27), (192, 27, 27), 5, 1, 2, 546.75, 307_392, 223_948_800, (547, 307, 224)),
    ("features.5", "pool", (192, 27, 27), (192, 13, 13), 3, 2, 0, 126.75, 0, 292_032, (127, 0, 0)),
    ("features.6", "conv", (192, 13, 13), (384, 13, 13), 3, 1, 1, 253.5, 663_936, 112_140_288, (254, 664, 112)),
    ("features.8", "conv", (384, 13, 13), (256, 13, 13), 3, 1, 1, 169, 884_992, 149_520_384, (169, 885, None)),
    ("features.10", "conv", (256, 13, 13), (256, 13, 13), 3, 1, 1, 169, 590_080, 99_680_256, (169, 590, 100)),
    ("features.12", "pool", (256, 13, 13), (256, 6, 6), 3, 2, 0, 36, 0, 82_944, (36, 0, 0)),
    ("flatten", "flatten", (256, 6, 6), (9216,), None, None, None, 36, 0, 0, (36, 0, 0)),
    ("classifier.1", "fc", (9216,), (4096,), None, None, None, 16, 37_752_832, 37_748_736, (16, None, 38)),
    ("classifier.4", "fc", (4096,), (4096,), None, None, None, 16, 16_781_312, 16_777_216, (16, None, 17)),
    ("classifier.6", "fc", (4096,), (1000,), None, None, None, 3.90625, 4_097_000, 4_096_000, (4, None, 4)),
]


@pytest.fixture(scope="module")
def alexnet():
    return profile("alexnet", 227)


@pytest.mark.parametrize("row", ALEXNET_227, ids=[r[0] for r in ALEXNET_227])
def test_alexnet_table_at_227_row_by_row(alexnet, row):
    name, kind, inp, out, k, s, pad, mem, params, flops, lecture = row
    r = rows_by_name(alexnet)[name]
    assert (r.type, r.input, r.output) == (kind, inp, out)
    if k is not None:
        assert (r.kernel, r.stride, r.pad) == ((k, k), (s, s), (pad, pad))
    assert (r.memory_kb, r.params, r.flops) == (mem, params, flops)
    # The lecture's rounded columns, where the slide is right (None: an erratum, see test_analysis_errata.py).
    lec_kb, lec_k, lec_m = lecture
    assert round(r.memory_kb) == lec_kb or (name == "features.6" and lec_kb == 254)  # 253.5 rounds half up on the slide
    assert lec_k is None or round(r.params / 1000) == lec_k
    assert lec_m is None or round(r.flops / 1e6) == lec_m


def test_alexnet_lecture_view_lists_the_lecture_rows_in_order(alexnet):
    names = [r.name for r in alexnet.select(*LECTURE).rows if r.name != "avgpool"]
    assert names == [r[0] for r in ALEXNET_227]
    # torchvision's AlexNet adds an adaptive 6x6 average pool, an identity at 227: K=1, 9,216 ops, 36 KB.
    avg = rows_by_name(alexnet)["avgpool"]
    assert (avg.type, avg.kernel, avg.output, avg.flops, avg.memory_kb) == ("pool", (1, 1), (256, 6, 6), 9216, 36)


def test_alexnet_totals(alexnet):
    assert alexnet.total.params == 61_100_840  # "AlexNet total: 61M"
    assert alexnet.conv_fc_macs == 716_767_232  # "0.7 GFLOP"
    assert alexnet.total.flops == 716_767_232 + 419_904 + 292_032 + 82_944 + 9216
    assert alexnet.lecture_memory_kb == 1958.15625  # conv + fc outputs: "AlexNet total: 1.9 MB"


# GoogLeNet's stem at 224 (lecture slide "Aggressive Stem"): the paper's network (biases, LRN after pool1 and
# conv3, which the slide's table leaves out) and torchvision's (batch norm, no biases): same shapes and memory.
GOOGLENET_STEM = [  # out C, out H, memory KB, params (paper), params (torchvision), flops
    ("conv", 64, 112, 3136, 9_472, 9_408, 118_013_952),
    ("pool", 64, 56, 784, 0, 0, 1_806_336),
    ("conv", 64, 56, 784, 4_160, 4_096, 12_845_056),
    ("conv", 192, 56, 2352, 110_784, 110_592, 346_816_512),
    ("pool", 192, 28, 588, 0, 0, 1_354_752),
]
LECTURE_STEM = [(3136, 9, 118), (784, 0, 2), (784, 4, 13), (2352, 111, 347), (588, 0, 1)]  # KB, K params, MFLOP


@pytest.mark.parametrize("name,col", [("googlenet_paper", 4), ("googlenet", 5)])
def test_googlenet_stem(name, col):
    p = profile(name, 224)
    stem = [r for r in p.rows if r.type in ("conv", "pool")][:5]
    for r, gold, lec in zip(stem, GOOGLENET_STEM, LECTURE_STEM):
        assert (r.type, r.output[0], r.output[1], r.memory_kb, r.params, r.flops) == (*gold[:4], gold[col], gold[6])
        assert (round(r.memory_kb), round(r.params / 1000), round(r.flops / 1e6)) == lec
    kernels = [(r.kernel[0], r.stride[0]) for r in stem]
    assert kernels == [(7, 2), (3, 2), (1, 1), (3, 1), (3, 2)]
    t = Totals.of(stem)
    assert t.memory_kb == 7644 and round(t.memory_kb / 1024, 1) == 7.5  # "Memory: 7.5 MB"
    assert t.flops == 480_836_608  # the slide's "MFLOP: 418" is an erratum
    if name == "googlenet_paper":
        assert t.params == 124_416  # "Params: 124K"


def test_googlenet_global_average_pooling_head():
    rows = rows_by_name(profile("googlenet", 224))
    avg, fc = rows["avgpool"], rows["fc"]
    assert (avg.input, avg.output) == ((1024, 7, 7), (1024, 1, 1))
    assert (avg.kernel, avg.stride, avg.pad) == ((7, 7), (1, 1), (0, 0))
    assert (avg.memory_kb, avg.params, avg.flops) == (4, 0, 1024 * 49)  # "4, 0, 0": 0.05 MFLOP rounds to 0
    assert (fc.input, fc.output, fc.params, fc.flops) == ((1024,), (1000,), 1_025_000, 1_024_000)  # "1025, 1"


def test_vgg16_fc_head():
    rows = rows_by_name(profile("vgg16", 224))
    flat = rows["flatten"]
    assert (flat.input, flat.output, flat.memory_kb, flat.params, flat.flops) == ((512, 7, 7), (25088,), 98, 0, 0)
    for name, cin, cout, mem in [("classifier.0", 25088, 4096, 16), ("classifier.3", 4096, 4096, 16),
                                 ("classifier.6", 4096, 1000, 3.90625)]:
        r = rows[name]
        assert (r.type, r.input, r.output, r.memory_kb) == ("fc", (cin,), (cout,), mem)
        assert (r.params, r.flops) == (cin * cout + cout, cin * cout)
    assert rows["classifier.0"].params == 102_764_544 and round(rows["classifier.0"].flops / 1e6) == 103


@pytest.mark.parametrize("name,lecture,exact", [
    ("resnet18", 1.8, 1_814_073_344), ("resnet34", None, 3_663_761_408), ("resnet50_v1", None, 3_857_973_248),
    ("resnet101_v1", 7.6, 7_570_194_432), ("resnet152_v1", 11.3, 11_282_415_616)])
def test_resnet_gflop_column(name, lecture, exact):
    """The lecture's ResNet table (v1: stride 2 in the first 1x1 of a bottleneck). None: an erratum."""
    p = profile(name, 224)
    assert p.conv_fc_macs == exact
    assert lecture is None or round(exact / 1e9, 1) == lecture


def test_vgg_receptive_field_two_3x3_see_one_5x5():
    rows = profile("vgg16", 224).select("conv", "pool").rows
    assert [r.receptive_field[0] for r in rows[:5]] == [3, 5, 6, 10, 14]  # conv, conv, pool, conv, conv
    assert [r.jump[0] for r in rows[:5]] == [1, 1, 2, 2, 2]
    assert rows[-1].receptive_field == (212, 212) and rows[-1].jump == (32, 32)  # pool5


def test_alexnet_receptive_field(alexnet):
    rf = {r.name: r.receptive_field[0] for r in alexnet.rows}
    assert (rf["features.0"], rf["features.2"], rf["features.3"], rf["features.12"]) == (11, 19, 51, 195)


def test_unused_parameters_are_reported_apart():
    with torch.device("meta"):
        g = cnnzoo.create_model("googlenet")
    aux = sum(p.numel() for n, p in g.named_parameters() if n.startswith(("aux1.", "aux2.")))
    p = profile("googlenet")
    assert p.unused_modules == ("aux1", "aux2") and p.unused_params == aux == 6_379_984
    assert p.total.params == sum(q.numel() for q in g.parameters()) - aux == 6_624_904


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "seresnet50", "shufflenet_v2_x1_0", "mobilenet_v2"])
def test_rows_sum_exactly_to_totals(name):
    p = profile(name, 97)
    t = p.total
    assert t.params == sum(r.params for r in p.rows) and isinstance(t.params, int)
    assert t.flops == sum(r.flops for r in p.rows) and isinstance(t.flops, int)
    assert t.memory_bytes == sum(r.memory_bytes for r in p.rows)
    assert sum(v.flops for v in p.by_type().values()) == t.flops
    g = p.group(1)
    assert (g.total.params, g.total.flops, g.total.memory_bytes) == (t.params, t.flops, t.memory_bytes)


def test_functional_operations_are_rows():
    """Residual adds, concatenations, SE scaling, shuffles, F.adaptive_avg_pool2d and mean: all seen."""
    kinds = lambda p: {k: v.rows for k, v in p.by_type().items()}  # noqa: E731
    assert kinds(profile("resnet18"))["add"] == 8
    assert kinds(profile("resnet50"))["add"] == 16
    assert kinds(profile("seresnet50"))["mul"] == 16
    dn = profile("densenet121")
    assert kinds(dn)["concat"] == 58 + 4  # one per dense layer's input, one per block's output
    gap = rows_by_name(dn)["mean"]  # F.adaptive_avg_pool2d(x, 1) in forward_head dispatches a mean
    assert (gap.type, gap.input, gap.output) == ("pool", (1024, 7, 7), (1024, 1, 1))
    assert (gap.kernel, gap.flops) == ((7, 7), 1024 * 49)
    assert kinds(profile("shufflenet_v2_x1_0"))["shuffle"] == 16  # the ChannelShuffle layer
    # torchvision's ShuffleNetV2 shuffles with view/transpose/contiguous and pools with x.mean([2, 3]).
    tv = profile(torchvision.models.shufflenet_v2_x1_0(), 224)
    assert kinds(tv)["shuffle"] == 16
    mean = rows_by_name(tv)["mean"]
    assert (mean.type, mean.input, mean.output, mean.flops) == ("pool", (1024, 7, 7), (1024,), 1024 * 49)


def test_grouping_one_row_per_block():
    p = profile("resnet50")
    g = p.group(2)
    blocks = [r for r in g.rows if r.type == "module"]
    assert len(blocks) == 16 and {r.op for r in blocks} == {"Bottleneck"}
    first = rows_by_name(g)["layer1.0"]
    assert (first.input, first.output) == ((64, 56, 56), (256, 56, 56))
    assert first.params == sum(r.params for r in p.rows if r.module.startswith("layer1.0"))
    inception = [r for r in profile("googlenet").group(1).rows if r.op == "Inception"]
    assert len(inception) == 9 and inception[0].output == (256, 28, 28)


def test_batch_size_and_dtype_scale_memory_and_flops_not_params():
    one, eight = profile("resnet18", 64), profile("resnet18", 64, batch_size=8)
    assert eight.total.flops == 8 * one.total.flops and eight.total.memory_bytes == 8 * one.total.memory_bytes
    assert eight.total.params == one.total.params
    half = profile("resnet18", 64, dtype=torch.float16)
    assert 2 * half.total.memory_bytes == one.total.memory_bytes and half.total.flops == one.total.flops


def test_non_square_and_channels():
    p = profile("vgg11", (1, 97, 75))
    first = p.rows[0]
    assert first.input == (1, 97, 75) and first.output == (64, 97, 75) and first.params == 64 * 9 + 64


def test_profiling_a_model_leaves_it_untouched():
    model = torchvision.models.resnet18().train()
    before = {k: (v.data_ptr(), v.clone()) for k, v in model.state_dict().items()}
    hooks = [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()]
    glob = (len(torch.nn.modules.module._global_forward_hooks), len(torch.nn.modules.module._global_forward_pre_hooks))
    p = profile(model, 97)
    assert p.total.params == 11_689_512
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(after[k].data_ptr() == ptr and torch.equal(after[k], v) for k, (ptr, v) in before.items())
    assert [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()] == hooks
    assert (len(torch.nn.modules.module._global_forward_hooks),
            len(torch.nn.modules.module._global_forward_pre_hooks)) == glob
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_vgg16_at_4096_allocates_nothing():
    """Meta device: a 4096x4096 VGG-16 (its first activation alone is 4 GiB) costs no memory to profile."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        p = profile("vgg16", 4096)
    allocated = sum(max(e.cpu_memory_usage, 0) for e in prof.events() if e.name == "[memory]")
    allocated += sum(max(e.self_cpu_memory_usage, 0) for e in prof.events() if e.name != "[memory]")
    assert allocated < 2**20
    assert p.rows[0].memory_bytes == 64 * 4096 * 4096 * 4 and p.rows[0].output == (64, 4096, 4096)
    assert p.conv_fc_macs > 300 * profile("vgg16", 224).conv_fc_macs  # (4096/224)^2 = 334x for the convs


def test_too_small_input_is_a_user_error():
    with pytest.raises(CnnzooError, match="needs at least 63x63"):
        profile("alexnet", 62)
    with pytest.raises(CnnzooError, match="input size"):
        profile("alexnet", "3x2x")
    with pytest.raises(CnnzooError, match="batch size"):
        profile("alexnet", 227, batch_size=0)


def test_compiled_module_is_analysed_through():
    model = torchvision.models.alexnet()
    compiled = torch.compile(model)
    assert profile(compiled, 227).conv_fc_macs == 716_767_232


def test_head_is_the_googlenet_stem_table():
    stem = profile("googlenet_paper", 224).select("conv", "pool").head(5)
    t = stem.total
    assert (t.rows, t.memory_kb, t.params, t.flops) == (5, 7644, 124_416, 480_836_608)
    text = stem.table()
    assert "total: 7,644 KB memory, 124,416 params, 480.8 M MAC (the sum of the 5 rows above)" in text
    assert "not shown (not in the total): conv 54 rows" in text
