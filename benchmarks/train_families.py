"""Do the defaults train? One model per family, `cnnzoo.train` defaults, fixed short budgets (issue #14).

    .venv/bin/python benchmarks/train_families.py [--models resnet50 zfnet] [--data digits shapes] [--write]

Data: scikit-learn's digits at 64 px, and a folder of PNGs at 128 px (a white square or a plus sign on
grey noise; benchmarks/shapes_data.py writes it). Per row: the final eval-mode validation top-1 (the
figure checkpoints and inference use), the same weights with batch statistics (model.train(): what the
network computes without running statistics), whether any epoch diverged (a non-finite training or
validation loss), and the epochs after the first whose training loss rose above chance (ln of the
classes: a sign of a rate near the edge, shown, not failed, when the run recovers). A row learns when eval
mode reaches 90%, is no more than 2 points below batch statistics, and nothing diverged; any other row is
named, and the exit status is 1.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from results import put_subsection  # noqa: E402
from shapes_data import make_shapes  # noqa: E402

from cnnzoo.data import ImageDataset, collate, eval_transform, load_data  # noqa: E402
from cnnzoo.errors import CnnzooError  # noqa: E402
from cnnzoo.train import load_checkpoint, train  # noqa: E402

FAMILIES = ("alexnet", "vgg11_bn", "googlenet", "resnet50", "densenet121", "mobilenet_v2", "shufflenet_v2_x1_0",
            "seresnet50", "zfnet")
# data -> (input size, epochs, batch size): fixed short budgets, the same for every family
BUDGETS = {"digits": (64, 6, 64), "shapes": (128, 8, 32)}
MIN_TOP1, MAX_GAP = 0.90, 0.02
# Issue #14's folder had 320 images; with 256 to train on, no flips and no zoom, resnet50 and mobilenet_v2 reach
# the training loss's floor and 81-91% on its 32 validation images (overfitting, not a training failure).
SHAPES_IMAGES = 640


@torch.no_grad()
def accuracy(model, info, spec: str, batch_stats: bool) -> float:
    """Validation top-1 of `model` in eval mode, or with each batch's own statistics (BN in train mode)."""
    source = load_data(spec)
    tf = eval_transform(info["input_size"], info["mean"], info["std"], in_chans=info["in_chans"],
                        crop_pct=info["crop_pct"])
    loader = torch.utils.data.DataLoader(ImageDataset(source.splits["val"], tf, in_chans=info["in_chans"]),
                                         batch_size=64, collate_fn=collate)
    model.eval()
    if batch_stats:  # BN layers only: dropout stays off
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    right = n = 0
    for x, y, _ in loader:
        out = model(x)
        right += int((getattr(out, "logits", out).argmax(1) == y).sum())
        n += len(y)
    model.load_state_dict(state)  # batch-stats passes update the running statistics: undo
    return right / n


def run_row(name: str, data: str, spec: str, tmp: Path, seed: int = 0) -> dict:
    size, epochs, batch = BUDGETS[data]
    out = tmp / f"{name}-{data}"
    # The shapes reach the images' borders: no zoomed crops in training (issue #14's command) and no centre crop in
    # evaluation, which would cut them (alexnet: 72% with crop 0.875, 100% without). Flips stay on, the folder's
    # default: a square and a plus are their own mirror images
    extra = {"scale_min": 1.0, "crop_pct": 1.0} if data == "shapes" else {}
    t0 = time.perf_counter()
    error = None
    try:
        with contextlib.redirect_stdout(None):
            train(model=name, data=spec, out=str(out), epochs=epochs, input_size=size, batch_size=batch, seed=seed,
                  progress=False, tensorboard=False, **extra)
    except CnnzooError as exc:
        error = str(exc)
    row = {"model": name, "data": f"{data} {size} px, {epochs} ep", "seconds": time.perf_counter() - t0}
    if error:
        return row | {"eval": float("nan"), "batch": float("nan"), "diverged": True, "above": "", "note": error[:80]}
    model, info = load_checkpoint(out, which="last")
    chance = math.log(info["num_classes"])
    hist = info["history"]
    diverged = any(not math.isfinite(h["train_loss"])
                   or (h["val_loss"] is not None and not math.isfinite(h["val_loss"])) for h in hist)
    above = ", ".join(f"epoch {h['epoch']}: {h['train_loss']:.2f}" for h in hist
                      if h["epoch"] > 1 and h["train_loss"] > chance)
    row |= {"eval": accuracy(model, info, spec, False), "batch": accuracy(model, info, spec, True),
            "diverged": diverged, "above": above or "none", "chance": chance, "note": ""}
    return row


def learned(r: dict) -> bool:
    # Eval mode is what checkpoints and inference give; batch statistics (here of one validation batch, a noisier
    # estimate than precise BN's) are the yardstick that eval mode must not fall more than 2 points below.
    return r["eval"] >= MIN_TOP1 and r["batch"] - r["eval"] <= MAX_GAP and not r["diverged"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(FAMILIES))
    ap.add_argument("--data", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    ap.add_argument("--shapes-images", type=int, default=SHAPES_IMAGES, help=f"images in the shapes folder "
                    f"(default {SHAPES_IMAGES}: 80%% train, 10%% validation)")
    ap.add_argument("--seed", type=int, default=0, help="the runs' seed (weights, data order, augmentation)")
    ap.add_argument("--write", action="store_true", help="put the table into benchmarks/RESULTS.md")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="families-"))
    specs = {"digits": "digits", "shapes": str(make_shapes(tmp / "shapes", n=args.shapes_images, size=128))}
    lines = ["| model | data, budget | eval-mode top-1 | batch-stats top-1 | diverged | training loss above chance "
             "after epoch 1 | learned | s |", "|---|---|--:|--:|---|---|---|--:|"]
    print("\n".join(lines), flush=True)
    failed = []
    for data in args.data:
        for name in args.models:
            r = run_row(name, data, specs[data], tmp, args.seed)
            ok = learned(r)
            failed += [] if ok else [f"{name} on {data}"]
            line = (f"| {name} | {r['data']} | {100 * r['eval']:.1f}% | {100 * r['batch']:.1f}% | "
                    f"{'yes' if r['diverged'] else 'no'} | {r['above']} | {'yes' if ok else 'NO ' + r['note']} | "
                    f"{r['seconds']:.0f} |")
            lines.append(line)
            print(line, flush=True)
    if args.write:
        block = (f"### Defaults that train, one model per family ({datetime.date.today()})\n\n"
                 f"`benchmarks/train_families.py`, a shared, noisy 2-core CPU; validation split; default settings "
                 f"(precise BN, zero-initialised residual branches, bf16 where the CPU has it).\n\n" + "\n".join(lines))
        put_subsection(Path(__file__).with_name("RESULTS.md"), "## Training: defaults that train", block,
                       "### Defaults that train")
    if failed:
        print(f"did not learn: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
