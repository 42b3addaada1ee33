"""Pretrained weights: read them safely from a file, a run folder or a URL, and fit them to a model.

`create_model(name, pretrained=SOURCE, num_classes=..., in_chans=...)` calls `load_pretrained`. A SOURCE is

- a PyTorch file: torchvision's published `.pth` state dicts (old DenseNet key names and the pre-1.6
  serialization included), a cnnzoo checkpoint, or a training script's `{"model": state_dict, ...}`;
- a cnnzoo run folder (its `checkpoints/best.pt`);
- a `.safetensors` file;
- an `http(s)://` URL, downloaded once into the cache and read from there.

Reading is safe by construction: safetensors holds tensors only, and PyTorch files go through
`torch.load(weights_only=True)`, whose unpickler builds tensors and containers and refuses every other
global. A file that asks for one (a pickled object whose `__reduce__` would run code) is refused with a
`CnnzooError`; there is no fallback to the unsafe loader.

- `imagenet` or `imagenet:TAG`, given the model's name: its published weights (`cnnzoo.pretrained`);
- a pytorchcv `.pth`, given the model's name: converted from pytorchcv's key layout.

URLs follow torch.hub: the cache is `$TORCH_HOME/hub/checkpoints` (`CNNZOO_CACHE` or `cache=` to move it),
and a file named `name-<hex>.ext` with 8 or more hex digits must have a SHA-256 that starts with them
(`#sha256=<hex>` after the URL pins any other name). `cnnzoo.pretrained.fetch` downloads them: into a temporary
file that is moved into the cache only once its hash checks, so a bad download leaves nothing behind.

Fitting (`fit_state_dict`): a head of another size (`num_classes`) is left at the model's fresh
initialisation and reported; a first convolution of another width (`in_chans`) is adapted by
`adapt_input_conv`; any other missing, extra or misshapen tensor is an error that names it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import re
import urllib.parse
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .errors import CnnzooError
from .pretrained.fetch import cache_dir, log_to_stderr  # noqa: F401  (cache_dir: re-exported)

HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")  # torch.hub's check_hash convention, at least 8 digits
CHECKPOINT_FORMAT = "cnnzoo-checkpoint-1"  # cnnzoo.train.checkpoint.FORMAT
INFO_KEYS = ("model", "num_classes", "in_chans", "input_size", "mean", "std", "crop_pct", "classes")

Log = Callable[[str], None]


@dataclasses.dataclass
class Weights:
    """A state dict read from `path`, with what its file said about it (a cnnzoo checkpoint's `model`,
    `classes`, `mean`, `std`, ...; a safetensors file's metadata)."""

    state_dict: dict[str, torch.Tensor]
    path: Path
    info: dict[str, Any]


# --- where the bytes come from ----------------------------------------------------------------------------

def is_url(source: Any) -> bool:
    return isinstance(source, str) and source.split("://", 1)[0].lower() in ("http", "https")


def download(url: str, *, cache: str | os.PathLike | None = None, log: Log | None = None) -> Path:
    """The cached copy of `url`, downloaded first if absent; its SHA-256 checked against the file name's hex digits
    (or a `#sha256=<hex>` pin), as torch.hub does. See `cnnzoo.pretrained.fetch` for how."""
    from .pretrained.fetch import Check, fetch, file_digest

    try:
        parts = urllib.parse.urlparse(url)
    except ValueError as exc:  # a malformed host such as http://[::1
        raise CnnzooError(f"{url!r} is not a valid URL ({exc})") from None
    name = os.path.basename(parts.path)
    if not name or name.startswith("."):  # no file, or `..`: the name becomes a path in the cache
        raise CnnzooError(f"{url} names no file; weights URLs end in a file name such as resnet18-f37072fd.pth")
    pinned = re.fullmatch(r"sha256=([a-fA-F0-9]{8,64})", parts.fragment)
    if parts.fragment and not pinned:
        raise CnnzooError(f"{url}: the part after '#' must be sha256=<8 to 64 hex digits>, got {parts.fragment!r}")
    expected = pinned.group(1).lower() if pinned else (m.group(1) if (m := HASH_IN_NAME.search(name)) else None)
    path = fetch(url.split("#", 1)[0], name, Check(sha256=expected), cache=cache, log=log)
    if expected is None:
        (log or log_to_stderr)(f"{name} carries no hash to check (name it NAME-<hex>.ext or add #sha256=<hex> to the URL); "
                        f"its SHA-256 is {file_digest(path, Check(sha256=''))}")
    return path


# --- reading, safely ----------------------------------------------------------------------------------------

def read_weights(source: str | os.PathLike, *, model: str | None = None, cache: str | os.PathLike | None = None,
                 log: Log | None = None) -> Weights:
    """The state dict in a file, run folder or URL (see the module docstring), read without running any code.

    With the architecture's name (`model`), `source` may also be `imagenet[:TAG]` (its published weights, see
    `cnnzoo.pretrained`), and a file in pytorchcv's key layout is converted to cnnzoo's.
    """
    from .pretrained.tables import is_spec

    if is_spec(source):
        if model is None:
            raise CnnzooError(f"--weights {source} names published weights: say for which model (--model NAME)")
        from .pretrained.load import read_published

        return read_published(model, str(source), cache=cache, log=log)
    weights = _read_file(source, cache, log)
    if model is not None:
        from .pretrained import pytorchcv

        if pytorchcv.looks_like_pytorchcv(weights.state_dict):
            weights.state_dict = pytorchcv.convert(model, weights.state_dict)
            (log or log_to_stderr)(f"{weights.path.name} is in pytorchcv's layout: converted to {model}'s")
    return weights


def _read_file(source: str | os.PathLike, cache: str | os.PathLike | None, log: Log | None) -> Weights:
    if is_url(source):
        path = download(str(source), cache=cache, log=log)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise CnnzooError(f"weights {str(source)!r} do not exist; pass a .pth/.pt/.safetensors file, "
                              f"a run folder or an http(s) URL")
        if path.is_dir():
            from .train.checkpoint import resolve_path

            path = resolve_path(path, "best")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    return _unwrap(_torch_load(path), path)


def _read_safetensors(path: Path) -> Weights:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), "pt") as f:
            meta = dict(f.metadata() or {})
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CnnzooError(f"{path} is not a readable safetensors file ({_first_line(exc)})") from None
    info = {}
    for key, value in meta.items():
        try:
            info[key] = json.loads(value)
        except ValueError:
            info[key] = value
    return Weights(state, path, info)


