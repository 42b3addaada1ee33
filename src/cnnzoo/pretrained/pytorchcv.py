"""The pytorchcv store (osmr/imgclsmob): published ImageNet weights for the lecture's models torchvision lacks.

The table is pytorchcv 0.0.74's `model_metainfos.csv`, the rows of our models: pytorchcv's name, its error column
(the top-5 error in hundredths of a percent: resnet50's 0633 is 6.33%, pytorchcv's README lists the same figure as
top-5), the full SHA-1 of the `.pth` and the release that holds `{file}.zip`; and the top-1 error its README's
ImageNet-1K table publishes beside that top-5 (1-crop 224 on the validation set, torchvision's preprocessing).
The weight file is `{cv_name}-{error:04}-{sha1[:8]}.pth`, a plain state_dict (it loads with `weights_only=True`).

One converter per layout, each a table of renaming rules (below, `LAYOUTS`): a regular expression on pytorchcv's
key and the cnnzoo key it becomes, in terms of the stage and unit numbers it matched. Names, not positions, decide
where a tensor goes, so a file whose keys were reordered (safetensors sorts them) converts the same, and a key no
rule knows is named in the error. Renamed keys and shapes are then checked against the model's own. Equal names and
shapes do not prove an equal network: tests/test_pytorchcv_weights.py does, for every row, with pytorchcv's own
module and random weights and batch-norm statistics (equal logits).
"""
from __future__ import annotations

import dataclasses
import re

from ..errors import CnnzooError

RELEASES = "https://github.com/osmr/imgclsmob/releases/download"


@dataclasses.dataclass(frozen=True)
class CvWeights:
    """One published pytorchcv ImageNet weight file."""

    model: str  # cnnzoo's name
    cv_name: str  # pytorchcv's name
    error: int  # pytorchcv's error column: the top-5 error in hundredths of a percent
    top1_error: int  # its README's top-1 error, in hundredths of a percent
    sha1: str  # of the .pth
    release: str

    @property
    def file(self) -> str:
        return f"{self.cv_name}-{self.error:04d}-{self.sha1[:8]}.pth"

    @property
    def url(self) -> str:
        return f"{RELEASES}/{self.release}/{self.file}.zip"

    @property
    def top1(self) -> float:
        """Published top-1 accuracy in percent."""
        return round(100 - self.top1_error / 100, 2)

    @property
    def top5(self) -> float:
        """Published top-5 accuracy in percent."""
        return round(100 - self.error / 100, 2)


