"""Transfer learning, the lecture's last slide: reuse a network trained on one task for another.

    from cnnzoo.transfer import transfer, list_layers
    transfer("features", model="resnet18", weights="runs/pre", data="digits", classes="5-9", shots=5,
             layer="layer3")                          # a layer's activations + logistic regression
    transfer("linear", ...)                           # a new last layer on the frozen network
    transfer("finetune", ..., backbone_lr=0.1, head_epochs=2, freeze_bn=True)   # every layer

The three modes (`run`), the layers whose activations serve as features (`layers`), the task carved
out of a data set (`data`: some classes, a few images of each), and the pretrain-then-transfer
experiment against training from scratch (`experiment`; `quick_experiment` is the tour's).
"""
from .data import parse_classes, select
from .layers import PRE_LOGITS, Extractor, aliases, extract, list_layers, resolve_layer
from .run import MODES, TransferSettings, transfer

__all__ = ["MODES", "PRE_LOGITS", "Extractor", "TransferSettings", "aliases", "extract", "list_layers",
           "parse_classes", "resolve_layer", "select", "transfer"]
