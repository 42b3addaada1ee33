"""A trivially learnable image folder: a white square or a plus sign on grey noise (issue #14's case).

`make_shapes(root, n, size)` writes n PNGs (half per class) under root/square and root/plus, each shape
of random size and position on uniform noise, seeded, so every run of a benchmark sees the same files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("square", "plus")


def _draw(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    img = rng.integers(64, 192, (size, size, 3), dtype=np.uint8)
    side = int(rng.integers(size // 4, size // 2))
    top, left = (int(v) for v in rng.integers(0, size - side, 2))
    if kind == "square":
        img[top:top + side, left:left + side] = 255
    else:
        bar = max(2, side // 5)
        mid = side // 2 - bar // 2
        img[top + mid:top + mid + bar, left:left + side] = 255
        img[top:top + side, left + mid:left + mid + bar] = 255
    return img


def make_shapes(root: str | Path, n: int = 320, size: int = 128, seed: int = 0) -> Path:
    """Write the folder once (skipped when it is already complete); return its path."""
    root = Path(root)
    if len(list(root.glob("*/*.png"))) == n:
        return root
    rng = np.random.default_rng(seed)
    for i in range(n):
        kind = CLASSES[i % 2]
        (root / kind).mkdir(parents=True, exist_ok=True)
        Image.fromarray(_draw(rng, kind, size)).save(root / kind / f"{i:04d}.png")
    return root
