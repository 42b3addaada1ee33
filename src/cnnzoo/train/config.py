"""A run's settings: defaults, then the YAML file, then the command line; saved resolved with the run.

Every field is a command-line flag (`batch_size` is `--batch-size`) and a YAML key. "auto" and `None`
values are resolved by `resolve` from the data set and the device before training starts, so
`config.yaml` in the run folder records what actually ran and a resumed run reads it back unchanged.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
from pathlib import Path
from typing import Any

import yaml

from ..errors import CnnzooError

# Settings a resumed run may change: they leave the arithmetic alone (threads only reorders float sums:
# a resumed run matches an uninterrupted one bitwise when both use the same number).
RESUMABLE = {"workers", "progress", "tensorboard", "threads"}


def _f(default: Any, help: str = "") -> Any:
    """A field with its command-line help."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass
class TrainConfig:
    """Everything `cnnzoo train` needs. Defaults train resnet18 on `digits` to >= 99% in about a minute."""

    model: str | None = _f(None, "a registered model name (`cnnzoo list`)")
    data: str | None = _f(None, "a folder, a CSV, `digits`, `synthetic[:options]` or a data set's name "
                          "(`cnnzoo data list`: mnist, cifar10, imagenette, ...)")
    out: str | None = _f(None, "run folder; default runs/MODEL-DATA (never an existing one)")
    epochs: int = _f(20, "passes over the training images")
    batch_size: int = _f(64, "global: split across processes under torchrun")
    opt: str = _f("adamw", "adamw, or sgd (Nesterov momentum)")
    lr: float | None = _f(None, "peak learning rate; default 2e-3 * batch/64 (adamw), 0.05 * batch/64 (sgd); "
                          "3e-4 and 0.01 for AlexNet, ZFNet and VGG, 4e-3 (adamw) for MobileNet and ShuffleNet "
                          "(see cnnzoo.train.recipes)")
    momentum: float = _f(0.9, "SGD momentum, or AdamW's beta1")
    weight_decay: float | None = _f(None, "default 5e-4 (sgd), 0.05 (adamw); never on biases and norm layers")
    sched: str = _f("onecycle", "onecycle, cosine, step or constant")
    warmup_epochs: float | None = _f(None, "linear warm-up; default 25% of the run (onecycle), else 10%, <= 5")
    step_epochs: int | None = _f(None, "step schedule: decay every this many epochs (default a third of the run)")
    step_gamma: float = _f(0.1, "step schedule: the factor of each decay")
    label_smoothing: float = _f(0.1, "weight of the uniform target in the cross-entropy (Szegedy et al. 2016)")
    grad_clip: float | None = _f(None, "clip the gradient norm to this, if set")
    precision: str = _f("auto", "auto, fp32, bf16, fp16 (auto: bf16 where the hardware has it, else fp16 on CUDA)")
    channels_last: str | bool = _f("auto", "auto: on with bf16/fp16 (oneDNN and tensor cores prefer NHWC)")
    device: str = _f("auto", "auto, cpu, cuda")
    weights: str | None = _f(None, "start from these weights: imagenet[:TAG] (published), a file, run folder or "
                             "URL (a head of another size is re-initialised; see `cnnzoo.weights`)")
    seed: int = _f(0, "seeds the initial weights, the data order and the augmentation")
    workers: int | None = _f(None, "loader processes; default 0 for in-memory data, else min(4, cores)")
    threads: int | None = _f(None, "CPU threads per process; default: $OMP_NUM_THREADS, else cores / local processes")
    input_size: int | None = _f(None, "default: the data set's size (at least the model's minimum), else the card's")
    in_chans: int | None = _f(None, "default: 1 for grey data sets (digits), else 3")
    normalize: str = _f("auto", "auto, imagenet or dataset (mean/std over the training images)")
    mean: list[float] | None = _f(None, "normalisation mean per channel, comma-separated; default from --normalize")
    std: list[float] | None = _f(None, "normalisation std per channel, comma-separated; default from --normalize")
    hflip: bool | None = _f(None, "default: the data set's choice (off for digits)")
    crop_pct: float | None = _f(None, "eval centre-crop fraction; default the data set's")
    scale_min: float | None = _f(None, "train random-resized-crop minimum area; default the data set's")
    val: float = _f(0.1, "validation fraction split off data that has no val split of its own")
    test: float = _f(0.1, "test fraction split off data that has no test split of its own")
    split_seed: int = _f(0, "seed of those splits (independent of `seed`: the test set never moves)")
    # Named data sets and augmentation (cnnzoo.data.named, cnnzoo.data.transforms).
    data_root: str | None = _f(None, "where named data sets live; default $CNNZOO_DATA, else ~/.cache/cnnzoo/data")
    download: bool = _f(False, "fetch a named data set into --data-root if it is not there (checksums checked)")
    aug: str = _f("basic", "none, basic (crop + flip), randaugment, trivialaugment or autoaugment (then basic + it)")
    random_erasing: float = _f(0.0, "probability of erasing a random rectangle of each training image (timm's reprob)")
    progress: bool | None = _f(None, "progress bar; default: when stderr is a terminal")
    tensorboard: bool = _f(True, "write TensorBoard events when tensorboard is installed")
    # --- the training loop's options (#14, #16) -------------------------------------------------------------
    precise_bn: int = _f(1024, "recompute batch-norm statistics over this many training images with each "
                         "epoch's final weights, before validating and saving (0: off)")
    zero_init_residual: bool = _f(True, "start each residual block's last batch-norm scale at zero "
                                  "(Goyal et al. 2017; from-scratch runs of models with residual blocks)")
    ema: float | None = _f(None, "also keep an exponential moving average of the weights with this decay "
                           "(e.g. 0.999); it is validated, saved and used by evaluate/predict")
    patience: int | None = _f(None, "stop when validation top-1 has not improved for this many epochs")
    accum_steps: int = _f(1, "accumulate the gradients of this many batches per optimizer step")
    mixup: float = _f(0.0, "MixUp alpha (Zhang et al. 2018) on training batches; 0: off")
    cutmix: float = _f(0.0, "CutMix alpha (Yun et al. 2019) on training batches; 0: off (with mixup: one per batch)")
    compile: bool = _f(False, "torch.compile the training step: about a minute of compilation in the first epoch "
                       "(seconds once cached); on a 2-core CPU in bf16 no faster (resnet18 1.01x, resnet50 0.98x; "
                       "benchmarks/RESULTS.md); not yet measured on a GPU")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CHOICES = {
    "opt": ("adamw", "sgd"),
    "sched": ("onecycle", "cosine", "step", "constant"),
    "precision": ("auto", "fp32", "bf16", "fp16"),
    "device": ("auto", "cpu", "cuda"),
    "normalize": ("auto", "imagenet", "dataset"),
    "aug": ("none", "basic", "randaugment", "trivialaugment", "autoaugment"),
}
RESUMABLE |= {"data_root", "download"}  # where the same files are read from does not change the run
FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _bool(text: str) -> bool:
    low = str(text).lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _auto_bool(text: str) -> str | bool:
    return "auto" if str(text).lower() == "auto" else _bool(text)