def _torch_load(path: Path) -> Any:
    try:
        # Memory-map zip-format files: a 500 MB VGG is then read straight into the model's tensors.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        raise unpickling_refusal(path, exc) from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise CnnzooError(f"{path} is not a readable PyTorch weights file ({_first_line(exc)})") from None


def unpickling_refusal(path: Path, exc: pickle.UnpicklingError) -> CnnzooError:
    """The whole story of a pickle that `weights_only=True` refused: which global it calls, and what to do."""
    wanted = re.search(r"GLOBAL ([\w.]+)", str(exc))
    if not wanted and ("Unsupported operand" in str(exc) or "Weights only load failed" not in str(exc)):
        return CnnzooError(f"{path} is not a readable PyTorch weights file (its bytes are not a pickle)")
    what = f"calls {wanted.group(1)}" if wanted else "holds objects other than tensors"
    return CnnzooError(
        f"{path} was refused: it {what}, which unpickling would run as code. cnnzoo reads weights only with "
        f"torch.load(weights_only=True) and never falls back; if you trust the file, re-save its state_dict "
        f"with torch.save(model.state_dict(), ...) and load that")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


def _unwrap(obj: Any, path: Path) -> Weights:
    """The state dict inside what torch.load returned: itself, a cnnzoo checkpoint's, or a wrapper's."""
    info: dict[str, Any] = {}
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        info = {k: obj.get(k) for k in INFO_KEYS}
        obj = obj.get("state_dict")
    elif isinstance(obj, dict) and not _all_tensors(obj):
        # torchvision's reference scripts save {"model": ..., "optimizer": ...}; others use "state_dict".
        wrappers = ("state_dict", "model", "model_state_dict")
        inner = next((obj[k] for k in wrappers if isinstance(obj.get(k), dict)), None)
        if inner is None:
            keys = ", ".join(map(str, list(obj)[:6]))
            raise CnnzooError(f"{path} holds no state dict of tensors (its top-level keys: {keys})")
        obj = inner
    if not isinstance(obj, dict) or not obj or not _all_tensors(obj):
        raise CnnzooError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    state = {str(k): v for k, v in obj.items()}
    if all(k.startswith("module.") for k in state):  # saved from DataParallel / DistributedDataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return Weights(state, path, info)


