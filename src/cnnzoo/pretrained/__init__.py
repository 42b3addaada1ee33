"""Published ImageNet weights by name: "Don't be a hero", start from a trained network.

    model = cnnzoo.create_model("resnet50", pretrained=True)           # torchvision's DEFAULT (IMAGENET1K_V2)
    model = cnnzoo.create_model("resnet50", pretrained="imagenet:v1")  # another published set
    model = cnnzoo.create_model("zfnet_paper", pretrained=True)        # pytorchcv's store, converted

`tables` says which model has which weights (no PyTorch needed), `fetch` downloads and verifies them, `load` reads
them into a model with their class names and preprocessing. The command line takes `--weights imagenet[:TAG]`
wherever it takes `--weights`; `cnnzoo weights list` shows the tables.
"""
from .._lazy import lazy_getattr
from .tables import IMAGENET, Published, default, is_spec, published, resolve, why_none

_LAZY = {"create_model": ".load", "read_published": ".load", "fetch": ".fetch", "cache_dir": ".fetch"}
__all__ = ["IMAGENET", "Published", "default", "is_spec", "published", "resolve", "why_none", *_LAZY]
__getattr__ = lazy_getattr(__name__, _LAZY)