def _floats(text: str) -> list[float]:
    return [float(v) for v in str(text).split(",")]


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a probability between 0 and 1, got {text!r}")
    return value


def _parser_type(name: str):
    """The argparse type of a field, read from its annotation."""
    ann = str(FIELDS[name].type)
    if name == "channels_last":
        return _auto_bool
    if name == "random_erasing":
        return _fraction
    if "list[float]" in ann:
        return _floats
    if ann.startswith("bool"):
        return _bool
    if ann.startswith("int"):
        return int
    if ann.startswith("float"):
        return float
    return str


def add_arguments(parser: argparse.ArgumentParser, types: dict[str, Any] | None = None,
                  skip: tuple[str, ...] = ()) -> None:
    """One flag per field (but those in `skip`), default None (= not given), so only what the user typed
    overrides the YAML.

    `types` overrides a field's argparse type (the CLI passes `cnnzoo.cli.args.TRAIN_TYPES`: bounded numbers)."""
    for name, field in FIELDS.items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        default = field.default
        kind = (types or {}).get(name) or _parser_type(name)
        kwargs: dict[str, Any] = {"type": kind, "default": None, "dest": name, "metavar": name.upper()}
        if name in CHOICES:
            kwargs["choices"] = CHOICES[name]
            kwargs.pop("metavar")
        if kwargs["type"] is _bool:  # `--download` alone means true; `--hflip false` still works
            kwargs |= {"nargs": "?", "const": True, "metavar": "BOOL"}
        text = field.metadata["help"]
        if "default" not in text and default is not None:
            text = f"{text}; default {default}" if text else f"default {default}"
        kwargs["help"] = text.replace("%", "%%")
        parser.add_argument(flag, **kwargs)


def _coerce(name: str, value: Any, where: str) -> Any:
    if value is None or (name == "channels_last" and value == "auto"):
        return value
    kind = _parser_type(name)
    try:
        if kind is _floats:
            value = [float(v) for v in value] if isinstance(value, (list, tuple)) else _floats(value)
        elif kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            value = int(value)
        else:
            value = kind(value)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        raise CnnzooError(f"{where}: {name} = {value!r} is not a valid {FIELDS[name].type}") from None
    if name in CHOICES and value not in CHOICES[name]:
        raise CnnzooError(f"{where}: {name} must be one of {', '.join(CHOICES[name])}, got {value!r}")
    return value


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The settings in a YAML file, checked against the known field names (hyphens or underscores)."""
    p = Path(path)
    if not p.is_file():
        raise CnnzooError(f"config file {str(path)!r} does not exist")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise CnnzooError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise CnnzooError(f"{path} must hold a mapping of settings (key: value)")
    out = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in FIELDS:
            close = difflib.get_close_matches(name, FIELDS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise CnnzooError(f"{path}: unknown setting {key!r}{hint}")
        out[name] = _coerce(name, value, str(path))
    return out


def build_config(config_file: str | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then `config_file`, then the non-None `overrides` (the command line)."""
    values = read_yaml(config_file) if config_file else {}
    for name, value in overrides.items():
        if name not in FIELDS:
            raise CnnzooError(f"unknown setting {name!r}")
        if value is not None:
            values[name] = _coerce(name, value, "command line")
    return validate(TrainConfig(**values))


