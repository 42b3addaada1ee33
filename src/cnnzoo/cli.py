"""The `cnnzoo` command. Thin: each command parses its arguments and calls one library function.

A user error (a `CnnzooError`) is printed as one line, `cnnzoo: error: ...`, with exit status 2.
Each command adds itself in its own `_add_*` function; `main` lists them.
"""
from __future__ import annotations

import argparse
import sys

from .errors import CnnzooError


# --- models: list, info, tour ------------------------------------------------------------------------------

def _add_models(sub) -> None:
    p = sub.add_parser("list", help="list the registered models (fnmatch pattern, e.g. 'resnet*')")
    p.add_argument("pattern", nargs="?", default="*")
    p.set_defaults(run=_run_list)

    p = sub.add_parser("info", help="a model's card, parameter count and layer structure")
    p.add_argument("model")
    p.set_defaults(run=_run_info)

    p = sub.add_parser("tour", help="the whole lecture in one run, written to runs/tour/index.html")
    p.add_argument("--out", default="runs/tour", help="where the tour writes its files (default runs/tour)")
    p.add_argument("--chapters", default=None, help="comma-separated: architectures,analysis,training,transfer,"
                                                    "deploy,recommendation (default: all)")
    p.add_argument("--quick", action="store_true", help="3 training epochs instead of 20, fewer timed runs")
    p.set_defaults(run=_run_tour)


def _run_list(args) -> int:
    from .models import get_card, list_models

    names = list_models(args.pattern)
    if not names:
        raise CnnzooError(f"no model matches {args.pattern!r}; run `cnnzoo list` to see every name")
    width = max(map(len, names))
    for name in names:
        card = get_card(name)
        print(f"{name:<{width}}  {card.family} ({card.year})")
    return 0


def _run_info(args) -> int:
    from .summary import describe

    print(describe(args.model))
    return 0


def _run_tour(args) -> int:
    from .tour import run_tour

    run_tour(out=args.out, chapters=args.chapters.split(",") if args.chapters else None, quick=args.quick)
    return 0


# --- analysis: profile, compare -----------------------------------------------------------------------------

_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


def _add_analysis(sub) -> None:
    p = sub.add_parser("profile", help="the lecture's per-layer table: memory, params, flops (meta device)")
    p.add_argument("model")
    p.add_argument("--input-size", default=None, help="227, 227x199 or 3x227x227 (default: the model card's size)")
    p.add_argument("--batch-size", type=int, default=1, help="memory and flops are for the whole batch (default 1)")
    p.add_argument("--depth", type=int, default=None, help="one row per module N levels down, with subtotals")
    p.add_argument("--only", default=None, metavar="TYPES",
                   help="row types to show, e.g. conv,pool,flatten,fc ('lecture' = those four, the lecture's table)")
    p.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table")
    p.add_argument("--flops", choices=["mac", "flop"], default="mac",
                   help="mac: multiply-adds, the lecture's 'flop' (default); flop: 2 x multiply-adds (JSON stays MAC)")
    p.add_argument("--dtype", choices=sorted(_DTYPES), default="float32", help="sets bytes per element")
    p.add_argument("--train-memory", metavar="OPTIMIZER", choices=["sgd", "momentum", "adam", "adamw"], default=None,
                   help="also estimate one training step's memory at this batch size with this optimizer")
    p.set_defaults(run=_run_profile)

    p = sub.add_parser("compare", help="models side by side, with ratios to the first (and the lecture's charts)")
    p.add_argument("models", nargs="+")
    p.add_argument("--input-size", default=None, help="one size for all (default: each model card's size)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table")
    p.add_argument("--plot", metavar="DIR", default=None,
                   help="write per-layer bar charts, the totals and the Canziani chart as PNG and SVG into DIR")
    p.set_defaults(run=_run_compare)