def _all_tensors(d: dict) -> bool:
    return all(isinstance(v, torch.Tensor) for v in d.values())


# --- fitting the tensors to the model -----------------------------------------------------------------------

def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """A first-layer kernel (out, c, k, k) for `in_chans` input channels instead of c.

    One channel: the sum over c, so a grey image g gives the response the RGB image (g, g, g) gave.
    Otherwise the c channels repeat cyclically and are scaled by c / in_chans, so an input that repeats
    a c-channel image keeps the response's scale (timm's `adapt_input_conv`).
    """
    c = weight.shape[1]
    if in_chans == c:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = math.ceil(in_chans / c)
    return weight.repeat(1, reps, 1, 1)[:, :in_chans] * (c / in_chans)


def first_conv(model: nn.Module) -> str:
    """The dotted name of the first convolution: the only layer that `in_chans` changes."""
    return next(name for name, m in model.named_modules() if isinstance(m, nn.Conv2d))


def head_modules(model: nn.Module) -> set[str]:
    """The layers that output class scores: the classifier, and the auxiliary heads (GoogLeNet's) of the same width."""
    n = getattr(model, "num_classes", None)
    heads = {getattr(model, "classifier_path", "fc")}
    heads |= {name for name, m in model.named_modules()
              if (isinstance(m, nn.Linear) and m.out_features == n) or (n == 0 and isinstance(m, nn.Identity))}
    return heads


def file_classes(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> int:
    """How many classes the weights' classifier has (0 when they have none)."""
    w = state_dict.get(f"{getattr(model, 'classifier_path', 'fc')}.weight")
    return int(w.shape[0]) if w is not None and w.ndim == 2 else 0


def fit_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], *, new_head: bool = False
                   ) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """The state dict made to fit `model`: (tensors to load, keys left at their initialisation, notes).

    The head is dropped (left at the model's initialisation) when its shape differs or `new_head`;
    the first convolution is adapted to the model's input channels. Anything else that does not
    fit raises a `CnnzooError` naming the keys.
    """
    from .models.densenet import DenseNet, remap_legacy_densenet_keys

    sd = dict(remap_legacy_densenet_keys(state_dict) if isinstance(model, DenseNet) else state_dict)
    own = model.state_dict()
    notes: list[str] = []
    conv = f"{first_conv(model)}.weight"
    if conv in sd and conv in own and sd[conv].ndim == 4 and sd[conv].shape[1] != own[conv].shape[1]:
        was = sd[conv].shape[1]
        sd[conv] = adapt_input_conv(sd[conv], own[conv].shape[1])
        how = "summed" if own[conv].shape[1] == 1 else "repeated and rescaled"
        notes.append(f"first convolution {conv.rsplit('.', 1)[0]} adapted from {was} to {own[conv].shape[1]} "
                     f"input channels ({how})")
    heads = head_modules(model)
    in_head = [k for k in {*sd, *own} if k.rpartition(".")[0] in heads]
    misfit = [k for k in in_head if k not in sd or k not in own or sd[k].shape != own[k].shape]
    dropped = sorted(in_head) if new_head else sorted(misfit)
    if dropped:
        n_file, n_model = file_classes(model, sd), getattr(model, "num_classes", "?")
        why = ("for the new task" if new_head and not misfit
               else f"the weights have {n_file} classes, the model {n_model}")
        names = sorted({k.rpartition(".")[0] for k in dropped})
        notes.append(f"classifier re-initialised ({why}): {', '.join(names)}")
        for k in dropped:
            sd.pop(k, None)
    reinit = sorted(k for k in dropped if k in own)
    missing = [k for k in own if k not in sd and k not in reinit and not k.endswith("num_batches_tracked")]
    extra = [k for k in sd if k not in own]
    shapes = [k for k in sd if k in own and sd[k].shape != own[k].shape]
    if missing or extra or shapes:
        raise CnnzooError(f"the weights do not fit {_model_name(model)}: " + "; ".join(filter(None, (
            _few("missing", missing), _few("unexpected", extra),
            _few("of another shape", [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in shapes]))))
            + "; are they another architecture's?")
    return sd, reinit, notes


