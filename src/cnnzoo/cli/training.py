"""cnnzoo data list|check|split, train, lr-find, evaluate: the lecture's train and test steps."""
from __future__ import annotations

import re

from ..errors import CnnzooError

from .args import positive_float

# The names cnnzoo.data.named.DATASETS knows (kept here so that parsing imports no torch; a test compares them).
NAMED_DATA = ("mnist", "fashion-mnist", "kmnist", "cifar10", "cifar100", "svhn", "stl10", "flowers102", "oxford-pets",
              "food101", "imagenette", "imagenet")
# Settings of `cnnzoo train` that lr-find has no use for: it runs a fixed number of steps at its own rates.
LR_FIND_SKIP = ("out", "epochs", "lr", "sched", "warmup_epochs", "step_epochs", "step_gamma", "progress",
                "tensorboard")


def add(sub) -> None:
    from ..train.config import add_arguments
    from .args import TRAIN_TYPES, existing, existing_file, output_dir, output_file, positive_int, seed, \
        split_fraction

    p = sub.add_parser("data", help="the named data sets, or check/split your own (data list|check|split)")
    actions = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    q = actions.add_parser("list", help="the data sets --data takes by name: classes, images, size, download, here?")
    q.add_argument("--data-root", metavar="DIR", help="where to look (default $CNNZOO_DATA, else ~/.cache/cnnzoo/data)")
    q.add_argument("--json", action="store_true", help="one JSON list on stdout")
    q.set_defaults(run=_run_data_list)
    q = actions.add_parser("check", help="images per class, sizes, corrupt files, duplicates across splits, imbalance")
    q.add_argument("data", type=_data_spec, help="an image folder, a CSV (path,label[,split]), digits or synthetic")
    q.set_defaults(run=_run_data_check)
    q = actions.add_parser("split", help="a stratified, seeded train/val/test split written as a CSV; copies no image")
    q.add_argument("folder", type=existing, help="a folder of class folders")
    q.add_argument("--val", type=split_fraction, default=0.1, help="validation fraction (default 0.1)")
    q.add_argument("--test", type=split_fraction, default=0.1, help="test fraction (default 0.1)")
    q.add_argument("--seed", type=seed, default=0, help="split seed (default 0)")
    q.add_argument("--out", type=output_file, help="CSV to write (default FOLDER/split.csv)")
    q.add_argument("--force", action="store_true", help="replace an existing CSV")
    q.set_defaults(run=_run_data_split)

    p = sub.add_parser("train", help="train a model: cnnzoo train --model resnet18 --data digits")
    p.add_argument("--config", type=existing_file, help="YAML file of settings (keys as the flags, e.g. batch_size: 128); flags win")
    p.add_argument("--resume", metavar="RUN", type=existing, help="continue the run folder RUN from checkpoints/last.pt")
    add_arguments(p, TRAIN_TYPES)
    p.set_defaults(run=_run_train)

    p = sub.add_parser("lr-find", help="the learning-rate range test: loss against a rising rate, a chart, a "
                                       "suggested rate (fastai's lr_find)")
    p.add_argument("--config", help="YAML file of training settings (as cnnzoo train); flags win")
    p.add_argument("--start-lr", type=positive_float, default=1e-7, help="first rate (default 1e-7)")
    p.add_argument("--end-lr", type=positive_float, default=10.0, help="last rate (default 10)")
    p.add_argument("--steps", type=positive_int, default=100, help="steps from start to end (default 100)")
    p.add_argument("--chart", metavar="PNG", help="the chart (default lr-find-MODEL-DATA.png here)")
    p.add_argument("--json", action="store_true", help="the curve and the suggestion as JSON on stdout")
    add_arguments(p, TRAIN_TYPES, skip=LR_FIND_SKIP)
    p.set_defaults(run=_run_lr_find)

    p = sub.add_parser("evaluate", help="top-1/top-5, per-class accuracy and confusion matrix of a trained model")
    p.add_argument("target", metavar="RUN|CHECKPOINT", nargs="*", type=existing,
                   help="a run folder (runs/NAME) or a .pt checkpoint (or --model and --weights instead); several: "
                   "each member and their ensemble (mean of softmax), with the gain over the best member")
    p.add_argument("--model", help="score published or converted weights without a run: a model name ...")
    p.add_argument("--weights", help="... and its weights: imagenet[:TAG], a file or a URL (with --data)")
    p.add_argument("--data", type=_data_spec, help="data to test on (default: the run's data, split as in training)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="train, val or test (default test)")
    p.add_argument("--which", default="best", choices=("best", "last"), help="checkpoint of a run folder")
    p.add_argument("--out", type=output_dir, help="folder for eval-SPLIT.json and confusion-SPLIT.png (default: the run folder)")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--tta", choices=("flip", "5crop", "10crop"),
                   help="also score test-time views (softmax averaged: centre crop and mirror, 5 crops, 10 crops): "
                   "the gain over the centre crop, and the cost")
    p.add_argument("--json", action="store_true", help="the metrics as JSON on stdout (the report is still written)")
    p.set_defaults(run=_run_evaluate)


