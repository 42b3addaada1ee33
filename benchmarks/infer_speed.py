"""CPU inference speed of cnnzoo's deployment backends against torchvision's eager model, in the same run.

    .venv/bin/python benchmarks/infer_speed.py [--models resnet50 mobilenet_v2] [--batches 1 32] [--threads 1]

For each model and batch size, every variant runs on the same input, interleaved (A B C ... then
... C B A, alternating, so that drift on a shared machine hits all alike); the speed-up of a variant is
the median over rounds of (torchvision time / variant time) within the round. Variants:
torchvision eager (the baseline), cnnzoo eager (the same weights, loaded from torchvision's
state_dict), onnxruntime (fp32), bf16 autocast + channels_last, torch.compile (Inductor), and int8
(onnxruntime static quantisation calibrated on the user's data).

Top-1 agreement with fp32 needs a model whose answers mean something, and no pretrained weights can be
downloaded here. So each model is first trained on the user's data (`cnnzoo.train` on scikit-learn's
digits, RGB, at 32 or 64 px: 224 px training is out of reach of a 2-core CPU), and agreement and accuracy
are measured where the model works, on the test split at that size, with every variant built (exported,
quantised, compiled) at that size. Speed is measured at 224 px with the same weights, the variants built
again at 224 (int8 calibrated on the same training images, resized): the weights do not change the
arithmetic's cost. `auto` is the rule `predict` and `serve` follow (`cnnzoo.deploy.backends.
select_backend`): the fastest of cnnzoo's eager, onnxruntime, bf16 and int8 whose top-1 agrees with fp32
on >= 99% of the images.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import os
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

from cnnzoo.deploy.backends import OrtBackend, TorchBackend, bf16_supported, quantize_int8
from cnnzoo.deploy.export import to_onnx, trace
from cnnzoo.deploy.meta import ModelMeta
from cnnzoo.train import load_checkpoint

OFF_THE_SHELF = ("onnxruntime", "bf16 + channels_last", "torch.compile")
MIN_TOP1 = 0.9  # the trained model must have learned digits before its variants are compared
AUTO = {"cnnzoo eager": "eager", "onnxruntime": "onnxruntime", "bf16 + channels_last": "bf16", "int8": "int8"}


def trained(name: str, runs: Path, size: int, epochs: int, threads: int):
    """(torchvision model, cnnzoo model, meta) trained on digits; a run `runs/NAME-digits-*` is reused."""
    from cnnzoo.train import train

    done = sorted(p for p in runs.glob(f"{name}-digits-*") if (p / "checkpoints" / "best.pt").is_file())
    run = done[0] if done else runs / f"{name}-digits-{size}"
    if not done:
        with contextlib.redirect_stdout(None):
            train(model=name, data="digits", out=str(run), epochs=epochs, input_size=size, in_chans=3, seed=0,
                  progress=False, tensorboard=False, threads=threads, workers=0)
    ours, info = load_checkpoint(run)
    top1 = info["history"][-1].get("val_top1") if info["history"] else None
    if top1 is None or top1 < MIN_TOP1:  # agreement on an untrained model would mean nothing
        raise SystemExit(f"{name} did not learn digits (validation top-1 {top1}); agreement would be "
                         f"measured on noise, so the benchmark stops. Remove {run} and train longer.")
    tv = getattr(torchvision.models, name)(weights=None, num_classes=10)
    tv.load_state_dict(ours.state_dict(), strict=True)
    return tv.eval(), ours.eval(), ModelMeta.from_info(info)


def images(meta: ModelMeta, split: str, n: int) -> tuple[torch.Tensor, np.ndarray]:
    """`n` images of the run's data set (evenly spaced over `split`), preprocessed for `meta`, and their labels."""
    from cnnzoo.data import ImageDataset, load_data
    from cnnzoo.deploy.images import Preprocess

    part = load_data(meta.data, **meta.split).splits[split]
    ds = ImageDataset(part, Preprocess(meta).transform, in_chans=meta.in_chans)
    idx = np.linspace(0, len(ds) - 1, min(n, len(ds))).round().astype(int)
    return torch.stack([ds[i][0] for i in idx]), np.array([part.labels[i] for i in idx])


def build_variants(tv, ours, meta: ModelMeta, calib: torch.Tensor, threads: int, compile_: bool):
    """Every variant at `meta.input_size`; also the seconds the ONNX export and the quantisation took."""
    t = time.perf_counter()
    x = torch.randn(2, meta.in_chans, meta.input_size, meta.input_size)
    fp32 = to_onnx(trace(ours, x, dynamic_batch=True), meta).SerializeToString()
    export_s = time.perf_counter() - t
    t = time.perf_counter()
    int8 = quantize_int8(fp32, calib)
    quant_s = time.perf_counter() - t
    variants = {"torchvision eager": TorchBackend(tv), "cnnzoo eager": TorchBackend(ours),
                "onnxruntime": OrtBackend(fp32, threads=threads), "bf16 + channels_last": TorchBackend(ours, bf16=True),
                "int8": OrtBackend(int8, name="int8", threads=threads)}
    if compile_:
        variants["torch.compile"] = TorchBackend(ours, compile=True)
    return variants, {"onnx export": export_s, "int8 quantisation": quant_s}