def _run_profile(args) -> int:
    import torch

    from .analysis import profile, training_memory
    from .analysis.ops import KINDS

    dtype = getattr(torch, _DTYPES[args.dtype])
    prof = profile(args.model, args.input_size, args.batch_size, dtype)
    if args.only:
        types = ("conv", "pool", "flatten", "fc") if args.only == "lecture" else tuple(args.only.split(","))
        unknown = sorted(set(types) - set(KINDS))
        if unknown:
            raise CnnzooError(f"unknown row type(s) {', '.join(unknown)}; choose from {', '.join(KINDS)} or 'lecture'")
        prof = prof.select(*types)
    if args.depth is not None:
        prof = prof.group(args.depth)
    mem = training_memory(args.model, args.input_size, args.batch_size, args.train_memory, dtype) \
        if args.train_memory else None
    if args.format == "json":
        import dataclasses
        import json

        out = prof.to_dict()
        if mem is not None:
            out["training_memory"] = {**dataclasses.asdict(mem), "total_bytes": mem.total_bytes}
        print(json.dumps(out, indent=1))
        return 0
    print({"table": prof.table, "markdown": prof.markdown, "csv": prof.csv}[args.format](flops=args.flops))
    if mem is not None:
        print(("# " if args.format == "csv" else "") + str(mem))
    return 0


def _run_compare(args) -> int:
    from .analysis import compare

    comp = compare(args.models, args.input_size, args.batch_size)
    text = {"table": comp.table, "markdown": lambda: comp.table(markdown=True), "csv": comp.csv,
            "json": comp.json}[args.format]()
    print(text)
    if args.plot:
        from .analysis.plots import plot_comparison

        paths = plot_comparison(comp, args.plot)
        print(f"\nwrote {len(paths)} files to {args.plot}: " + ", ".join(p.name for p in paths), file=sys.stderr)
    return 0


# --- training: data check, data split, train, evaluate ------------------------------------------------------

