"""cnnzoo explain, filters, activations: what a trained network looks at (Zeiler & Fergus; Grad-CAM)."""
from __future__ import annotations

from .args import existing, output_dir, output_file, positive_int

METHODS = ("gradcam", "occlusion", "saliency", "integrated_gradients")  # explain.METHODS, not imported here
SOURCE = "RUN|CHECKPOINT|MODEL"
WEIGHTS = "with a model name as SOURCE: its weights (imagenet[:TAG], torchvision .pth, safetensors, URL)"


def add(sub) -> None:
    p = sub.add_parser("explain", help="heat maps of what a model looked at (Grad-CAM, occlusion, ...) as PNGs")
    p.add_argument("source", metavar=SOURCE)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, folders or globs")
    p.add_argument("--weights", help=WEIGHTS)
    p.add_argument("--method", nargs="+", default=["gradcam"], metavar="M",
                   help=f"one or more of {', '.join(METHODS)} (default gradcam)")
    p.add_argument("--target", metavar="CLASS", help="class name or index to explain (default: the predicted one)")
    p.add_argument("--layer", help="Grad-CAM's layer, any name `cnnzoo layers MODEL` prints (default: the "
                                   "family's last convolutional stage)")
    p.add_argument("--out", required=True, type=output_dir, metavar="DIR",
                   help="folder for IMAGE-METHOD.png (and index.html)")
    p.set_defaults(run=_run_explain)

    p = sub.add_parser("filters", help="the first convolution's filters as a picture grid (ZFNet Fig. 2)")
    p.add_argument("source", metavar=SOURCE)
    p.add_argument("--weights", help=WEIGHTS)
    p.add_argument("--out", required=True, type=output_file, metavar="F.png")
    p.set_defaults(run=_run_filters)

    p = sub.add_parser("activations", help="a layer's strongest channels for one image, as a picture grid")
    p.add_argument("source", metavar=SOURCE)
    p.add_argument("image", metavar="IMAGE", type=existing)
    p.add_argument("--weights", help=WEIGHTS)
    p.add_argument("--layer", required=True, help="any name `cnnzoo layers MODEL` prints that has a map")
    p.add_argument("--strongest", type=positive_int, default=16, help="how many channels (default 16)")
    p.add_argument("--out", required=True, type=output_file, metavar="F.png")
    p.set_defaults(run=_run_activations)


def _run_explain(args) -> int:
    from ..explain import explain_images

    explain_images(args.source, args.images, args.out, methods=args.method, weights=args.weights,
                   target=args.target, layer=args.layer)
    return 0


def _run_filters(args) -> int:
    from ..explain import filters

    print(f"wrote {filters(args.source, args.out, weights=args.weights)}")
    return 0


def _run_activations(args) -> int:
    from ..explain import activations

    print(f"wrote {activations(args.source, args.image, args.layer, args.out, weights=args.weights, strongest=args.strongest)}")
    return 0
