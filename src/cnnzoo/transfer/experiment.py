"""The transfer experiment: pretrain on one task, transfer to another with a few labels, against scratch.

Real data, scikit-learn's handwritten digits: a network is trained on digits 0-4 (all of their
training images), then used for digits 5-9 with only `shots` labelled images per class, in the
lecture's three ways, against the same network trained from scratch on those images with the same
budget (the same epochs, batches, optimizer and schedule as `linear` and `finetune`). Each mode runs
over several seeds; a seed draws both the few training images and the initialisation of the new
layers, so the spread over seeds is the spread a user would see. Every run is tested on all test
images of digits 5-9 (the test split never moves with the seed).

    from cnnzoo.transfer.experiment import digits_experiment, format_table
    result = digits_experiment("resnet18", shots=(5,), seeds=(0, 1, 2), out="runs/transfer-digits")
    print(format_table(result))
"""
from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any, Callable

from .run import transfer

# arm -> (transfer mode, extra settings); None is `pixels_baseline`, logistic regression on the raw pixels
# (no network at all). Scratch is finetune without weights: every layer at the same rate.
ARMS: dict[str, tuple[str, dict[str, Any]] | None] = {
    "scratch": ("finetune", {"weights": None}),
    "pixels": None,
    "features": ("features", {"layer": "pool"}),
    "linear": ("linear", {}),
    "finetune": ("finetune", {"backbone_lr": 0.1}),
}


def digits_experiment(model: str = "resnet18", *, shots: tuple[int, ...] = (5,), seeds: tuple[int, ...] = (0, 1, 2),
                      pretrain_epochs: int = 15, epochs: int = 30, arms: dict | None = None,
                      out: str | Path = "runs/transfer-digits", source: str = "0-4", target: str = "5-9",
                      pretrain_settings: dict[str, Any] | None = None, log: Callable[[str], None] = print,
                      start: str | None = None, **settings: Any) -> dict[str, Any]:
    """Pretrain `model` on digits `source`, then run every arm on `target` for each shot count and seed.

    `arms` maps a name to (mode, settings) as `ARMS` does. `settings` go to every run, pretraining
    included (`input_size`, `threads`, `batch_size`, `lr`, `precision`, ...), and `pretrain_settings`
    to pretraining only. The pretraining run is reused when `out/pretrain` already holds one. `start`
    (e.g. "imagenet") transfers from those weights instead, with no pretraining on digits.
    """
    out, arms = Path(out), arms or ARMS
    pre = out / "pretrain"
    common = {"model": model, "data": "digits", "quiet": True, **settings}
    pretrain: dict[str, Any] = {}
    if start is None:
        if not (pre / "results.json").is_file():
            log(f"pretraining {model} on digits {source} for {pretrain_epochs} epochs -> {pre}")
            transfer("finetune", classes=source, epochs=pretrain_epochs, out=str(pre), seed=0,
                     **common | (pretrain_settings or {}))
        pretrain = json.loads((pre / "results.json").read_text())
        log(f"  digits {source}: test top-1 {100 * pretrain['test_top1']:.2f}% ({pretrain['seconds']:.0f} s)")
    weights = start or str(pre)
    rows = []
    for k in shots:
        for seed in seeds:
            for arm, spec in arms.items():
                if spec is None:
                    row = pixels_baseline(target, k, seed)
                else:
                    mode, extra = spec
                    folder = out / f"{k}-shot" / f"{re.sub(r'[^A-Za-z0-9.]+', '-', arm).strip('-')}-seed{seed}"
                    if (folder / "results.json").is_file():  # done by an earlier call: reuse it
                        r = json.loads((folder / "results.json").read_text())
                    else:
                        r = transfer(mode, classes=target, shots=k, seed=seed, epochs=epochs, out=str(folder),
                                     **common | {"weights": weights} | extra)
                    row = {"top1": r["test_top1"], "top5": r["test_top5"], "seconds": r["seconds"]}
                rows.append({"shots": k, "arm": arm, "seed": seed, "top1": row["top1"], "top5": row["top5"],
                             "seconds": row["seconds"]})
                log(f"  {k}-shot  {arm}  seed {seed}: test top-1 {100 * row['top1']:.2f}%  ({row['seconds']:.1f} s)")
    return {"model": model, "source": start or source, "target": target, "pretrain_epochs": pretrain_epochs,
            "pretrain": {k: pretrain.get(k) for k in ("test_top1", "best_val_top1", "seconds")}, "epochs": epochs,
            "seeds": list(seeds), "rows": rows, "settings": settings}


