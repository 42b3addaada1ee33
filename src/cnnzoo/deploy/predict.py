"""Predict the classes of image files with a trained model: a run, a checkpoint, or an exported ONNX file.

`Predictor` is the loaded model: its preprocessing (the trainer's eval preset, read from the checkpoint
or the ONNX metadata) and a backend (see `backends`). `predict` expands files, folders and globs,
reports every image it cannot read and predicts all the others. Nothing here prints: the CLI formats.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CnnzooError
from .backends import Backend, Measured, build_backend, select_backend
from .images import MAX_PIXELS, Failure, ImageRejected, Preprocess, expand_inputs, read_image, real_images
from .meta import ModelMeta, Source, load_source

# Below this many images, measuring the backends (an ONNX export, a few timed batches) costs more than
# it can save, so `auto` takes the default backend of the source and says so.
AUTO_MIN_IMAGES = 64


@dataclasses.dataclass
class Prediction:
    input: str
    top: list[tuple[str, float]]  # (class, probability), most probable first


@dataclasses.dataclass
class PredictReport:
    model: str
    source: str
    backend: str
    backend_reason: str
    predictions: list[Prediction]
    failures: list[Failure]
    seconds: float
    measured: list[Measured] = dataclasses.field(default_factory=list)
    tta: str | None = None  # test-time views averaged (data.tta.VIEWS), None for the centre crop

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "source": self.source, "backend": self.backend, "backend_reason": self.backend_reason,
            "predictions": [{"input": p.input, "top": [{"label": c, "probability": round(pr, 6)} for c, pr in p.top]}
                            for p in self.predictions],
            "failures": [dataclasses.asdict(f) for f in self.failures],
            "seconds": round(self.seconds, 4), "tta": self.tta,
        }


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Predictor:
    """A model ready for images. `backend`: auto or a name from `backends.NAMES`.

    `expected_images` tells `auto` how much work is coming (None: a server, so always measure). `tta` (flip,
    5crop, 10crop) predicts the mean softmax over test-time views of each image (`data.tta`).
    """

    def __init__(self, source: str | os.PathLike | Source, backend: str = "auto", *, batch_size: int = 32,
                 expected_images: int | None = None, probe: list[str] | None = None, tta: str | None = None) -> None:
        self.source = source if isinstance(source, Source) else load_source(source)
        self.meta: ModelMeta = self.source.meta
        if tta:
            from ..data.tta import check_tta

            check_tta(tta, self.meta.hflip, self.source.path)
        self.pre = Preprocess(self.meta)  # the backend is chosen on single views
        self.batch_size = batch_size
        self.measured: list[Measured] = []
        self.backend, self.reason = self._choose(backend, expected_images, probe)
        self.tta = tta
        if tta:
            self.pre = Preprocess(self.meta, tta)

    def _calibration(self) -> torch.Tensor | None:
        return real_images(self.meta, 64, split="train")[0]

    def _choose(self, name: str, expected: int | None, probe_paths: list[str] | None) -> tuple[Backend, str]:
        default = "eager" if self.source.kind == "torch" else "onnxruntime"
        if name != "auto":
            calib = self._calibration() if name == "int8" else None
            return build_backend(name, self.source, calib), "chosen with --backend"
        if expected is not None and expected < AUTO_MIN_IMAGES:
            return (build_backend(default, self.source),
                    f"{expected} image(s): measuring the faster backends would take longer than predicting")
        probe, what = real_images(self.meta, 128)
        if probe is None and probe_paths:
            probe, what = self.load_batch([Path(p) for p in probe_paths[:128]])[0], "the given images"
        if probe is None or not len(probe):
            return build_backend(default, self.source), f"no real images to check the faster backends on ({what})"
        sel = select_backend(self.source, probe, batch_size=self.batch_size, probe_what=what,
                             calibration=self._calibration())
        self.measured = sel.measured
        return sel.backend, sel.reason

    def load_batch(self, paths: list[Path], max_pixels: int = MAX_PIXELS) -> tuple[torch.Tensor, list[Path], list[Failure]]:
        """Decode and preprocess `paths`; the readable ones stacked, in order, and the failures."""
        xs, ok, failed = [], [], []
        for p in paths:
            try:
                xs.append(self.pre(read_image(p, self.pre.mode, max_pixels=max_pixels)))
                ok.append(p)
            except ImageRejected as exc:
                failed.append(Failure(str(p), str(exc)))
        x = torch.stack(xs) if xs else torch.empty(0, self.meta.in_chans, self.meta.input_size, self.meta.input_size)
        return x, ok, failed

    def probabilities(self, x: torch.Tensor) -> np.ndarray:
        """N x classes probabilities of N images, or of N x V views (then averaged over the views)."""
        if x.ndim == 5:
            n, v = x.shape[:2]
            return self.probabilities(x.flatten(0, 1)).reshape(n, v, -1).mean(axis=1)
        return softmax(self.backend(x).astype(np.float64))

    def top(self, probs: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
        k = min(k, probs.shape[1])
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(self.meta.classes[j], float(row[j])) for j in idx] for row, idx in zip(probs, order)]


def predict(source: str | os.PathLike | Source | Predictor, inputs: list[str], *, top_k: int = 5, backend: str = "auto",
            batch_size: int = 32, tta: str | None = None) -> PredictReport:
    """Top-k classes of every image in `inputs` (files, folders, globs); unreadable ones in `failures`.
    `tta`: average the softmax over test-time views (flip, 5crop, 10crop) of each image."""
    start = time.perf_counter()
    paths, failures = expand_inputs(inputs)
    if not paths:
        detail = "; ".join(f"{f.input}: {f.error}" for f in failures) or "no inputs given"
        raise CnnzooError(f"no image to predict ({detail})")
    pred = source if isinstance(source, Predictor) else Predictor(
        source, backend, batch_size=batch_size, expected_images=len(paths), probe=[str(p) for p in paths], tta=tta)
    predictions = []
    for i in range(0, len(paths), batch_size):
        x, ok, failed = pred.load_batch(paths[i:i + batch_size])
        failures += failed
        if len(ok):
            predictions += [Prediction(str(p), t) for p, t in zip(ok, pred.top(pred.probabilities(x), top_k))]
    return PredictReport(pred.meta.model, pred.source.path, pred.backend.name, pred.reason, predictions, failures,
                         time.perf_counter() - start, pred.measured, getattr(pred, "tta", None))


def format_predictions(r: PredictReport) -> str:
    """One line per image: the path, then class and probability, most probable first."""
    width = max((len(p.input) for p in r.predictions), default=0)
    lines = [f"{p.input:<{width}}  " + "  ".join(f"{c} {100 * pr:5.1f}%" for c, pr in p.top) for p in r.predictions]
    return "\n".join(lines)
