"""cnnzoo export, predict, serve: the lecture's deploy step."""
from __future__ import annotations

import os
import sys

from .args import existing, nonneg_float, output_file, port, positive_float, positive_int


WEIGHTS_HELP = ("with a model name as SOURCE: its weights: imagenet[:TAG] (published), a torchvision or pytorchcv "
                ".pth, a .safetensors file or a URL")
ENSEMBLE = "several runs or checkpoints: their ensemble (mean of softmax; same classes and input size)"
TTA = ("flip", "5crop", "10crop")  # data.tta.VIEWS, not imported here


def add(sub) -> None:
    backends = ("auto", "eager", "bf16", "compile", "onnxruntime", "int8")  # deploy.backends.NAMES, not imported here
    p = sub.add_parser("export", help="export a run to ONNX or a torch.export program, verified against PyTorch")
    p.add_argument("source", metavar="RUN|CHECKPOINT|MODEL", nargs="+", type=_source, help=f"one model, or {ENSEMBLE}: one graph")
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--format", choices=("onnx", "pt2"), default="onnx")
    p.add_argument("--out", type=output_file, help="output file (default RUN/export/MODEL.FORMAT)")
    p.add_argument("--dynamic-batch", action="store_true", help="any batch size (default: batch 1)")
    p.add_argument("--images", nargs="+", metavar="IMAGE", type=existing,
                   help="real images to verify on (default: the run's test images)")
    p.add_argument("--force", action="store_true", help="replace an --out file that is not a previous export")
    p.set_defaults(run=_run_export)

    p = sub.add_parser("predict", help="classify image files, folders or globs with a run, checkpoint or ONNX file")
    p.add_argument("source", metavar="RUN|CHECKPOINT|MODEL.onnx|MODEL", type=_source)
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files, folders or globs; run folders or checkpoints before them join the first in an "
                   "ensemble (mean of softmax; same classes and input size)")
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--tta", choices=TTA, help="average the softmax over test-time views: the centre crop and its "
                   "mirror, 5 crops (corners, centre) or those 10 crops and their mirrors (AlexNet)")
    p.add_argument("--top-k", type=positive_int, default=5)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--backend", choices=backends, default="auto", help="default auto: the fastest that agrees with fp32")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.set_defaults(run=_run_predict)

    p = sub.add_parser("serve", help="an HTTP service with a web page (POST /predict, GET /model, /health, /)")
    p.add_argument("source", metavar="RUN|CHECKPOINT|MODEL.onnx|MODEL", nargs="+", type=_source, help=f"one model, or {ENSEMBLE}")
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    p.add_argument("--port", type=port, default=8000, help="0: any free port (the one it got is printed)")
    p.add_argument("--backend", choices=backends, default="auto")
    p.add_argument("--max-batch", type=positive_int, default=16, help="micro-batch size limit (1: no batching)")
    p.add_argument("--max-wait-ms", type=nonneg_float, default=0.0,
                   help="extra wait for more requests (default 0: a batch takes what queued meanwhile)")
    p.add_argument("--max-upload-mb", type=positive_float, default=10.0)
    p.add_argument("--max-megapixels", type=positive_float, default=40.0)
    p.set_defaults(run=_run_serve)


def _source(text: str) -> str:
    """A run folder, checkpoint or ONNX file that exists, or a model name (a word without a path separator)."""
    if os.sep in text or "." in os.path.basename(text) or os.path.exists(text):
        return existing(text)
    return text


def _run_export(args) -> int:
    from ..deploy.ensemble import load_ensemble
    from ..deploy.export import check_out, export_run, format_report

    if args.out:
        check_out(args.out, args.force)  # before the model loads
    print(format_report(export_run(load_ensemble(args.source, args.weights), args.format, args.out,
                                   dynamic_batch=args.dynamic_batch, images=args.images, force=args.force)))
    return 0


def _run_predict(args) -> int:
    import json

    from ..deploy.ensemble import load_ensemble, split_sources
    from ..deploy.predict import format_predictions, predict
    from ..errors import CnnzooError

    more, images = split_sources(args.images)
    if not images:
        raise CnnzooError(f"no image given after the model(s) {', '.join([args.source, *more])}; add image files, "
                          f"folders or globs")
    from ..analysis.budget import check_inference

    src = load_ensemble([args.source, *more], args.weights)
    m = src.meta
    check_inference(m.model, (m.in_chans, m.input_size, m.input_size), args.batch_size, in_chans=m.in_chans,
                    num_classes=m.num_classes)
    r = predict(src, images, top_k=args.top_k, backend=args.backend,
                batch_size=args.batch_size, tta=args.tta)
    if args.json:
        print(json.dumps(r.to_dict(), indent=1))
    else:
        views = f"; softmax averaged over --tta {r.tta} views" if r.tta else ""
        print(f"{r.model} from {r.source}; backend {r.backend} ({r.backend_reason}){views}", file=sys.stderr)
        print(format_predictions(r))
        for f in r.failures:
            print(f"cnnzoo: cannot read {f.input}: {f.error}", file=sys.stderr)
    return 1 if r.failures else 0


def _run_serve(args) -> int:
    from ..deploy.backends import format_selection
    from ..deploy.predict import Predictor
    from ..deploy.serve import ServeConfig, bind, create_app, is_loopback, run_server

    cfg = ServeConfig(host=args.host, port=args.port, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                      max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=int(args.max_megapixels * 1e6))
    print(f"loading {' + '.join(args.source)} and choosing a backend...", file=sys.stderr, flush=True)
    from ..deploy.ensemble import load_ensemble

    pred = Predictor(load_ensemble(args.source, args.weights), args.backend, batch_size=cfg.max_batch)
    if pred.measured:
        print(format_selection(pred), file=sys.stderr)
    else:
        print(f"backend: {pred.backend.name} ({pred.reason})", file=sys.stderr)
    if not is_loopback(cfg.host):
        print(f"cnnzoo: warning: serving on {cfg.host}: anyone who can reach this machine can use the model",
              file=sys.stderr)
    sock = bind(cfg)  # before "serving on": a taken port fails here, and port 0 becomes a real one
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    port = sock.getsockname()[1]
    print(f"serving {pred.meta.model} on http://{host}:{port}/ (Ctrl-C stops)", file=sys.stderr, flush=True)
    run_server(create_app(pred, cfg), cfg, sock)
    return 0