def _add_training(sub) -> None:
    from .train.config import add_arguments

    p = sub.add_parser("data", help="check a data set, or split a folder of class folders (data check|split)")
    actions = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    q = actions.add_parser("check", help="images per class, sizes, corrupt files, duplicates across splits, imbalance")
    q.add_argument("data", help="an image folder, a CSV (path,label[,split]), digits or synthetic")
    q.set_defaults(run=_run_data_check)
    q = actions.add_parser("split", help="a stratified, seeded train/val/test split written as a CSV; copies no image")
    q.add_argument("folder", help="a folder of class folders")
    q.add_argument("--val", type=float, default=0.1, help="validation fraction (default 0.1)")
    q.add_argument("--test", type=float, default=0.1, help="test fraction (default 0.1)")
    q.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    q.add_argument("--out", help="CSV to write (default FOLDER/split.csv)")
    q.add_argument("--force", action="store_true", help="replace an existing CSV")
    q.set_defaults(run=_run_data_split)

    p = sub.add_parser("train", help="train a model: cnnzoo train --model resnet18 --data digits")
    p.add_argument("--config", help="YAML file of settings (keys as the flags, e.g. batch_size: 128); flags win")
    p.add_argument("--resume", metavar="RUN", help="continue the run folder RUN from checkpoints/last.pt")
    add_arguments(p)
    p.set_defaults(run=_run_train)

    p = sub.add_parser("evaluate", help="top-1/top-5, per-class accuracy and confusion matrix of a trained model")
    p.add_argument("target", metavar="RUN|CHECKPOINT", help="a run folder (runs/NAME) or a .pt checkpoint")
    p.add_argument("--data", help="data to test on (default: the run's data, split as in training)")
    p.add_argument("--split", default="test", help="train, val or test (default test)")
    p.add_argument("--which", default="best", choices=("best", "last"), help="checkpoint of a run folder")
    p.add_argument("--out", help="folder for eval-SPLIT.json and confusion-SPLIT.png (default: the run folder)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.set_defaults(run=_run_evaluate)


def _run_data_check(args) -> int:
    from .data import check_data

    report = check_data(args.data)
    print(report)
    return 0 if report.ok else 1


def _run_data_split(args) -> int:
    from .data import split_to_csv

    path, counts = split_to_csv(args.folder, val=args.val, test=args.test, seed=args.seed, out=args.out,
                                force=args.force)
    print(f"wrote {path}: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
    return 0


def _run_train(args) -> int:
    from .train import train
    from .train.config import FIELDS

    train(args.config, resume=args.resume, **{name: getattr(args, name) for name in FIELDS})
    return 0


def _run_evaluate(args) -> int:
    from .train import evaluate, format_report

    report = evaluate(args.target, data=args.data, split=args.split, which=args.which, out=args.out,
                      batch_size=args.batch_size, device=args.device)
    print(format_report(report))
    return 0


# --- bench: bench, recommend -------------------------------------------------------------------------------

def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="latency, throughput, peak memory and GFLOP/s on this machine (vs torchvision)")
    p.add_argument("models", nargs="+", metavar="MODEL", help="names or patterns ('resnet*'); 'all' = every model")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--batch-size", default="1", help="one or more, comma-separated: 1,32 (default 1)")
    p.add_argument("--mode", choices=["infer", "train"], default="infer",
                   help="infer: eval forward under no_grad; train: forward, loss, backward, SGD step")
    p.add_argument("--input-size", default=None, help="224, 224x224 or 3x224x224 (default: each model card's size)")
    p.add_argument("--repeats", type=int, default=10, help="timed steps per model (median reported; default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="at most this long timing one model at one batch size (fewer repeats, at least 3)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's, one per core)")
    p.add_argument("--no-torchvision", action="store_true", help="do not time torchvision's same model alongside")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory step")
    p.add_argument("--out", default="runs/bench", help="writes bench.json and bench.csv here (default runs/bench)")
    p.set_defaults(run=_run_bench)

    p = sub.add_parser("recommend", help="which architecture for this machine: Pareto front of accuracy vs latency")
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="candidates (default: one per idea of the lecture, see cnnzoo.bench.TOUR_MODELS)")
    p.add_argument("--max-latency-ms", type=float, default=None)
    p.add_argument("--max-params", type=_count, default=None, help="e.g. 25M, 2.5e7")
    p.add_argument("--max-gflops", type=float, default=None,
                   help="multiply-adds per image in G, the lecture's 'GFLOP' (ResNet-50: 4.1)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--input-size", default=None, help="default: each model card's size (224; AlexNet 227)")
    p.add_argument("--bench", default=None, metavar="FILE", help="reuse a saved bench.json instead of measuring")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads while measuring (1: steadier)")
    p.add_argument("--out", default="runs/recommend", help="writes recommend.png and recommend.json here")
    p.set_defaults(run=_run_recommend)


def _count(text: str) -> float:
    """25M -> 25e6; 500k, 1.5G, 2.5e7 as they are."""
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(text[-1:].lower(), 1)
    try:
        return float(text[:-1] if scale != 1 else text) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count like 25M or 2.5e7, got {text!r}") from None


def _run_bench(args) -> int:
    import torch

    from .bench import bench
    from .models import list_models

    names = []
    for pattern in args.models:
        found = list_models("*" if pattern == "all" else pattern) if any(c in pattern for c in "*?[") \
            or pattern == "all" else [pattern]
        if not found:
            raise CnnzooError(f"no model matches {pattern!r}; run `cnnzoo list` to see every name")
        names += [n for n in found if n not in names]
    try:
        sizes = [int(b) for b in args.batch_size.split(",")]
    except ValueError:
        raise CnnzooError(f"--batch-size {args.batch_size!r}: expected whole numbers like 1,32") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    show = lambda r: print(f"  {r.model} ({r.impl}) batch {r.batch_size}: {r.latency_ms:.4g} ms", file=sys.stderr)  # noqa: E731
    result = bench(names, args.device, sizes, args.mode, args.input_size, args.repeats, args.warmup, args.budget,
                   torchvision=not args.no_torchvision, memory=not args.no_memory, progress=show)
    print(result.table())
    js, cs = result.save(args.out)
    print(f"\nwrote {js} and {cs}", file=sys.stderr)
    return 0


def _run_recommend(args) -> int:
    import json
    from pathlib import Path

    from .bench import recommend

    rec = recommend(args.models or None, bench_file=args.bench, max_latency_ms=args.max_latency_ms,
                    max_params=args.max_params, max_gflops=args.max_gflops, device=args.device,
                    batch_size=args.batch_size, input_size=args.input_size, repeats=args.repeats, warmup=args.warmup,
                    threads=args.threads)
    print(rec)
    out = Path(args.out)
    png = rec.plot(out / "recommend.png")
    (out / "recommend.json").write_text(json.dumps(rec.to_dict(), indent=1) + "\n")
    print(f"\nwrote {png} and {out / 'recommend.json'}", file=sys.stderr)
    return 0 if rec.choice else 1


# --- transfer: weights convert, layers, transfer features|linear|finetune --------------------------------

def _add_transfer(sub) -> None:
    from .train.config import add_arguments

    p = sub.add_parser("weights", help="pretrained weights files (weights convert)")
    actions = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    q = actions.add_parser("convert", help="check a weights file against an architecture; write it as safetensors")
    q.add_argument("file", help="a .pth/.pt file (torchvision's, a cnnzoo checkpoint), a run folder, "
                   "a .safetensors file or an http(s) URL")
    q.add_argument("--model", required=True, help="the architecture the weights are for (`cnnzoo list`)")
    q.add_argument("--out", required=True, help="the .safetensors file to write")
    q.set_defaults(run=_run_weights_convert)

    p = sub.add_parser("layers", help="the layers whose activations `transfer features --layer` can extract")
    p.add_argument("model")
    p.add_argument("--input-size", type=int, help="input side for the shapes (default: the card's)")
    p.set_defaults(run=_run_layers)

    p = sub.add_parser("transfer", help="reuse pretrained weights on new data (transfer features|linear|finetune)")
    modes = p.add_subparsers(dest="mode", required=True, metavar="MODE")
    helps = {"features": "a layer's activations as features, then logistic regression (scikit-learn)",
             "linear": "a new last layer trained on the frozen network (batch norm in eval mode)",
             "finetune": "every layer trained, the backbone at a lower learning rate"}
    for mode, text in helps.items():
        q = modes.add_parser(mode, help=text)
        q.add_argument("--classes", help="the classes to keep, e.g. 5-9 or cat,dog (default all)")
        q.add_argument("--shots", type=int, help="training images per class (default all; drops the val split)")
        if mode == "features":
            q.add_argument("--layer", default="pool", help="layer name or alias (`cnnzoo layers MODEL`; default pool)")
            q.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic regression")
        if mode == "finetune":
            q.add_argument("--backbone-lr", type=float, default=0.1, help="backbone lr / head lr (default 0.1)")
            q.add_argument("--head-epochs", type=int, default=0, help="epochs of the new head alone first (default 0)")
            q.add_argument("--freeze-bn", action="store_true", help="keep batch norm's pretrained statistics")
        q.add_argument("--config", help="YAML file of `cnnzoo train` settings; flags win")
        add_arguments(q)
        q.set_defaults(run=_run_transfer)


def _run_weights_convert(args) -> int:
    from .weights import convert

    r = convert(args.file, args.model, args.out)
    print(f"{r['source']} fits {r['model']}: {r['tensors']} tensors, {r['parameters']:,} parameters, "
          f"{r['num_classes']} classes, {r['in_chans']} input channel(s) -> {r['out']} ({r['bytes'] / 1e6:.1f} MB)")
    return 0


def _run_layers(args) -> int:
    import torch

    from .models import create_model, get_card
    from .transfer import list_layers
    from .transfer.layers import feature_size

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
    from .train.config import FIELDS
    from .transfer import transfer

    extra = {"layer": args.layer, "C": args.C} if args.mode == "features" else {}
    if args.mode == "finetune":
        extra = {"backbone_lr": args.backbone_lr, "head_epochs": args.head_epochs, "freeze_bn": args.freeze_bn}
    transfer(args.mode, classes=args.classes, shots=args.shots, config_file=args.config,
             **extra, **{name: getattr(args, name) for name in FIELDS})
    return 0


# --- deploy: export, predict, serve ------------------------------------------------------------------------

def _add_deploy(sub) -> None:
    backends = ("auto", "eager", "bf16", "compile", "onnxruntime", "int8")  # deploy.backends.NAMES, not imported here
    p = sub.add_parser("export", help="export a run to ONNX or a torch.export program, verified against PyTorch")
    p.add_argument("source", metavar="RUN|CHECKPOINT|MODEL")
    p.add_argument("--weights", help="with a model name as SOURCE: its weights (torchvision .pth, safetensors, URL)")
    p.add_argument("--format", choices=("onnx", "pt2"), default="onnx")
    p.add_argument("--out", help="output file (default RUN/export/MODEL.FORMAT)")
    p.add_argument("--dynamic-batch", action="store_true", help="any batch size (default: batch 1)")
    p.add_argument("--images", nargs="+", metavar="IMAGE", help="real images to verify on (default: the run's test images)")
    p.set_defaults(run=_run_export)

    p = sub.add_parser("predict", help="classify image files, folders or globs with a run, checkpoint or ONNX file")
    p.add_argument("source", metavar="RUN|CHECKPOINT|MODEL.onnx|MODEL")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--weights", help="with a model name as SOURCE: its weights (torchvision .pth, safetensors, URL)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--backend", choices=backends, default="auto", help="default auto: the fastest that agrees with fp32")
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(run=_run_predict)

    p = sub.add_parser("serve", help="an HTTP service with a web page (POST /predict, GET /model, /health, /)")
    p.add_argument("source", metavar="RUN|CHECKPOINT|MODEL.onnx|MODEL")
    p.add_argument("--weights", help="with a model name as SOURCE: its weights (torchvision .pth, safetensors, URL)")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--backend", choices=backends, default="auto")
    p.add_argument("--max-batch", type=int, default=16, help="micro-batch size limit (1: no batching)")
    p.add_argument("--max-wait-ms", type=float, default=0.0,
                   help="extra wait for more requests (default 0: a batch takes what queued meanwhile)")
    p.add_argument("--max-upload-mb", type=float, default=10.0)
    p.add_argument("--max-megapixels", type=float, default=40.0)
    p.set_defaults(run=_run_serve)


def _run_export(args) -> int:
    from .deploy.export import export_run, format_report
    from .deploy.meta import load_source

    print(format_report(export_run(load_source(args.source, args.weights), args.format, args.out, dynamic_batch=args.dynamic_batch,
                                   images=args.images)))
    return 0


def _run_predict(args) -> int:
    import json

    from .deploy.meta import load_source
    from .deploy.predict import format_predictions, predict

    r = predict(load_source(args.source, args.weights), args.images, top_k=args.top_k, backend=args.backend, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(r.to_dict(), indent=1))
    else:
        print(f"{r.model} from {r.source}; backend {r.backend} ({r.backend_reason})", file=sys.stderr)
        print(format_predictions(r))
        for f in r.failures:
            print(f"cnnzoo: cannot read {f.input}: {f.error}", file=sys.stderr)
    return 1 if r.failures else 0


def _run_serve(args) -> int:
    from .deploy.backends import format_selection
    from .deploy.predict import Predictor
    from .deploy.serve import ServeConfig, create_app, is_loopback, run_server

    cfg = ServeConfig(host=args.host, port=args.port, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                      max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=int(args.max_megapixels * 1e6))
    print(f"loading {args.source} and choosing a backend...", file=sys.stderr, flush=True)
    from .deploy.meta import load_source

    pred = Predictor(load_source(args.source, args.weights), args.backend, batch_size=cfg.max_batch)
    if pred.measured:
        print(format_selection(pred), file=sys.stderr)
    else:
        print(f"backend: {pred.backend.name} ({pred.reason})", file=sys.stderr)
    if not is_loopback(cfg.host):
        print(f"cnnzoo: warning: serving on {cfg.host}: anyone who can reach this machine can use the model",
              file=sys.stderr)
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    print(f"serving {pred.meta.model} on http://{host}:{cfg.port}/ (Ctrl-C stops)", file=sys.stderr, flush=True)
    run_server(create_app(pred, cfg), cfg)
    return 0


# --- main --------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnzoo", description="The classic CNN architectures, analysed and trained.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_models, _add_analysis, _add_training, _add_bench, _add_transfer, _add_deploy):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except CnnzooError as exc:
        print(f"cnnzoo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cnnzoo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cnnzoo profile vgg16 | head`: the reader left; not an error worth a traceback
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
