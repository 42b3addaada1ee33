"""Does the input pipeline keep up with the model, and are the epochs steady? (issue #14)

    .venv/bin/python benchmarks/input_pipeline.py [--rounds 3] [--write]

A folder of image files (half PNG, half JPEG, 160 px: shapes on noise, benchmarks/shapes_data.py), read
by `cnnzoo train`'s own loader (`cnnzoo.train.prepare.build_loaders`) with the default worker count.
For resnet18 at 64 px and resnet50 at 128 px, with the default precision, rounds interleaved:

- consumed: the images/s the training step takes, from in-memory tensors (`cnnzoo.train.train` on
  `synthetic:` data of the same size: no decoding at all), in its second epoch;
- delivered: the images/s the train loader yields in its second epoch (decode, random-resized crop, flip,
  normalise, collate), iterated alone with the compute threads a run would use;
- delivered / consumed, the median of the per-round ratios: the target is >= 2;
- steadiness: one `cnnzoo train` run on the folder, every epoch's seconds, max / median:
  the target is <= 1.5.
A run whose model did not learn the folder (final validation top-1 under 90%) is named, and the exit
status is 1: its timings would describe a broken run.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from results import put_subsection  # noqa: E402
from shapes_data import make_shapes  # noqa: E402

from cnnzoo.data import load_data  # noqa: E402
from cnnzoo.train import build_config, read_metrics, train  # noqa: E402
from cnnzoo.train.distributed import DistEnv  # noqa: E402
from cnnzoo.train.prepare import build_loaders, default_threads, resolve  # noqa: E402

CASES = (("resnet18", 64, 64), ("resnet50", 128, 32))  # model, input size, batch
MIN_RATIO, MAX_SWING, MIN_TOP1 = 2.0, 1.5, 0.90


def make_folder(root: Path, n: int) -> Path:
    """The shapes folder with every other image re-saved as JPEG (quality 90), so both decoders are timed."""
    make_shapes(root, n=n, size=160)
    for i, png in enumerate(sorted(root.glob("*/*.png"))):
        if i % 2:
            Image.open(png).convert("RGB").save(png.with_suffix(".jpg"), quality=90)
            png.unlink()
    return root


def delivered(model: str, folder: Path, size: int, batch: int) -> tuple[float, int]:
    """Images/s of one epoch of the default train loader, alone; and its worker count."""
    source = load_data(str(folder))
    env = DistEnv(0, 1, 0, 1, torch.device("cpu"))
    cfg = resolve(build_config(model=model, data=str(folder), input_size=size, batch_size=batch,
                               out=str(folder.parent / "unused")), source, env.device)
    torch.set_num_threads(default_threads(env))
    loader = build_loaders(cfg, source, env)["train"]
    for epoch in range(2):  # the first starts the persistent workers; the second is timed, as a run's later epochs
        loader.sampler.set_epoch(epoch)
        t0, n = time.perf_counter(), 0
        for x, _, _ in loader:
            n += len(x)
        seconds = time.perf_counter() - t0
    workers = loader.num_workers
    del loader  # persistent workers end here
    return n / seconds, workers


def consumed(model: str, size: int, batch: int, tmp: Path, tag: str) -> float:
    """Images/s of cnnzoo's training phase on in-memory tensors of the same size (no decoding)."""
    out = tmp / f"synthetic-{tag}"
    with contextlib.redirect_stdout(None):
        train(model=model, data=f"synthetic:n={10 * batch},size={size},classes=2", epochs=2, batch_size=batch,
              input_size=size, out=str(out), progress=False, tensorboard=False, precise_bn=0)
    return read_metrics(out)[-1]["images_per_s"]  # the second epoch: the first builds oneDNN's kernels


def steady(model: str, folder: Path, size: int, batch: int, epochs: int, tmp: Path) -> tuple[list[float], float]:
    """Seconds of every epoch (training, precise BN, validation: all read the folder) of a default run on the
    folder, and its final validation top-1."""
    out = tmp / f"steady-{model}"
    with contextlib.redirect_stdout(None):
        train(model=model, data=str(folder), epochs=epochs, input_size=size, batch_size=batch, out=str(out),
              progress=False, tensorboard=False, hflip=False, scale_min=1.0)
    rows = read_metrics(out)
    return [r["seconds"] for r in rows], rows[-1]["val_top1"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--images", type=int, default=512, help="images in the folder (default 512)")
    ap.add_argument("--epochs", type=int, default=6, help="epochs of the steadiness run (default 6)")
    ap.add_argument("--models", nargs="+", default=[c[0] for c in CASES], choices=[c[0] for c in CASES])
    ap.add_argument("--write", action="store_true", help="put the tables into benchmarks/RESULTS.md")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pipeline-"))
    folder = make_folder(tmp / "shapes", args.images)
    cases = [c for c in CASES if c[0] in args.models]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{cores} cores, load average {os.getloadavg()[0]:.1f}; folder {folder} ({args.images} files)", flush=True)

    got: dict[str, dict[str, list[float]]] = {m: {"delivered": [], "consumed": []} for m, _, _ in cases}
    workers = {}
    for r in range(args.rounds):  # A B A B ...: a slow minute of the shared machine hits both alike
        for model, size, batch in cases:
            d, workers[model] = delivered(model, folder, size, batch)
            c = consumed(model, size, batch, tmp, f"{model}-{r}")
            got[model]["delivered"].append(d)
            got[model]["consumed"].append(c)
            print(f"round {r + 1}  {model} at {size} px: loader {d:7.1f} img/s ({workers[model]} workers), "
                  f"model {c:6.1f} img/s", flush=True)

    lines = ["| model, input | loader workers | delivered img/s | consumed img/s | delivered / consumed |",
             "|---|--:|--:|--:|--:|"]
    failed = []
    for model, size, _ in cases:
        g = got[model]
        ratio = statistics.median(d / c for d, c in zip(g["delivered"], g["consumed"]))
        failed += [] if ratio >= MIN_RATIO else [f"{model}: the loader delivers only {ratio:.2f}x"]
        lines.append(f"| {model}, {size} px | {workers[model]} | {statistics.median(g['delivered']):.0f} | "
                     f"{statistics.median(g['consumed']):.1f} | **{ratio:.1f}x** |")

    lines += ["", "| model, input | seconds per epoch | max / median | final val top-1 |",
              "|---|---|--:|--:|"]
    for model, size, batch in cases:
        seconds, top1 = steady(model, folder, size, batch, args.epochs, tmp)
        swing = max(seconds) / statistics.median(seconds)
        if top1 < MIN_TOP1:
            failed.append(f"{model} did not learn the folder ({100 * top1:.1f}%): its timings describe a broken run")
        elif swing > MAX_SWING:
            failed.append(f"{model}: an epoch took {swing:.2f}x the median")
        lines.append(f"| {model}, {size} px | {', '.join(f'{s:.1f}' for s in seconds)} | {swing:.2f} | "
                     f"{100 * top1:.1f}% |")
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    print(table)
    if args.write:
        block = (f"### Input pipeline from a folder ({datetime.date.today()}, `benchmarks/input_pipeline.py`)\n\n"
                 f"{cores} cores, torch {torch.__version__}, {args.images} files (half PNG, half JPEG, 160 px), "
                 f"{args.rounds} interleaved rounds, medians; default workers, threads and precision.\n\n{table}")
        put_subsection(Path(__file__).with_name("RESULTS.md"), "## Training speed", block,
                       "### Input pipeline from a folder")
    for f in failed:
        print(f"not met: {f}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