# cnnzoo name, pytorchcv name, top-5 error and top-1 error (1/100 %), SHA-1 of the .pth, release
_ROWS = """
zfnet_paper             zfnet               1727 3979 d010ddca1eb32a50a8cceb475c792f53e769b631 v0.0.395
zfnet_paper_wide        zfnetb              1490 3637 f6bec24eba037c8e4956704ed5bafaed29966601 v0.0.400
mobilenet_v1            mobilenet_w1        0895 2661 7e1d739f0fd4b95c16eef077c5dc0a5bb1da8ad5 v0.0.155
mobilenet_v1_075        mobilenet_w3d4      1076 3014 d801bcaea83885b16a0306b8b77fe314bbc585c3 v0.0.130
mobilenet_v1_050        mobilenet_wd2       1355 3415 41a21242c95050407df876cfa44bb5d3676aa751 v0.0.156
mobilenet_v1_025        mobilenet_wd4       2249 4626 1ad5e8fe8674cdf7ffda8450095eb96d227397e0 v0.0.62
shufflenet_v1_g1_x1_0   shufflenet_g1_w1    1389 3493 4cfb65a30761fe548e0b5afbb5d89793ec41e4e9 v0.0.223
shufflenet_v1_g2_x1_0   shufflenet_g2_w1    1363 3425 07256203e217a7b31f1c69a5bd38a6674bce75bc v0.0.241
shufflenet_v1_g3_x1_0   shufflenet_g3_w1    1348 3439 ce54f64ecff87556a4303380f46abaaf649eb308 v0.0.244
shufflenet_v1_g4_x1_0   shufflenet_g4_w1    1335 3419 e2415f8270a4b6cbfe7dc97044d497edbc898577 v0.0.245
shufflenet_v1_g8_x1_0   shufflenet_g8_w1    1342 3406 9a979b365424addba75c559a61a77ac7154b26eb v0.0.250
shufflenet_v1_g3_x0_5   shufflenet_g3_wd2   2080 4416 ccaacfc8d9ac112c6143269df6e258fd55b662a7 v0.0.167
resnet50_v1             resnet50            0633 2228 b00d1c8e52aa7a2badc705b1545aaf6ccece6ce9 v0.0.329
resnet101_v1            resnet101           0540 2079 65faf44721096a75fa72b875efb416513f864078 v0.0.499
resnet152_v1            resnet152           0468 1929 d46977ddb5660bb523e9f2de50e5d16cef8e3027 v0.0.518
seresnet18              seresnet18          0961 2818 022123a5e88c9917e63165f5b5a7808a606d452a v0.0.355
seresnet50              seresnet50          0575 2122 004bfde422c860c4f11b1e1190bb5a8db477d939 v0.0.441
seresnet101             seresnet101         0460 1924 37851448605dae67bbf83ff8e7f7e7cc367e1746 v0.0.533
seresnet152             seresnet152         0439 1872 7a6b02ac25caccb0420eea542c625f9b0bfb3e03 v0.0.538
seresnext50_32x4d       seresnext50_32x4d   0451 1894 52029a7f6170873b2d50a7016fba053e98183f7b v0.0.505
preact_resnet18_gluon   preresnet18         0972 2843 5651bc2dbb200382822a6b64375d240f747cc726 v0.0.140
preact_resnet34_gluon   preresnet34         0774 2489 fd5bd1e883048e29099768465df2dd9e891803f4 v0.0.300
preact_resnet50_gluon   preresnet50         0647 2240 222ca73b021f893b925c15e24ea2a6bc0fdf2546 v0.0.330
preact_resnet101_gluon  preresnet101        0563 2081 8ec82f7d697b7329aea2c95b399093e9cb2b1114 v0.0.504
preact_resnet152_gluon  preresnet152        0464 1936 baeb6c5208310ab7c919fc0da3c20267471a8fa1 v0.0.510
"""

TABLE: dict[str, CvWeights] = {
    row[0]: CvWeights(row[0], row[1], int(row[2]), int(row[3]), row[4], row[5])
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
             "published ZFNet weights are for the paper's own networks, zfnet_paper and zfnet_paper_wide",
    **{f"mobilenet_v2_{w}": "torchvision's and the paper's code's width rule (every width rounded to a multiple of "
                            "8); pytorchcv's published mobilenetv2 widths truncate instead (int(c * alpha)), its "
                            "first block adds a 1x1 expansion and its classifier has no bias, so its weights do not "
                            "fit" + (" (timm's mobilenetv2_050.lamb_in1k has these widths; timm is not a source "
                                      "here)" if w == "050" else "") for w in ("075", "050")},
    "seresnet34": "pytorchcv publishes no SE-ResNet-34 weights (its table's row is empty), nor does the SE paper",
    **{f"preact_resnet{d}": f"the paper's network, whose stem BN-ReLU is the first unit's pre-activation; the "
                            f"published weights are for preact_resnet{d}_gluon, which pre-activates again"
       for d in (18, 34, 50, 101, 152)},
    "preact_resnet200": "pytorchcv's weights are for preresnet200b, its 'b' layout (stride on each bottleneck's "
                        "3x3), where this model strides the first 1x1 as the paper's code does",
}


