"""Helpers of the deploy tests: a real trained run (made once per test session) and digit PNGs.

The run: `cnnzoo.train` on scikit-learn's digits; resnet18 at 32 px for 3 epochs reaches about 94% test top-1 in about 10 s on one core, so predictions
have real margins (random weights would make every backend comparison meaningless). Under pytest-xdist
the workers share one run: the first to take the lock trains, the others wait and reuse it.
"""
from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

MODEL, EPOCHS = "resnet18", 3
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # a server per test worker: two threads each would oversubscribe 2 cores


def shared_run(tmp_path_factory) -> Path:
    """The session's digits run folder (trained on first use)."""
    from cnnzoo.train import train

    root = tmp_path_factory.getbasetemp()
    root = root.parent if root.name.startswith("popen-gw") else root  # shared by the xdist workers
    folder = root / f"deploy-digits-{MODEL}"
    with open(root / "deploy-digits.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "checkpoints" / "best.pt").is_file():
            with contextlib.redirect_stdout(None):
                train(model=MODEL, data="digits", out=str(folder), epochs=EPOCHS, seed=0, progress=False,
                      tensorboard=False, threads=1, workers=0)
    return folder


def write_digit_pngs(folder: Path, n: int = 10, start: int = 1700) -> list[tuple[Path, int]]:
    """`n` real digits as 8x8 grey PNGs, ink bright as the trainer sees them; (path, true label) pairs."""
    d = load_digits()
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + n):
        path = folder / f"digit{i}_{d.target[i]}.png"
        Image.fromarray(np.round(d.images[i] * 255 / 16).astype(np.uint8), mode="L").save(path)
        out.append((path, int(d.target[i])))
    return out
