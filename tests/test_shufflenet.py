"""ShuffleNet V1 and V2: the channel shuffle, torchvision parity, parameter counts and mult-adds vs the papers."""
from __future__ import annotations

import math

import pytest
import torch
import torchvision
from parity import assert_parity, count_params
from torch.utils.flop_counter import FlopCounterMode

from cnnzoo.models import create_model, list_models
from cnnzoo.models.shufflenet import ChannelShuffle, ShuffleNetV1, channel_shuffle

V2 = ["shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"]


def mult_adds(name: str, size: int = 224) -> tuple[float, int]:
    """Mult-adds in millions at `size` pixels (convolutions and FC), counted on the meta device; and the FC's width."""
    with torch.device("meta"):
        model = create_model(name)
        x = torch.empty(1, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 2e6, model.num_features


# ---- channel shuffle ----------------------------------------------------------------------------------------


def test_channel_shuffle_interleaves_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    assert ChannelShuffle(2)(x).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert torch.equal(ChannelShuffle(1)(x), x)


def test_channel_shuffle_is_a_permutation_undone_by_its_transpose():
    x = torch.randn(2, 12, 3, 5)
    y = channel_shuffle(x, 3)
    assert torch.equal(channel_shuffle(y, 4), x)  # a (3, 4) transpose undone by a (4, 3) one
    assert torch.equal(y[:, 1], x[:, 4])  # channel 0 of group 1 comes second
    assert torch.equal(y[:, :, 2, 4], x[:, :, 2, 4][:, [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]])


def test_channel_shuffle_exports():
    x = torch.randn(1, 6, 4, 4)
    program = torch.export.export(ChannelShuffle(2), (x,))
    assert torch.equal(program.module()(x), channel_shuffle(x, 2))
    ops = {n.target.__name__ for n in program.graph.nodes if n.op == "call_function"}
    assert ops <= {"view.default", "transpose.int", "reshape.default", "clone.default", "_unsafe_view.default"}, ops


def test_channel_shuffle_exports_to_onnx(tmp_path):
    pytest.importorskip("onnxscript")
    torch.onnx.export(ChannelShuffle(2).eval(), (torch.randn(1, 6, 4, 4),), str(tmp_path / "shuffle.onnx"), dynamo=True)
    assert (tmp_path / "shuffle.onnx").stat().st_size > 0


# ---- ShuffleNet V2: torchvision's model, Table 5 of the V2 paper ----------------------------------------------


@pytest.mark.parametrize("name", V2)
def test_v2_matches_torchvision(name):
    assert_parity(create_model(name), getattr(torchvision.models, name)(weights=None), input_size=(3, 64, 64))


def test_v2_parameter_counts():
    # torchvision ShuffleNet_V2_*_Weights.IMAGENET1K_V1.meta["num_params"]; the paper's Table 5 rounds them
    # to 1.4M, 2.3M, 3.5M, 7.4M.
    published = [1_366_792, 2_278_604, 3_503_624, 7_393_996]
    assert [count_params(create_model(n)) for n in V2] == published


@pytest.mark.parametrize(
    "name, half, torchvision_gmacs, paper_mflops",
    [  # half: Stage 2's width / 2. torchvision weights meta "_ops"; the V2 paper's Table 5 (= the authors' README)
        ("shufflenet_v2_x0_5", 24, 0.040, 41),
        ("shufflenet_v2_x1_0", 58, 0.145, 146),
        ("shufflenet_v2_x1_5", 88, 0.296, 299),
        ("shufflenet_v2_x2_0", 122, 0.583, 591),
    ],
)
def test_v2_mult_adds(name, half, torchvision_gmacs, paper_mflops):
    ours, _ = mult_adds(name)
    assert round(ours / 1000, 3) == torchvision_gmacs
    # The authors' Stage 2 first unit: its left branch's 1x1 makes 24 channels instead of `half`, its right
    # branch's last 1x1 makes 2*half - 24 instead of `half`, both on the 28x28 map:
    # 784 * (24*24 + half*(2*half - 24) - 24*half - half*half) = 784 * (half - 24)^2 more mult-adds.
    authors = ours + 28 * 28 * (half - 24) ** 2 / 1e6
    assert math.ceil(authors) == paper_mflops, authors  # the paper rounds up (40.48 -> 41)


# ---- ShuffleNet V1: Table 1 of the V1 paper -------------------------------------------------------------------

V1_TABLE1 = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088), 8: (384, 768, 1536)}


def v1_params(g: int, scale: float, stem: int) -> int:
    """ShuffleNet V1's parameters from Table 1 and Figure 2, counted here independently of the model code."""
    bn = 2  # a batch norm's scale and shift per channel
    total = 3 * 3 * 3 * stem + bn * stem
    cin = stem
    for stage, (repeats, cout) in enumerate(zip((4, 8, 4), V1_TABLE1[g])):
        cout = int(cout * scale)
        mid = cout // 4
        for unit in range(repeats):
            out = cout - cin if unit == 0 else cout  # a stride-2 unit concatenates its input back on
            g1 = 1 if stage == 0 and unit == 0 else g  # no groups on the first 1x1 of Stage 2
            total += cin * mid // g1 + bn * mid  # 1x1 GConv
            total += 3 * 3 * mid + bn * mid  # 3x3 depthwise
            total += mid * out // g + bn * out  # 1x1 GConv
            cin = cout
    return total + cin * 1000 + 1000  # FC