# ---- Layouts: pytorchcv's key -> cnnzoo's, per family. Fields: s, u (pytorchcv's stage and unit, from 1), u0 = u - 1,
# s1 = s + 1, n = the unit's number counted across all stages (from 1), i = the layout's `index[n - 1]`, and the
# expression's own named groups (k: a convolution's number, p: the parameter's name).
UNIT = r"features\.stage(?P<s>\d+)\.unit(?P<u>\d+)\."
P = r"(?P<p>\w+)$"


@dataclasses.dataclass(frozen=True)
class Layout:
    rules: tuple[tuple[str, str], ...]  # (pytorchcv key expression, cnnzoo key template)
    index: tuple[int, ...] = ()  # where the n-th unit sits in a flat nn.Sequential, if the model numbers them so


LAYOUTS: dict[str, Layout] = {
    "resnet": Layout((  # ResNet v1, SE-ResNet, SE-ResNeXt
        (r"features\.init_block\.conv\.conv\." + P, "conv1.{p}"),
        (r"features\.init_block\.conv\.bn\." + P, "bn1.{p}"),
        (UNIT + r"body\.conv(?P<k>\d)\.conv\." + P, "layer{s}.{u0}.conv{k}.{p}"),
        (UNIT + r"body\.conv(?P<k>\d)\.bn\." + P, "layer{s}.{u0}.bn{k}.{p}"),
        (UNIT + r"se\.conv(?P<k>\d)\." + P, "layer{s}.{u0}.se.fc{k}.{p}"),
        (UNIT + r"identity_conv\.conv\." + P, "layer{s}.{u0}.downsample.0.{p}"),
        (UNIT + r"identity_conv\.bn\." + P, "layer{s}.{u0}.downsample.1.{p}"),
        (r"output\." + P, "fc.{p}"),
    )),
    "preresnet": Layout((  # pre-activation units: conv k is BN k -> ReLU -> conv k
        (r"features\.init_block\.conv\." + P, "conv1.{p}"),
        (r"features\.init_block\.bn\." + P, "bn1.{p}"),
        (UNIT + r"body\.conv(?P<k>\d)\.conv\." + P, "layer{s}.{u0}.conv{k}.{p}"),
        (UNIT + r"body\.conv(?P<k>\d)\.bn\." + P, "layer{s}.{u0}.bn{k}.{p}"),
        (UNIT + r"identity_conv\." + P, "layer{s}.{u0}.downsample.{p}"),
        (r"features\.post_activ\.bn\." + P, "bn.{p}"),
        (r"output\." + P, "fc.{p}"),
    )),
    "mobilenet": Layout((  # MobileNet V1: stem and units numbered in one sequence
        (r"features\.init_block\.conv\." + P, "features.0.0.{p}"),
        (r"features\.init_block\.bn\." + P, "features.0.1.{p}"),
        (UNIT + r"(?P<c>dw|pw)_conv\.conv\." + P, "features.{n}.{c}.0.{p}"),
        (UNIT + r"(?P<c>dw|pw)_conv\.bn\." + P, "features.{n}.{c}.1.{p}"),
        (r"output\." + P, "classifier.{p}"),
    )),
    "shufflenet": Layout((  # pytorchcv's stage 1 is the paper's stage 2
        (r"features\.init_block\.conv\." + P, "conv1.0.{p}"),
        (r"features\.init_block\.bn\." + P, "conv1.1.{p}"),
        (UNIT + r"compress_conv1\." + P, "stage{s1}.{u0}.gconv1.0.{p}"),
        (UNIT + r"compress_bn1\." + P, "stage{s1}.{u0}.gconv1.1.{p}"),
        (UNIT + r"dw_conv2\." + P, "stage{s1}.{u0}.dwconv.0.{p}"),
        (UNIT + r"dw_bn2\." + P, "stage{s1}.{u0}.dwconv.1.{p}"),
        (UNIT + r"expand_conv3\." + P, "stage{s1}.{u0}.gconv2.0.{p}"),
        (UNIT + r"expand_bn3\." + P, "stage{s1}.{u0}.gconv2.1.{p}"),
        (r"output\." + P, "fc.{p}"),
    )),
    "alexnet": Layout((  # ZFNet's paper networks: conv, ReLU, LRN, pool in one nn.Sequential, as torchvision's
        (UNIT + r"conv\." + P, "features.{i}.{p}"),
        (r"output\.fc(?P<k>[12])\.fc\." + P, "classifier.{k3}.{p}"),
        (r"output\.fc3\." + P, "classifier.6.{p}"),
    ), index=(0, 4, 8, 10, 12)),
}