def resume_config(run: str, config_file: str | None, overrides: dict[str, Any]) -> TrainConfig:
    """The saved config of run folder `run`, with the settings a resumed run may change (RESUMABLE) taken from
    `config_file` and `overrides`; any other setting that differs from the saved one is refused."""
    path = Path(run) / "config.yaml"
    if not path.is_file():
        raise CnnzooError(f"{run!r} is not a run folder (it has no config.yaml); pass the --out folder of an earlier run")
    if not (Path(run) / "checkpoints" / "last.pt").is_file():
        raise CnnzooError(f"{run} holds no checkpoint to resume (the run stopped before its first epoch ended); "
                          f"start it again with --out {run}")
    saved = read_yaml(path)
    given = read_yaml(config_file) if config_file else {}
    given |= {k: _coerce(k, v, "command line") for k, v in overrides.items() if v is not None and k in FIELDS}
    for name, value in given.items():
        if name == "out" and Path(value).resolve() != Path(run).resolve():
            raise CnnzooError(f"--resume continues {run} in place; drop --out")
        if name in RESUMABLE:
            saved[name] = value
        elif saved.get(name) != value:
            raise CnnzooError(f"{run} was trained with {name} = {saved.get(name)!r}, not {value!r}; "
                              f"a resumed run keeps its settings (start a new run to change them)")
    saved["out"] = str(run)
    return validate(TrainConfig(**saved))


# Numeric settings and their ranges: (low, high, low inclusive, high inclusive); None: unbounded.
RANGES = {
    "epochs": (1, None, True, None), "batch_size": (1, None, True, None), "lr": (0, None, True, None),
    "momentum": (0, 1, True, False), "weight_decay": (0, None, True, None), "warmup_epochs": (0, None, True, None),
    "step_epochs": (1, None, True, None), "step_gamma": (0, None, False, None), "label_smoothing": (0, 1, True, False),
    "grad_clip": (0, None, False, None), "workers": (0, None, True, None), "threads": (1, None, True, None),
    "input_size": (1, 4096, True, True), "in_chans": (1, None, True, None), "crop_pct": (0, 1, False, True),
    "scale_min": (0, 1, False, True), "val": (0, 1, True, False), "test": (0, 1, True, False),
    "precise_bn": (0, None, True, None), "ema": (0, 1, False, False), "patience": (1, None, True, None),
    "accum_steps": (1, None, True, None), "mixup": (0, None, True, None), "cutmix": (0, None, True, None),
}


def _in_range(value: float, low, high, low_inc, high_inc) -> bool:
    if low is not None and (value < low or (value == low and not low_inc)):
        return False
    return high is None or value < high or (value == high and high_inc)


def _describe(low, high, low_inc, high_inc) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>=' if low_inc else '>'} {low}")
    if high is not None:
        parts.append(f"{'<=' if high_inc else '<'} {high}")
    return " and ".join(parts)


def validate(cfg: TrainConfig) -> TrainConfig:
    """Refuse nonsense before any work: NaN/inf, values out of range, a mean without a std."""
    for name, (low, high, low_inc, high_inc) in RANGES.items():
        value = getattr(cfg, name)
        if value is None:
            continue
        if not math.isfinite(value) or not _in_range(value, low, high, low_inc, high_inc):
            raise CnnzooError(f"{name} = {value!r} is out of range: it must be a finite number "
                              f"{_describe(low, high, low_inc, high_inc)}")
    if cfg.val + cfg.test >= 1:
        raise CnnzooError(f"val ({cfg.val}) + test ({cfg.test}) leave no training images; keep their sum below 1")
    if (cfg.mean is None) != (cfg.std is None):
        raise CnnzooError("--mean and --std go together: give both (one value per channel) or neither")
    for name in ("mean", "std"):
        values = getattr(cfg, name) or []
        if not all(math.isfinite(v) for v in values) or (name == "std" and any(v <= 0 for v in values)):
            raise CnnzooError(f"{name} = {values} must be finite numbers{' > 0' if name == 'std' else ''}")
    return cfg


def save_yaml(cfg: TrainConfig, path: str | os.PathLike) -> None:
    """Write the resolved config atomically (temporary file, then rename; see `cnnzoo.fileio`)."""
    from ..fileio import write_text

    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
