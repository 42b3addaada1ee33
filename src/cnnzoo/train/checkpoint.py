"""Checkpoints: written atomically, read with `weights_only=True`, self-describing for inference.

A checkpoint is a plain dict of tensors, numbers, strings and lists, so `torch.load(weights_only=True)`
reads it without unpickling code (PyTorch's safe loader; we never fall back to the unsafe one). It
holds the model's weights and everything needed to use them (`model`, `num_classes`, `in_chans`,
`input_size`, `mean`, `std`, `crop_pct`, `classes`), and everything needed to continue training
exactly (`optimizer`, `scheduler`, `scaler`, `epoch`, `step`, `rng`, `history`, `config`).

Atomic write: `torch.save` to a temporary file in the same folder, fsync, then `os.replace`, which
POSIX makes atomic: a crash leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CnnzooError
from ..fileio import disk_error, fsync_dir, write_error

FORMAT = "cnnzoo-checkpoint-1"
INFO_KEYS = ("model", "num_classes", "in_chans", "input_size", "mean", "std", "crop_pct", "classes",
             "epoch", "step", "best_top1", "best_epoch", "history", "config")


def _write_tmp(obj: Any, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if (why := disk_error(exc)) is not None:  # a full disk: one line, and the previous checkpoint stays
            raise write_error(path, why) from None
        raise
    return tmp


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save` that leaves `path` either untouched or complete, whatever happens meanwhile."""
    from ..fileio import atomic_write

    atomic_write(path, lambda f: torch.save(obj, f))


def save_checkpoint(state: dict[str, Any], folder: str | os.PathLike, *, best: bool) -> None:
    """Write `last.pt` (and `best.pt`, the same bytes, when `best`), each atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".*.tmp-*"):  # left by a run killed mid-write
        stale.unlink(missing_ok=True)
    last = folder / "last.pt"
    tmp = _write_tmp({"format": FORMAT, **state}, last)
    if best:
        best_tmp = folder / f".best.pt.tmp-{os.getpid()}"
        try:
            os.link(tmp, best_tmp)  # same bytes, no second write
        except OSError:
            shutil.copyfile(tmp, best_tmp)
        os.replace(best_tmp, folder / "best.pt")
    os.replace(tmp, last)
    fsync_dir(folder)


def resolve_path(path_or_run: str | os.PathLike, which: str = "best") -> Path:
    """A checkpoint file from a file, a run folder or its checkpoints folder (`which`: best or last)."""
    p = Path(path_or_run).expanduser()
    if p.is_file():
        return p
    if not p.exists():
        raise CnnzooError(f"{str(path_or_run)!r} does not exist; pass a run folder (runs/NAME) or a .pt checkpoint")
    for folder in (p / "checkpoints", p):
        for name in (f"{which}.pt", "last.pt", "best.pt"):
            if (folder / name).is_file():
                return folder / name
    raise CnnzooError(f"{p} holds no checkpoint (checkpoints/{which}.pt); "
                      f"was the run stopped before its first epoch ended?")


def read_checkpoint(path_or_run: str | os.PathLike, which: str = "best") -> dict[str, Any]:
    """The checkpoint dict, read safely (`weights_only=True`) onto the CPU."""
    path = resolve_path(path_or_run, which)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        from ..weights import unpickling_refusal

        raise unpickling_refusal(path, exc) from None
    except ( RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CnnzooError(f"{path} is not a readable cnnzoo checkpoint ({first[:160]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CnnzooError(f"{path} is not a cnnzoo checkpoint (no '{FORMAT}' marker); was it written by `cnnzoo train`?")
    ckpt["path"] = str(path)
    return ckpt


def load_weights(model: torch.nn.Module, ckpt: dict[str, Any], *, ema: bool = False) -> None:
    """Load the checkpoint's weights (with `ema`, its EMA weights when the run kept them: what inference
    uses); a checkpoint of another architecture fails in one line."""
    try:
        model.load_state_dict(ckpt.get("ema_state_dict", ckpt["state_dict"]) if ema else ckpt["state_dict"],
                              strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise CnnzooError(f"{ckpt['path']} holds {ckpt['model']} weights that do not fit this "
                          f"{type(model).__name__}: {detail[:200]}") from None


def load_checkpoint(path_or_run: str | os.PathLike, *, which: str = "best", expect_model: str | None = None,
                    device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the trained model from a checkpoint or run folder, in eval mode, and its description.

    `info` holds `model`, `num_classes`, `in_chans`, `input_size`, `mean`, `std`, `crop_pct`,
    `classes`, `epoch`, `step`, `best_top1`, `history`, `config`, `path` and `ema` (True: the weights are
    the run's exponential moving average, which it validated): what inference needs.
    `expect_model` makes a checkpoint of another architecture an error.
    """
    from ..models import create_model

    ckpt = read_checkpoint(path_or_run, which)
    if expect_model is not None and ckpt["model"] != expect_model:
        raise CnnzooError(f"{ckpt['path']} holds a {ckpt['model']}, not a {expect_model}; "
                          f"use --model {ckpt['model']} or another checkpoint")
    model = create_model(ckpt["model"], num_classes=ckpt["num_classes"], in_chans=ckpt["in_chans"])
    load_weights(model, ckpt, ema=True)
    info = {k: ckpt.get(k) for k in INFO_KEYS} | {"path": ckpt["path"], "ema": "ema_state_dict" in ckpt}
    return model.to(device).eval(), info


# --- random number generators ----------------------------------------------------------------------------

def rng_state() -> dict[str, Any]:
    """Python's, NumPy's, torch's and CUDA's generator states, in types `weights_only` accepts."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