# pytorchcv name prefix -> layout, first match wins
LAYOUT_OF_NAME = (("preresnet", "preresnet"), ("seresn", "resnet"), ("resnet", "resnet"),
                  ("mobilenet_", "mobilenet"), ("shufflenet_", "shufflenet"), ("zfnet", "alexnet"))


def layout_of(model: str) -> Layout:
    """The key layout of `model`'s pytorchcv weights (its row in TABLE says which pytorchcv network it is)."""
    if model not in TABLE:
        raise CnnzooError(f"{model} has no pytorchcv counterpart, so a pytorchcv file cannot be read into it; "
                          f"models that have one: {', '.join(sorted(TABLE))}")
    return LAYOUTS[next(layout for prefix, layout in LAYOUT_OF_NAME if TABLE[model].cv_name.startswith(prefix))]


def rename(layout: Layout, keys: list[str]) -> dict[str, str]:
    """pytorchcv key -> cnnzoo key for every key, by the layout's rules; a key no rule matches is an error."""
    units = sorted({(int(m["s"]), int(m["u"])) for k in keys if (m := re.match(UNIT, k))})
    number = {unit: n for n, unit in enumerate(units, start=1)}
    out = {}
    for key in keys:
        for pattern, template in layout.rules:
            if m := re.fullmatch(pattern, key):
                g = m.groupdict()
                f = dict(g)
                if g.get("s"):
                    s, u = int(g["s"]), int(g["u"])
                    n = number[(s, u)]
                    f.update(s1=s + 1, u0=u - 1, n=n, i=layout.index[n - 1] if layout.index else n)
                if g.get("k"):
                    f["k3"] = 3 * int(g["k"]) - 3
                out[key] = template.format(**f)
                break
        else:
            raise CnnzooError(f"these pytorchcv weights hold {key!r}, which no rule of this model's layout knows: "
                              f"they are another architecture's")
    return out


def looks_like_pytorchcv(state_dict: dict) -> bool:
    """pytorchcv's layout: a stem `features.init_block...` (or, in its AlexNets, `features.stage1.unit1...`) and an
    `output` classifier, in whatever order the keys come."""
    keys = list(state_dict)
    return any(k.startswith(("features.init_block.", "features.stage1.unit1.")) for k in keys) \
        and any(k.startswith("output.") for k in keys)


def convert(model: str, state_dict: dict) -> dict:
    """pytorchcv's state_dict of `model`'s architecture, under cnnzoo's names (see the module docstring)."""
    import torch

    from ..models import create_model

    with torch.device("meta"):
        own = create_model(model).state_dict()
    names = rename(layout_of(model), list(state_dict))
    out = {}
    for key, name in names.items():
        if name not in own or tuple(own[name].shape) != tuple(state_dict[key].shape):
            have = tuple(own[name].shape) if name in own else "no such tensor"
            raise CnnzooError(f"these pytorchcv weights do not fit {model}: {key} {tuple(state_dict[key].shape)} "
                              f"goes to {name}, which is {have}; they are another architecture's")
        out[name] = state_dict[key]
    missing = [n for n in own if n not in out and not n.endswith("num_batches_tracked")]
    if missing:
        raise CnnzooError(f"these pytorchcv weights lack {len(missing)} of {model}'s tensors ({missing[0]}, ...): "
                          f"they are another architecture's")
    for name in own:  # batch-norm step counters, which some pytorchcv files lack
        if name not in out:
            out[name] = torch.zeros((), dtype=torch.long)
    return out
