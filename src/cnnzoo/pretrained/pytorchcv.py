"""The pytorchcv store (osmr/imgclsmob): published ImageNet weights for the lecture's models torchvision lacks.

The table is pytorchcv 0.0.74's `model_metainfos.csv`, the rows of our models: pytorchcv's name, its error column
(the top-5 error in hundredths of a percent: resnet50's 0633 is 6.33%, pytorchcv's README lists the same figure as
top-5), the full SHA-1 of the `.pth` and the release that holds `{file}.zip`. The weight file is
`{cv_name}-{error:04}-{sha1[:8]}.pth`, a plain state_dict (it loads with `weights_only=True`).

One converter for the layout: pytorchcv and cnnzoo both register each network's layers in the paper's order, so
`convert` pairs the two state_dicts' tensors in order, checking every pair's kind (weight, bias, running mean,
running variance) and shape, and fails on the first that differs. Equal kinds and shapes do not prove an equal
network: tests/test_pytorchcv_weights.py does, for every row, with pytorchcv's own module and random weights and
batch-norm statistics (equal logits).
"""
from __future__ import annotations

import dataclasses

from ..errors import CnnzooError

RELEASES = "https://github.com/osmr/imgclsmob/releases/download"


@dataclasses.dataclass(frozen=True)
class CvWeights:
    """One published pytorchcv ImageNet weight file."""

    model: str  # cnnzoo's name
    cv_name: str  # pytorchcv's name
    error: int  # pytorchcv's error column: the top-5 error in hundredths of a percent
    sha1: str  # of the .pth
    release: str

    @property
    def file(self) -> str:
        return f"{self.cv_name}-{self.error:04d}-{self.sha1[:8]}.pth"

    @property
    def url(self) -> str:
        return f"{RELEASES}/{self.release}/{self.file}.zip"

    @property
    def top1(self) -> float | None:
        return None  # pytorchcv's table publishes the top-5 error only

    @property
    def top5(self) -> float:
        return round(100 - self.error / 100, 2)


# cnnzoo name, pytorchcv name, top-5 error (1/100 %), SHA-1 of the .pth, release
_ROWS = """
mobilenet_v1            mobilenet_w1        0895 7e1d739f0fd4b95c16eef077c5dc0a5bb1da8ad5 v0.0.155
mobilenet_v1_075        mobilenet_w3d4      1076 d801bcaea83885b16a0306b8b77fe314bbc585c3 v0.0.130
mobilenet_v1_050        mobilenet_wd2       1355 41a21242c95050407df876cfa44bb5d3676aa751 v0.0.156
mobilenet_v1_025        mobilenet_wd4       2249 1ad5e8fe8674cdf7ffda8450095eb96d227397e0 v0.0.62
shufflenet_v1_g1_x1_0   shufflenet_g1_w1    1389 4cfb65a30761fe548e0b5afbb5d89793ec41e4e9 v0.0.223
shufflenet_v1_g2_x1_0   shufflenet_g2_w1    1363 07256203e217a7b31f1c69a5bd38a6674bce75bc v0.0.241
shufflenet_v1_g3_x1_0   shufflenet_g3_w1    1348 ce54f64ecff87556a4303380f46abaaf649eb308 v0.0.244
shufflenet_v1_g4_x1_0   shufflenet_g4_w1    1335 e2415f8270a4b6cbfe7dc97044d497edbc898577 v0.0.245
shufflenet_v1_g8_x1_0   shufflenet_g8_w1    1342 9a979b365424addba75c559a61a77ac7154b26eb v0.0.250
shufflenet_v1_g3_x0_5   shufflenet_g3_wd2   2080 ccaacfc8d9ac112c6143269df6e258fd55b662a7 v0.0.167
resnet50_v1             resnet50            0633 b00d1c8e52aa7a2badc705b1545aaf6ccece6ce9 v0.0.329
resnet101_v1            resnet101           0540 65faf44721096a75fa72b875efb416513f864078 v0.0.499
resnet152_v1            resnet152           0468 d46977ddb5660bb523e9f2de50e5d16cef8e3027 v0.0.518
seresnext50_32x4d       seresnext50_32x4d   0451 52029a7f6170873b2d50a7016fba053e98183f7b v0.0.505
"""

TABLE: dict[str, CvWeights] = {
    row[0]: CvWeights(row[0], row[1], int(row[2]), row[3], row[4])
    for row in (line.split() for line in _ROWS.strip().splitlines())
}

# Models with no published ImageNet weights anywhere (torchvision or pytorchcv), and why.
NO_WEIGHTS = {
    "alexnet_2012": "the 2012 two-tower network (grouped convolutions, LRN); the published AlexNets are the "
                    "one-tower variants (torchvision's alexnet; pytorchcv's ungrouped LRN model)",
    "googlenet_paper": "the paper's GoogLeNet (LRN, auxiliary heads as published); torchvision's googlenet "
                       "weights are for its batch-normalised variant",
    "vgg11_lrn": "VGG's configuration A-LRN was never published with weights",
    "vgg16_c": "VGG's configuration C (with 1x1 convolutions) was never published with weights",
    "zfnet": "the lecture's reading (7x7/2 conv1 and 512/1024/512 filters on torchvision's AlexNet); the "
             "published ZFNet weights are for the paper's own network",
    "seresnet34": "pytorchcv publishes no SE-ResNet-34 weights (its table's row is empty), nor does the SE paper",
}


def looks_like_pytorchcv(state_dict: dict) -> bool:
    """pytorchcv's layout: `features.init_block...` first and an `output` classifier."""
    keys = list(state_dict)
    return bool(keys) and keys[0].startswith("features.init_block.") and any(k.startswith("output.") for k in keys)



def convert(model: str, state_dict: dict) -> dict:
    """pytorchcv's state_dict of `model`'s architecture, under cnnzoo's names (see the module docstring)."""
    import torch

    from ..models import create_model

    with torch.device("meta"):
        own = create_model(model).state_dict()
    theirs = [(k, v) for k, v in state_dict.items() if not k.endswith("num_batches_tracked")]
    ours = [(k, v) for k, v in own.items() if not k.endswith("num_batches_tracked")]
    if len(theirs) != len(ours):
        raise CnnzooError(f"these pytorchcv weights hold {len(theirs)} tensors, {model} has {len(ours)}: "
                          f"they are another architecture's")
    out = {}
    for (k, v), (name, mine) in zip(theirs, ours):
        if k.rsplit(".", 1)[-1] != name.rsplit(".", 1)[-1] or tuple(v.shape) != tuple(mine.shape):
            raise CnnzooError(f"these pytorchcv weights do not fit {model}: {k} {tuple(v.shape)} meets {name} "
                              f"{tuple(mine.shape)}; they are another architecture's")
        out[name] = v
    for name, mine in own.items():  # batch-norm step counters, which pytorchcv's files may lack
        if name.endswith("num_batches_tracked") and name not in out:
            out[name] = torch.zeros((), dtype=torch.long)
    return out