def agreement(variants, x: torch.Tensor, y: np.ndarray) -> dict[str, tuple[float, float]]:
    """(top-1 agreement with cnnzoo fp32, accuracy) of every variant on the images `x` with labels `y`."""
    ref = np.concatenate([variants["cnnzoo eager"](c) for c in x.split(32)]).argmax(1)
    out = {}
    for name, b in variants.items():
        pred = ref if name == "cnnzoo eager" else np.concatenate([b(c) for c in x.split(32)]).argmax(1)
        out[name] = (float((pred == ref).mean()), float((pred == y).mean()))
    return out


def time_variants(variants, x: torch.Tensor, rounds: int) -> dict[str, dict[str, float]]:
    """Median ms per batch and median per-round speed-up over torchvision, variants interleaved."""
    compile_s = {}
    for name, b in variants.items():
        t = time.perf_counter()
        b(x)  # warm-up (and compilation)
        if name == "torch.compile":
            b(x)
            compile_s[name] = time.perf_counter() - t
    names = list(variants)
    times = {n: [] for n in names}
    for r in range(rounds):
        for n in (names if r % 2 == 0 else names[::-1]):
            t = time.perf_counter()
            variants[n](x)
            times[n].append(time.perf_counter() - t)
    base = np.array(times["torchvision eager"])
    return {n: {"ms": 1000 * float(np.median(v)), "speedup": float(np.median(base / np.array(v))),
                "img_s": len(x) / float(np.median(v))} for n, v in times.items()} | {"_compile_s": compile_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet50", "mobilenet_v2"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    ap.add_argument("--size", type=int, default=224, help="input size of the timing")
    ap.add_argument("--train-size", type=int, default=64, help="input size of training and agreement")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--runs", default="runs/infer_speed", help="where the digits runs are kept (reused)")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads for torch and onnxruntime alike")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calib", type=int, default=64, help="training images that calibrate int8")
    ap.add_argument("--probe", type=int, default=359, help="test images for agreement and accuracy")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (minutes of compilation)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# infer_speed {datetime.date.today()}: torch {torch.__version__}, {args.threads} thread(s), "
          f"bf16 native: {bf16_supported()}, load average {os.getloadavg()[0]:.1f}")
    for name in args.models:
        t0 = time.perf_counter()
        tv, ours, meta = trained(name, Path(args.runs), args.train_size, args.epochs, args.threads)
        x, y = images(meta, "test", args.probe)
        calib = images(meta, "train", args.calib)[0]
        variants, setup = build_variants(tv, ours, meta, calib, args.threads, not args.no_compile)
        agree = agreement(variants, x, y)
        big = dataclasses.replace(meta, input_size=args.size)
        variants, setup224 = build_variants(tv, ours, big, images(big, "train", args.calib)[0], args.threads,
                                            not args.no_compile)
        probe = images(big, "test", max(args.batches))[0]
        print(f"\n## {name}: trained on digits at {meta.input_size} px, test top-1 {100 * agree['cnnzoo eager'][1]:.1f}% "
              f"({len(y)} test images: agreement and accuracy below); timed at {args.size} px; "
              f"setup at {args.size} px: onnx export {setup224['onnx export']:.0f} s, "
              f"int8 quantisation {setup224['int8 quantisation']:.0f} s")
        for batch in args.batches:
            t = time_variants(variants, probe[torch.arange(batch) % len(probe)], args.rounds)
            compile_s = t.pop("_compile_s")
            ok = {k: v for k, v in AUTO.items() if agree[k][0] >= 0.99}
            auto = min(ok, key=lambda k: t[k]["ms"])
            shelf = max((k for k in OFF_THE_SHELF if k in t), key=lambda k: t[k]["speedup"])
            print(f"\n{name}, batch {batch}, {args.size} px (load average {os.getloadavg()[0]:.1f})\n")
            print("| variant | ms/batch | img/s | x torchvision | top-1 agreement | accuracy |")
            print("|---|--:|--:|--:|--:|--:|")
            for k, v in t.items():
                mark = " **(auto)**" if k == auto else ""
                print(f"| {k}{mark} | {v['ms']:.1f} | {v['img_s']:.1f} | {v['speedup']:.2f} | "
                      f"{100 * agree[k][0]:.1f}% | {100 * agree[k][1]:.1f}% |")
            print(f"\nauto: {AUTO[auto]} at {t[auto]['speedup']:.2f}x torchvision; fastest off-the-shelf: {shelf} "
                  f"at {t[shelf]['speedup']:.2f}x (auto / it = {t[auto]['speedup'] / t[shelf]['speedup']:.2f})"
                  + (f"; torch.compile compiled in {compile_s['torch.compile']:.0f} s" if compile_s else ""))
        print(f"\n{name}: {time.perf_counter() - t0:.0f} s in all", flush=True)


if __name__ == "__main__":
    main()