def _few(what: str, keys: list[str], n: int = 3) -> str:
    if not keys:
        return ""
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return f"{len(keys)} {what} ({', '.join(keys[:n])}{more})"


def _model_name(model: nn.Module) -> str:
    card = getattr(model, "card", None)
    return card.name if card is not None else type(model).__name__


def load_pretrained(model: nn.Module, source: str | os.PathLike | Weights, *, new_head: bool = False,
                    cache: str | os.PathLike | None = None, log: Log | None = None) -> dict[str, Any]:
    """Load weights from `source` (or already read `Weights`) into `model`, in place; report what was
    loaded, adapted and re-initialised. `new_head` re-initialises the classifier even if its size fits."""
    log = log or log_to_stderr
    weights = source if isinstance(source, Weights) else \
        read_weights(source, model=_model_name(model), cache=cache, log=log)
    try:
        sd, reinit, notes = fit_state_dict(model, weights.state_dict, new_head=new_head)
    except CnnzooError as exc:
        saved = weights.info.get("model")
        hint = f" (the checkpoint says they are {saved}'s)" if saved and saved != _model_name(model) else ""
        raise CnnzooError(f"{weights.path}: {exc}{hint}") from None
    result = model.load_state_dict(sd, strict=False)
    assert not result.unexpected_keys and set(result.missing_keys) <= set(reinit), result
    log(f"loaded {len(sd)} tensors from {weights.path} into {_model_name(model)}")
    for note in notes:
        log(note)
    return {"path": str(weights.path), "tensors": len(sd), "reinitialised": reinit, "notes": notes,
            "info": weights.info}


def normalisation_of(weights: Weights, in_chans: int) -> tuple[list[float], list[float]] | None:
    """The mean and std the weights were trained with, when their file records them for `in_chans` channels:
    a network sees its best inputs normalised as in its own training."""
    mean, std = weights.info.get("mean"), weights.info.get("std")
    if mean is None or std is None or len(mean) != in_chans:
        return None
    return list(mean), list(std)


# --- `cnnzoo weights convert` -------------------------------------------------------------------------------

def convert(source: str | os.PathLike, model: str, out: str | os.PathLike, *,
            cache: str | os.PathLike | None = None, log: Log | None = None) -> dict[str, Any]:
    """Check a weights file against `model`'s architecture, tensor by tensor, and write it as safetensors.

    The model is built with the file's own number of classes and input channels, so every tensor must
    fit exactly; the output loads with `create_model(model, pretrained=out)`.
    """
    from safetensors.torch import save

    from .fileio import write_bytes

    from .models import create_model, get_card

    get_card(model)  # an unknown name fails here
    w = read_weights(source, model=model, cache=cache, log=log)
    with torch.device("meta"):  # shapes only: which classifier and first-layer widths the file has
        probe = create_model(model)
    from .models.densenet import DenseNet, remap_legacy_densenet_keys

    state = dict(remap_legacy_densenet_keys(w.state_dict)) if isinstance(probe, DenseNet) else w.state_dict
    conv = state.get(f"{first_conv(probe)}.weight")
    in_chans = int(conv.shape[1]) if conv is not None and conv.ndim == 4 else 3
    num_classes = file_classes(probe, state)
    net = create_model(model, num_classes=num_classes, in_chans=in_chans)
    try:
        sd, reinit, notes = fit_state_dict(net, state)
    except CnnzooError as exc:
        raise CnnzooError(f"{w.path}: {exc}") from None
    if reinit or notes:
        raise CnnzooError(f"{w.path} does not fit {model} exactly: {'; '.join(notes)}")
    net.load_state_dict(sd, strict=True)
    tensors = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    meta = {"format": "cnnzoo-weights-1", "model": model, "num_classes": num_classes, "in_chans": in_chans,
            "source": w.path.name, **{k: v for k, v in w.info.items() if v is not None and k != "model"}}
    out = Path(out)
    if out.suffix != ".safetensors":
        raise CnnzooError(f"--out {out} must end in .safetensors")
    write_bytes(out, save(tensors, metadata={k: json.dumps(v) for k, v in meta.items()}))  # umask permissions
    params = sum(p.numel() for p in net.parameters())
    return {"source": str(w.path), "out": str(out), "model": model, "tensors": len(tensors), "parameters": params,
            "num_classes": num_classes, "in_chans": in_chans, "bytes": out.stat().st_size}
