"""Which published ImageNet weights each model has: two tables, read without PyTorch.

- torchvision's weight registry, for the 29 models whose card names a torchvision builder of the same name
  (`torchvision.json`, made by `scripts/make_torchvision_table.py` from `torchvision.models.get_model_weights`,
  checked against it by the tests). Every enum member is a tag (`v1`, `v2`); `imagenet` is torchvision's DEFAULT.
- the pytorchcv store (`pytorchcv.TABLE`), for the lecture's models torchvision lacks; tag `pytorchcv`.

`resolve("resnet50", "imagenet:v1")` gives the one `Published` set a spec names; `published("resnet50")` all of a
model's. A model with none says why (`why_none`).
"""
from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

from ..errors import CnnzooError
from . import pytorchcv

IMAGENET = "imagenet"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, as pytorchcv trains with them too
# torchvision's googlenet weights are the paper's Caffe model's, which took (x - 0.5) / 0.5 per channel: torchvision
# converts ImageNet-normalised input to that inside the model (transform_input=True); cnnzoo's googlenet does not, so
# the published set's own normalisation is the Caffe one (the googlenet card says so).
OWN_NORMALISATION = {"googlenet": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}
LICENSES = {"torchvision": "BSD-3-Clause (torchvision)", "pytorchcv": "MIT (osmr/imgclsmob)"}


@dataclasses.dataclass(frozen=True)
class Published:
    """One published weight file and what it means: where it is, how to check it, how to feed it, how good it is."""

    model: str
    tag: str
    source: str  # "torchvision" or "pytorchcv"
    default: bool
    url: str
    file: str  # the file in the cache: the .pth (a pytorchcv .pth comes out of the zip at `url`)
    sha256: str | None  # torchvision: the prefix in the file name (torch.hub's check)
    sha1: str | None  # pytorchcv: the full SHA-1 of the .pth
    mb: float | None
    top1: float | None
    top5: float | None
    resize: int = 256
    crop: int = 224
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = MEAN
    std: tuple[float, ...] = STD

    @property
    def spec(self) -> str:
        return IMAGENET if self.default else f"{IMAGENET}:{self.tag}"

    @property
    def license(self) -> str:
        return LICENSES[self.source]

    @property
    def crop_pct(self) -> float:
        return self.crop / self.resize


@functools.cache
def _torchvision() -> dict[str, list[Published]]:
    rows = json.loads(Path(__file__).with_name("torchvision.json").read_text())
    out: dict[str, list[Published]] = {}
    for r in rows:
        mean, std = OWN_NORMALISATION.get(r["model"], (tuple(r["mean"]), tuple(r["std"])))
        out.setdefault(r["model"], []).append(Published(
            model=r["model"], tag=r["tag"], source="torchvision", default=r["default"], url=r["url"], file=r["file"],
            sha256=r["sha256"], sha1=None, mb=r["mb"], top1=r["top1"], top5=r["top5"], resize=r["resize"],
            crop=r["crop"], interpolation=r["interpolation"], mean=mean, std=std))
    return out


@functools.cache
def _pytorchcv() -> dict[str, list[Published]]:
    return {name: [Published(model=name, tag="pytorchcv", source="pytorchcv", default=True, url=w.url, file=w.file,
                             sha256=None, sha1=w.sha1, mb=None, top1=w.top1, top5=w.top5)]
            for name, w in pytorchcv.TABLE.items()}


def published(model: str) -> list[Published]:
    """Every published set of `model`, the default first; [] when it has none."""
    sets = _torchvision().get(model) or _pytorchcv().get(model) or []
    return sorted(sets, key=lambda p: (not p.default, p.tag))


def default(model: str) -> Published | None:
    sets = published(model)
    return sets[0] if sets else None


def why_none(model: str) -> str:
    """Why `model` has no published weights."""
    return pytorchcv.NO_WEIGHTS.get(model, "no ImageNet weights were published for this architecture")


def is_spec(source: object) -> bool:
    """Whether a --weights value names published weights (`imagenet`, `imagenet:v2`, any case) rather than a file
    (a file called `imagenet` is `./imagenet`)."""
    return isinstance(source, str) and source.partition(":")[0].lower() == IMAGENET


def resolve(model: str, spec: str = IMAGENET) -> Published:
    """The published set that `spec` (`imagenet` or `imagenet:TAG`; TAG in any case, `IMAGENET1K_V1` as `v1`)
    names for `model`."""
    sets = published(model)
    if not sets:
        raise CnnzooError(f"{model} has no published ImageNet weights ({why_none(model)}); train it "
                          f"(`cnnzoo train --model {model} ...`) or pass a weights file")
    _, colon, tag = spec.partition(":")
    if not colon:
        return sets[0]
    want = tag.strip().lower().removeprefix("imagenet1k_")  # torchvision's enum name works too: IMAGENET1K_V2
    for p in sets:
        if p.tag == want:
            return p
    tags = ", ".join(f"{IMAGENET}:{p.tag}" for p in sets)
    raise CnnzooError(f"{model} has no weights tagged {tag!r}; it has {tags} (`cnnzoo weights list {model}`)")