V1_MODELS = {  # name: (g, scale, stem width)
    "shufflenet_v1_g1_x1_0": (1, 1.0, 24),
    "shufflenet_v1_g2_x1_0": (2, 1.0, 24),
    "shufflenet_v1_g3_x1_0": (3, 1.0, 24),
    "shufflenet_v1_g4_x1_0": (4, 1.0, 24),
    "shufflenet_v1_g8_x1_0": (8, 1.0, 24),
    "shufflenet_v1_g3_x0_5": (3, 0.5, 12),
    "shufflenet_v1_g3_x1_5": (3, 1.5, 24),
    "shufflenet_v1_g3_x2_0": (3, 2.0, 48),
    "shufflenet_v1_g8_x0_5": (8, 0.5, 16),
    "shufflenet_v1_g8_x1_5": (8, 1.5, 24),
    "shufflenet_v1_g8_x2_0": (8, 2.0, 48),
}


def test_v1_registered_names():
    assert list_models("shufflenet_v1_*") == sorted(V1_MODELS)


@pytest.mark.parametrize("name", V1_MODELS)
def test_v1_parameter_count_derived_from_table1(name):
    assert count_params(create_model(name)) == v1_params(*V1_MODELS[name])


def test_v1_parameter_counts_equal_pytorchcv():
    # osmr/imgclsmob pytorch/pytorchcv/models/shufflenet.py `_test()`: shufflenet_g{1,2,3,4,8}_w1, shufflenet_g3_wd2.
    published = {
        "shufflenet_v1_g1_x1_0": 1_531_936,
        "shufflenet_v1_g2_x1_0": 1_733_848,
        "shufflenet_v1_g3_x1_0": 1_865_728,
        "shufflenet_v1_g4_x1_0": 1_968_344,
        "shufflenet_v1_g8_x1_0": 2_434_768,
        "shufflenet_v1_g3_x0_5": 718_324,
    }
    assert {n: count_params(create_model(n)) for n in published} == published


def test_v1_parameter_counts_match_the_authors_readme():
    # megvii-model/ShuffleNet-Series ShuffleNetV1/README.md, in millions. Their FC has no bias, 1,000 fewer
    # parameters, which matters for g=3 at 2x: 5,449,776 (5.4M) against our 5,450,776.
    published = {"g3_x0_5": 0.7, "g3_x1_0": 1.9, "g3_x1_5": 3.4, "g3_x2_0": 5.4,
                 "g8_x0_5": 1.0, "g8_x1_0": 2.4, "g8_x1_5": 4.3, "g8_x2_0": 6.5}  # fmt: skip
    ours = {k: round((count_params(create_model(f"shufflenet_v1_{k}")) - 1000) / 1e6, 1) for k in published}
    assert ours == published


def test_v1_table1_complexity():
    # Table 1, "Complexity" at 1x: 143, 140, 137, 133, 137 MFLOPs for g = 1, 2, 3, 4, 8. These are the
    # convolutions' mult-adds rounded: the FC's (0.6M to 1.5M) are left out there, though Table 5 counts them.
    table1 = {1: 143, 2: 140, 3: 137, 4: 133, 8: 137}
    ours = {}
    for g in table1:
        total, width = mult_adds(f"shufflenet_v1_g{g}_x1_0")
        ours[g] = round(total - width * 1000 / 1e6)
    assert ours == table1


def test_v1_scaled_complexity():
    # V1 paper Table 5: 2x (g=3) 524 MFLOPs, 1.5x (g=3) 292; Table 2: 0.5x ~38. The authors' README for
    # g=8: 2x 522, 1.5x 290, 0.5x 40 (and 138 for 1x g=8, where Table 1 has 137 without the FC).
    published = {"g3_x2_0": 524, "g3_x1_5": 292, "g3_x0_5": 38, "g8_x2_0": 522, "g8_x1_5": 290, "g8_x0_5": 40,
                 "g8_x1_0": 138}  # fmt: skip
    ours = {k: round(mult_adds(f"shufflenet_v1_{k}")[0]) for k in published}
    assert ours == published


def test_v1_shapes_and_widths():
    with torch.device("meta"):
        model = create_model("shufflenet_v1_g3_x1_0")
        x = torch.empty(2, 3, 224, 224)
        assert model.stage2(model.maxpool(model.conv1(x))).shape == (2, 240, 28, 28)
        assert model.forward_features(x).shape == (2, 960, 7, 7)
        assert model(x).shape == (2, 1000)
    assert model.stage2[0].gconv1[0].groups == 1 and model.stage2[1].gconv1[0].groups == 3
    assert model.stage3[0].gconv1[0].groups == 3 and model.stage3[0].gconv2[0].out_channels == 480 - 240


def test_v1_rejects_widths_that_do_not_split_into_groups():
    with pytest.raises(ValueError, match="8 groups"):
        ShuffleNetV1(groups=8, scale=0.5, stem_channels=12)  # 192 - 12 = 180 channels