def quick_experiment(out: str | Path = "runs/tour/transfer", log: Callable[[str], None] = print,
                     start: str | None = None) -> dict[str, Any]:
    """The experiment at tour size (about 30 s on 2 cores): ResNet-18 pretrained on digits 0-4 for 3 epochs
    (or `start`'s weights, e.g. "imagenet"), then one labelled image per class of digits 5-9, 20 epochs of one
    batch, one seed."""
    arms = {"scratch": ARMS["scratch"], "features (layer3)": ("features", {"layer": "layer3"}),
            "linear": ARMS["linear"], "finetune (frozen BN)": ("finetune", {"backbone_lr": 1.0, "freeze_bn": True})}
    return digits_experiment("resnet18", shots=(1,), seeds=(0,), pretrain_epochs=3, epochs=20, arms=arms, out=out,
                             pretrain_settings={"batch_size": 16, "lr": 0.0125}, batch_size=5, opt="sgd", lr=0.05 * 5 / 64,
                             input_size=32, threads=1, precision="fp32", log=log, start=start)


def pixels_baseline(target: str, shots: int, seed: int) -> dict[str, Any]:
    """No network at all: logistic regression on the 64 raw pixels of the same few images (a reference)."""
    import time

    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ..data import load_data
    from ..train.metrics import topk_correct
    from .data import select

    t0 = time.perf_counter()
    src = select(load_data("digits"), target, shots, seed=seed)
    train, test = src.splits["train"], src.splits["test"]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=seed))
    clf.fit(train.images.flatten(1).numpy(), np.asarray(train.labels))
    scores = torch.from_numpy(clf.predict_log_proba(test.images.flatten(1).numpy()))
    top1, top5 = topk_correct(scores, torch.tensor(test.labels))
    n = len(test.labels)
    return {"top1": top1 / n, "top5": top5 / n, "seconds": round(time.perf_counter() - t0, 2)}


def summarize(result: dict[str, Any]) -> dict[tuple[int, str], tuple[float, float, list[float]]]:
    """(shots, arm) -> (mean top-1, standard deviation over seeds, the per-seed top-1s)."""
    groups: dict[tuple[int, str], list[float]] = {}
    for r in result["rows"]:
        groups.setdefault((r["shots"], r["arm"]), []).append(r["top1"])
    return {key: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0, v) for key, v in groups.items()}


def format_table(result: dict[str, Any]) -> str:
    """A Markdown table: a row per arm, a column per shot count; test top-1 as mean ± std over the seeds."""
    stats = summarize(result)
    shots = sorted({k for k, _ in stats})
    arms = list(dict.fromkeys(arm for _, arm in stats))
    n = len(result["seeds"])
    lines = ["| mode | " + " | ".join(f"{k} image{'s' if k > 1 else ''} per class" for k in shots) + " |",
             "|---|" + "---:|" * len(shots)]
    for arm in arms:
        cells = [f"{100 * stats[k, arm][0]:.1f} ± {100 * stats[k, arm][1]:.1f}" if (k, arm) in stats else "-"
                 for k in shots]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines.append(f"\ntest top-1 (%) on all {result.get('test_images', 179)} test images of digits {result['target']}, "
                 f"mean ± standard deviation over {n} seed{'s' if n > 1 else ''}")
    return "\n".join(lines)
