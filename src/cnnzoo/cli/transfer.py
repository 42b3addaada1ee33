"""cnnzoo weights, layers, transfer: reusing a trained network (the lecture's three modes)."""
from __future__ import annotations

from ..errors import CnnzooError


def add(sub) -> None:
    from ..train.config import add_arguments
    from .args import TRAIN_TYPES, existing_file, output_file, nonneg_int, positive_float, positive_int, side

    p = sub.add_parser("weights", help="published weights by name, and weights files (weights list|convert)")
    actions = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    q = actions.add_parser("list", help="the published ImageNet weights of every model: tag, source, size, accuracy")
    q.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern of model names (default: all)")
    q.add_argument("--json", action="store_true", help="print one JSON document")
    q.set_defaults(run=_run_weights_list)
    q = actions.add_parser("convert", help="check a weights file against an architecture; write it as safetensors")
    q.add_argument("file", help="a .pth/.pt file (torchvision's, a cnnzoo checkpoint), a run folder, "
                   "a .safetensors file or an http(s) URL")
    q.add_argument("--model", required=True, help="the architecture the weights are for (`cnnzoo list`)")
    q.add_argument("--out", required=True, type=output_file, help="the .safetensors file to write")
    q.set_defaults(run=_run_weights_convert)

    p = sub.add_parser("layers", help="the layers whose activations `transfer features --layer` can extract")
    p.add_argument("model")
    p.add_argument("--input-size", type=side, help="input side for the shapes (default: the card's)")
    p.set_defaults(run=_run_layers)

    p = sub.add_parser("transfer", help="reuse pretrained weights on new data (transfer features|linear|finetune)")
    modes = p.add_subparsers(dest="mode", required=True, metavar="MODE")
    helps = {"features": "a layer's activations as features, then logistic regression (scikit-learn)",
             "linear": "a new last layer trained on the frozen network (batch norm in eval mode)",
             "finetune": "every layer trained, the backbone at a lower learning rate"}
    for mode, text in helps.items():
        q = modes.add_parser(mode, help=text)
        q.add_argument("--classes", help="the classes to keep, e.g. 5-9 or cat,dog (default all)")
        q.add_argument("--shots", type=positive_int, help="training images per class (default all; drops the val split)")
        if mode == "features":
            q.add_argument("--layer", default="pool", help="layer name or alias (`cnnzoo layers MODEL`; default pool)")
            q.add_argument("--C", type=positive_float, default=1.0, help="inverse L2 strength of the logistic regression")
        if mode == "finetune":
            q.add_argument("--backbone-lr", type=positive_float, default=0.1, help="backbone lr / head lr (default 0.1)")
            q.add_argument("--head-epochs", type=nonneg_int, default=0, help="epochs of the new head alone first (default 0)")
            q.add_argument("--freeze-bn", action="store_true", help="keep batch norm's pretrained statistics")
        q.add_argument("--config", type=existing_file, help="YAML file of `cnnzoo train` settings; flags win")
        add_arguments(q, TRAIN_TYPES)
        q.set_defaults(run=_run_transfer)


def _run_weights_list(args) -> int:
    import fnmatch

    from .. import catalog
    from ..pretrained import published, why_none

    names = [n for n in catalog.load() if fnmatch.fnmatchcase(n, args.pattern)]
    if not names:
        raise CnnzooError(f"no model matches {args.pattern!r}; run `cnnzoo list` to see every name")
    rows = [(n, published(n)) for n in names]
    if args.json:
        import dataclasses
        import json

        print(json.dumps({n: [dict(dataclasses.asdict(p), spec=p.spec, license=p.license) for p in sets]
                          or {"none": why_none(n)} for n, sets in rows}, indent=1))
        return 0
    head = ("model", "--weights", "source", "file", "MB", "top-1", "top-5", "license")
    table = [head]
    for name, sets in rows:
        for p in sets:
            table.append((name, p.spec, p.source, p.file, f"{p.mb:.0f}" if p.mb else "-", _pct(p.top1), _pct(p.top5),
                          p.license))
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table if len(table) > 1 else ():
        print("  ".join(c.rjust(w) if i in (4, 5, 6) else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    none = [(n, why_none(n)) for n, sets in rows if not sets]
    if none:
        print("\nno published ImageNet weights:" if len(table) > 1 else "no published ImageNet weights:")
        width = max(len(n) for n, _ in none)
        for n, why in none:
            print(f"  {n:<{width}}  {why}")
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _run_weights_convert(args) -> int:
    from ..weights import convert

    r = convert(args.file, args.model, args.out)
    print(f"{r['source']} fits {r['model']}: {r['tensors']} tensors, {r['parameters']:,} parameters, "
          f"{r['num_classes']} classes, {r['in_chans']} input channel(s) -> {r['out']} ({r['bytes'] / 1e6:.1f} MB)")
    return 0


def _run_layers(args) -> int:
    import torch

    from ..models import create_model, get_card
    from ..transfer import list_layers
    from ..transfer.layers import feature_size

    size = args.input_size or get_card(args.model).input_size
    with torch.device("meta"):
        model = create_model(args.model)
    layers = list_layers(model, size)
    width = max(len(layer.name) for layer in layers)
    print(f"{args.model} at {size}x{size}: layer, output shape, feature length (maps are averaged over space)")
    for layer in layers:
        shape = "x".join(map(str, layer.shape))
        print(f"  {layer.name:<{width}}  {shape:<14} {feature_size(layer.shape):>6}  {layer.note}".rstrip())
    return 0


def _run_transfer(args) -> int:
    from ..train.config import FIELDS
    from ..transfer import transfer
    from .training import check_memory, check_pairs

    check_pairs(args)
    check_memory(args)
    extra = {"layer": args.layer, "C": args.C} if args.mode == "features" else {}
    if args.mode == "finetune":
        extra = {"backbone_lr": args.backbone_lr, "head_epochs": args.head_epochs, "freeze_bn": args.freeze_bn}
    transfer(args.mode, classes=args.classes, shots=args.shots, config_file=args.config,
             **extra, **{name: getattr(args, name) for name in FIELDS})
    return 0


