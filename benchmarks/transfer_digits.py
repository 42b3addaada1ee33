"""The full transfer experiment behind the "Transfer learning" section of benchmarks/RESULTS.md.

ResNet-18 is trained on digits 0-4 (scikit-learn's handwritten digits, every training image), then
reused for digits 5-9 with 1, 3, 5 or 10 labelled images per class, in the lecture's three ways and
against training from scratch with the same budget (40 epochs of batches of 5, i.e. 40 x shots
optimizer steps, SGD with Nesterov momentum at 0.05 x batch / 64, one-cycle, label smoothing 0.1),
each over five seeds; logistic regression on the raw pixels is a no-network reference. Every run is
tested on all 179 test images of digits 5-9.

    .venv/bin/python benchmarks/transfer_digits.py                 # 90 minutes on a busy 2-core CPU
    .venv/bin/python benchmarks/transfer_digits.py --seeds 0 --shots 5 --out runs/quick

It prints the Markdown table that RESULTS.md quotes and writes it, with every run's numbers, to
OUT/results.json; each run's folder (config, metrics, checkpoints, log) is under OUT.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from cnnzoo.transfer.experiment import ARMS, digits_experiment, format_table

# The lecture's three modes, with the choices that matter most here made visible: which layer the
# features come from, how fast the pretrained backbone may move when fine-tuned, and whether batch norm
# re-estimates its statistics from the few new images. A rerun reuses every finished run under OUT.
BENCH_ARMS = {
    "scratch": ARMS["scratch"],
    "pixels": None,
    "features (pool)": ("features", {"layer": "pool"}),
    "features (layer3)": ("features", {"layer": "layer3"}),
    "linear": ("linear", {}),
    "finetune (backbone x0.1)": ("finetune", {"backbone_lr": 0.1}),
    "finetune (backbone x0.1, 10 head epochs)": ("finetune", {"backbone_lr": 0.1, "head_epochs": 10}),
    "finetune (backbone x1)": ("finetune", {"backbone_lr": 1.0}),
    "finetune (backbone x0.1, frozen BN)": ("finetune", {"backbone_lr": 0.1, "freeze_bn": True}),
    "finetune (backbone x1, frozen BN)": ("finetune", {"backbone_lr": 1.0, "freeze_bn": True}),
}


LR = 0.05 / 64  # per image: cnnzoo train's SGD default (0.05 at batch 64), pinned so that reruns compare


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet18")
    p.add_argument("--shots", type=int, nargs="+", default=[1, 3, 5, 10])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--pretrain-epochs", type=int, default=15)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=5)
    p.add_argument("--pretrain-batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1 is fastest on a busy 2-core machine)")
    p.add_argument("--out", default="runs/transfer-digits")
    a = p.parse_args()
    t0 = time.perf_counter()
    result = digits_experiment(a.model, shots=tuple(a.shots), seeds=tuple(a.seeds), pretrain_epochs=a.pretrain_epochs,
                               epochs=a.epochs, arms=BENCH_ARMS, out=a.out,
                               pretrain_settings={"batch_size": a.pretrain_batch_size, "lr": LR * a.pretrain_batch_size},
                               batch_size=a.batch_size, opt="sgd", lr=LR * a.batch_size, threads=a.threads, precision="fp32",
                               input_size=32)
    table = format_table(result)
    result |= {"table": table, "minutes": round((time.perf_counter() - t0) / 60, 1),
               "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
                          f"{a.threads} thread(s)"}
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "results.json").write_text(json.dumps(result, indent=1))
    print(table)
    print(f"\n{result['minutes']} minutes; pretraining: {result['pretrain']}")


if __name__ == "__main__":
    main()