def _data_spec(text: str) -> str:
    """digits, synthetic[:options], or an existing folder or CSV."""
    from .args import existing

    named = text in ("digits", "synthetic") or text.startswith("synthetic:") or text in NAMED_DATA
    return text if named else existing(text)


def check_pairs(args) -> None:
    """Settings that only mean something together: --mean needs --std and the other way round."""

    if (getattr(args, "mean", None) is None) != (getattr(args, "std", None) is None):
        given, missing = ("--mean", "--std") if args.mean is not None else ("--std", "--mean")
        raise CnnzooError(f"{given} needs {missing} as well (one value per input channel each)")
    if args.mean is not None and len(args.mean) != len(args.std):
        raise CnnzooError(f"--mean has {len(args.mean)} values and --std {len(args.std)}; give one per channel")


def check_memory(args) -> None:
    """With --model and --input-size given, refuse a step that will not fit before any data loads (the
    data set's own size, known later, is checked by the trainer)."""
    if not (getattr(args, "model", None) and getattr(args, "input_size", None)):
        return
    from ..analysis.budget import check_training

    c = args.in_chans or 3
    check_training(args.model, (c, args.input_size, args.input_size), args.batch_size or 64,
                   "adamw" if args.opt == "adamw" else "momentum", in_chans=c)


def _run_data_list(args) -> int:
    import json

    from ..data.named import catalogue, data_root, format_catalogue

    root = data_root(args.data_root)
    if root.exists() and not root.is_dir():
        raise CnnzooError(f"data root {root} is a file, not a folder; pass --data-root DIR")
    rows = catalogue(args.data_root)
    print(json.dumps(rows, indent=1) if args.json else format_catalogue(rows, data_root(args.data_root)))
    return 0


def _run_data_check(args) -> int:
    from ..data import check_data

    report = check_data(args.data)
    print(report)
    return 0 if report.ok else 1


def _run_data_split(args) -> int:
    from ..data import split_to_csv

    path, counts = split_to_csv(args.folder, val=args.val, test=args.test, seed=args.seed, out=args.out,
                                force=args.force)
    print(f"wrote {path}: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
    return 0


def _run_train(args) -> int:
    from ..train import train
    from ..train.config import FIELDS

    check_pairs(args)
    check_memory(args)
    train(args.config, resume=args.resume, **{name: getattr(args, name) for name in FIELDS})
    return 0


def _run_lr_find(args) -> int:
    import json

    from ..train import lr_find
    from ..train.config import FIELDS

    chart = args.chart or f"lr-find-{args.model}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', str(args.data))}.png"
    finding = lr_find(args.config, start_lr=args.start_lr, end_lr=args.end_lr, steps=args.steps, chart=chart,
                      **{name: getattr(args, name) for name in FIELDS if name not in LR_FIND_SKIP})
    print(json.dumps(finding.to_dict()) if args.json else finding)
    return 0


def _run_evaluate(args) -> int:
    import json

    from ..train import evaluate, format_report

    if len(args.target) > 1:
        from ..deploy.ensemble import evaluate_ensemble, format_members

        if args.model or args.weights:
            raise CnnzooError("--model/--weights score one model; an ensemble takes run folders or checkpoints only")
        report = evaluate_ensemble(args.target, data=args.data, split=args.split, which=args.which, out=args.out,
                                   batch_size=args.batch_size, device=args.device, tta=args.tta)
        print(json.dumps(report) if args.json else format_report(report))
        print(format_members(report))
        return 0
    report = evaluate(args.target[0] if args.target else None, data=args.data, split=args.split, which=args.which,
                      out=args.out, batch_size=args.batch_size, device=args.device, model=args.model,
                      weights=args.weights, tta=args.tta)
    print(json.dumps(report) if args.json else format_report(report))
    return 0


