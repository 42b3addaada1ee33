"""Write src/cnnzoo/pretrained/torchvision.json from torchvision's weight registry (run after a torchvision upgrade).

    .venv/bin/python scripts/make_torchvision_table.py          # rewrite the file
    .venv/bin/python scripts/make_torchvision_table.py --check  # exit 1 if it no longer matches (tests do this)

One row per published ImageNet weight set of every cnnzoo model that loads a torchvision state_dict unchanged
(its card's `torchvision` is its own name): the enum member (its lower-case tag, `default` for DEFAULT's), the URL, the SHA-256
prefix torch.hub checks (the hex digits in the file name), the size, the published accuracy and the preprocessing.
A data file, so that `cnnzoo list` and `cnnzoo weights list` show it without importing torchvision.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from torchvision.models import get_model_weights

from cnnzoo.models import get_card, list_models

from generated import write_or_check

PATH = Path(__file__).resolve().parent.parent / "src" / "cnnzoo" / "pretrained" / "torchvision.json"


def rows() -> list[dict]:
    out = []
    for name in list_models():
        builder = get_card(name).torchvision
        if builder != name:
            continue  # resnet50_v1 loads resnet50's keys, but computes another network: its weights are pytorchcv's
        enum = get_model_weights(builder)
        for member in enum:
            metrics = member.meta["_metrics"]["ImageNet-1K"]
            if not member.name.startswith("IMAGENET1K_") or metrics["acc@1"] != metrics["acc@1"]:
                continue  # other data, or a features-only set without a classifier (vgg16's, for SSD)
            t = member.transforms()
            file = member.url.rsplit("/", 1)[1]
            out.append({
                "model": name, "tag": member.name.removeprefix("IMAGENET1K_").lower(),
                "default": member is enum.DEFAULT, "builder": builder, "url": member.url, "file": file,
                "sha256": re.search(r"-([0-9a-f]{8,})\.", file).group(1), "mb": member.meta["_file_size"],
                "top1": metrics["acc@1"], "top5": metrics["acc@5"], "recipe": member.meta.get("recipe"),
                "resize": t.resize_size[0], "crop": t.crop_size[0], "interpolation": t.interpolation.value,
                "mean": list(t.mean), "std": list(t.std),
            })
    return out


def render() -> str:
    return json.dumps(rows(), indent=1) + "\n"


if __name__ == "__main__":
    text = render()
    write_or_check(PATH, text, f"{len(json.loads(text))} weight sets")
