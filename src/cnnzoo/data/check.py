"""`cnnzoo data check`: look at every image before training on it.

Reports images per class and split, image sizes and modes, and finds what spoils a training run or its
test figures. Fatal (non-zero exit): unreadable or corrupt files, and exact duplicates across splits
(leakage: the same bytes in train and test inflate the test score). Warnings: duplicates inside a
split, class imbalance above `IMBALANCE` (largest / smallest train class), classes with fewer than
`FEW` training images.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import statistics
from collections import Counter, defaultdict

from .datasets import PIL_FORMATS, UNREADABLE_ERRORS, DataSource, load_data

IMBALANCE = 3.0
FEW = 5
LISTED = 10  # problems listed by name; the rest are counted


@dataclasses.dataclass
class CheckReport:
    """What `check_data` found: lines to print, and the fatal problems among them."""

    info: list[str]
    errors: list[str]
    warnings: list[str]

    @property
    def ok(self) -> bool:
        return not self.errors

    def __str__(self) -> str:
        verdict = "OK: no fatal problem" if self.ok else f"FAILED: {len(self.errors)} fatal problem(s)"
        return "\n".join(self.info + [f"warning: {w}" for w in self.warnings]
                         + [f"error: {e}" for e in self.errors] + [verdict])


@dataclasses.dataclass
class _Seen:
    split: str
    name: str
    digest: str | None = None
    size: tuple[int, int] | None = None
    mode: str | None = None
    error: str | None = None


def _inspect_file(split: str, path: str) -> _Seen:
    from PIL import Image

    from .decode import decode_image

    try:
        with open(path, "rb") as f:
            data = f.read()
        import io

        with Image.open(io.BytesIO(data), formats=PIL_FORMATS) as img:
            size, mode = img.size, img.mode
        decode_image(data, "RGB")  # decode everything as training will: truncated and corrupt files fail here
        return _Seen(split, path, hashlib.blake2b(data, digest_size=16).hexdigest(), size, mode)
    except UNREADABLE_ERRORS as exc:
        return _Seen(split, path, error=f"{type(exc).__name__}: {exc}")


def _inspect(source: DataSource) -> list[_Seen]:
    seen: list[_Seen] = []
    jobs = []
    for split, s in source.splits.items():
        if s.images is not None:
            for i, img in enumerate(s.images):
                digest = hashlib.blake2b(img.contiguous().numpy().tobytes(), digest_size=16).hexdigest()
                seen.append(_Seen(split, f"{split}[{i}]", digest, (img.shape[-1], img.shape[-2]),
                                  "L" if img.shape[0] == 1 else "RGB"))
        else:
            jobs += [(split, p) for p in s.paths]
    if jobs:
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            seen += list(pool.map(lambda job: _inspect_file(*job), jobs))
    return seen


def _listed(items: list[str]) -> str:
    more = f" (and {len(items) - LISTED} more)" if len(items) > LISTED else ""
    return "; ".join(items[:LISTED]) + more


def check_data(spec: str, *, val: float = 0.1, test: float = 0.1, split_seed: int = 0) -> CheckReport:
    """Inspect every image of the data set `spec` (a folder, CSV, `digits` or `synthetic`)."""
    source = load_data(spec, val=val, test=test, split_seed=split_seed)
    info = [f"data: {spec} ({source.kind}, {len(source.classes)} classes, splits: {', '.join(source.splits)})"]
    errors, warnings = [], []

    info.append(f"{'split':<6} {'images':>7}  per class min / median / max")
    for name, s in source.splits.items():
        counts = Counter(s.labels)
        per = [counts.get(c, 0) for c in range(len(source.classes))]
        info.append(f"{name:<6} {len(s):>7}  {min(per)} / {statistics.median(per):g} / {max(per)}")
        missing = [source.classes[c] for c, n in enumerate(per) if n == 0]
        if missing and name != "train":
            warnings.append(f"{name} has no image of class(es) {_listed(missing)}")
    train_counts = Counter(source.splits["train"].labels)
    small, large = min(train_counts.values()), max(train_counts.values())
    if large / small > IMBALANCE:
        rare = min(train_counts, key=train_counts.get)
        warnings.append(f"class imbalance: largest train class has {large / small:.1f}x the images of the smallest "
                        f"({source.classes[rare]}, {small}); consider more images or a balanced sampler")
    few = [f"{source.classes[c]} ({n})" for c, n in sorted(train_counts.items()) if n < FEW]
    if few:
        warnings.append(f"classes with fewer than {FEW} training images: {_listed(few)}")

    seen = _inspect(source)
    bad = [s for s in seen if s.error]
    if bad:
        errors.append(f"{len(bad)} unreadable or corrupt file(s): {_listed([f'{s.name} ({s.error})' for s in bad])}")
    good = [s for s in seen if not s.error]
    if good:
        widths, heights = [s.size[0] for s in good], [s.size[1] for s in good]
        info.append(f"sizes: width {min(widths)}..{max(widths)} (median {statistics.median(widths):g}), "
                    f"height {min(heights)}..{max(heights)} (median {statistics.median(heights):g})")
        info.append("modes: " + ", ".join(f"{m} {n}" for m, n in Counter(s.mode for s in good).most_common()))

    groups: dict[str, list[_Seen]] = defaultdict(list)
    for s in good:
        groups[s.digest].append(s)
    across = [g for g in groups.values() if len({s.split for s in g}) > 1]
    within = [g for g in groups.values() if len(g) > 1 and len({s.split for s in g}) == 1]
    if across:
        errors.append(f"{len(across)} image(s) appear in more than one split (leakage): "
                      + _listed([" = ".join(f"{s.name} ({s.split})" for s in g) for g in across]))
    if within:
        warnings.append(f"{len(within)} exact duplicate group(s) inside a split: "
                        + _listed([" = ".join(s.name for s in g) for g in within]))
    return CheckReport(info, errors, warnings)
