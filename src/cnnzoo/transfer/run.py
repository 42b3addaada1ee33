"""`cnnzoo transfer MODE`: one transfer run, written to a run folder like `cnnzoo train`'s.

- features: run the data through the network once (eval transform, no augmentation), keep one layer's
  activations (`features-SPLIT.npy`, `labels-SPLIT.npy`) and fit scikit-learn's logistic regression on
  them (L2, strength 1/C, on standardised features). On `pool` (= fc7 for AlexNet and VGG) the fitted
  map is folded into the network's last layer, so the checkpoint is a complete classifier.
- linear: a new last layer trained by SGD with the training augmentation; everything below it is
  frozen and stays in eval mode, so batch norm keeps the pretrained statistics and dropout is off.
- finetune: every layer trained, the backbone at `backbone_lr` times the head's learning rate
  (discriminative learning rates); `head_epochs` > 0 first trains the new head alone, backbone frozen,
  so that the random head's large early gradients do not wreck the pretrained features (Keras's and
  fastai's recipe). Each phase has its own learning-rate schedule. `freeze_bn` keeps every batch norm in
  eval mode (its pretrained statistics; its scale and shift still learn), as Keras's guide advises: with
  a handful of images per batch, batch statistics are noisy and differ from the ones at test time.

Settings are `cnnzoo train`'s (`TrainConfig`: epochs, batch size, optimizer, schedule, ...) plus the
transfer's own (`TransferSettings`). The loop here is a small one rather than `cnnzoo.train`'s Trainer,
which builds its own model and data and gives every parameter group one learning rate; it reuses the
trainer's pieces (config resolution, loaders, loss, evaluation, checkpoint format, logs), so the run
folder reads the same and `load_checkpoint(run)` returns the transferred model. A transfer run is short
and is not resumable: its checkpoints are written when it ends.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader

from ..data import ImageDataset, collate, eval_transform
from ..errors import CnnzooError
from ..fileio import atomic_write, make_folder, write_text
from ..train.checkpoint import save_checkpoint
from ..train.config import build_config
from ..train.distributed import DistEnv, pick_device
from ..train.evaluation import autocast, evaluate_loader
from ..train.loop import loss_of, seed_everything
from ..train.metrics import MetricsLog, topk_correct
from ..train.optim import Schedule
from ..train.prepare import build_loaders, cpu_threads, default_out, load_source, read_start_weights, resolve
from ..train.runlog import RunLog
from ..weights import Weights, head_modules, load_pretrained
from .data import select
from .layers import PRE_LOGITS, extract, resolve_layer

MODES = ("features", "linear", "finetune")


@dataclasses.dataclass
class TransferSettings:
    """What a transfer run adds to `cnnzoo train`'s settings."""

    mode: str = "finetune"  # features, linear or finetune
    weights: str | None = None  # weights file, run folder or URL; None trains from scratch (the baseline)
    classes: str | None = None  # the classes to keep ("5-9", "cat,dog"); default all
    shots: int | None = None  # training images per class; default all (a few-shot task has no val split)
    layer: str = PRE_LOGITS  # features: the layer whose activations are the features
    C: float = 1.0  # features: inverse L2 strength of the logistic regression
    backbone_lr: float = 0.1  # finetune: the backbone's learning rate, as a fraction of the head's
    head_epochs: int = 0  # finetune: epochs of training the new head alone before unfreezing
    freeze_bn: bool = False  # finetune: batch norm keeps its pretrained statistics (eval mode) while training


def transfer(mode: str, *, weights: str | None = None, classes: str | None = None, shots: int | None = None,
             layer: str = PRE_LOGITS, C: float = 1.0, backbone_lr: float = 0.1, head_epochs: int = 0,
             freeze_bn: bool = False, config_file: str | None = None, quiet: bool = False,
             **overrides: Any) -> dict[str, Any]:
    """Run one transfer (see the module docstring); `overrides` are `cnnzoo train` settings (model, data, epochs,
    lr, seed, out, ...). Returns the summary also written to `results.json`."""
    if mode not in MODES:
        raise CnnzooError(f"transfer mode must be one of {', '.join(MODES)}, got {mode!r}")
    cfg = build_config(config_file, **overrides)
    cfg.weights = weights or cfg.weights  # the argument, else the config's `weights`
    s = TransferSettings(mode, cfg.weights, classes, shots, layer, C, backbone_lr, head_epochs, freeze_bn)
    if not cfg.model or not cfg.data:
        raise CnnzooError("--model and --data are required")
    if mode == "finetune" and not 0 <= head_epochs < cfg.epochs:
        raise CnnzooError(f"--head-epochs ({head_epochs}) must be at least 0 and less than --epochs ({cfg.epochs})")
    if backbone_lr < 0 or C <= 0:
        raise CnnzooError("--backbone-lr must be >= 0 and --C > 0")
    env = DistEnv(device=pick_device(cfg.device))
    with cpu_threads(cfg, env):
        return _Run(s, cfg, env, quiet).go()


class _Run:
    def __init__(self, s: TransferSettings, cfg, env: DistEnv, quiet: bool) -> None:
        self.s, self.cfg, self.env, self.quiet = s, cfg, env, quiet
        self.notes: list[str] = []

    # --- before anything is written ------------------------------------------------------------------
    def _prepare(self) -> None:
        s, cfg = self.s, self.cfg
        env = self.env
        full = load_source(cfg)
        source = select(full, s.classes, s.shots, seed=cfg.seed)
        w: Weights | None = read_start_weights(cfg, source, self.notes)  # cfg.weights is s.weights
        cfg.out = cfg.out or default_out(f"{cfg.model}-{s.mode}", source.name)
        self.cfg = cfg = resolve(cfg, source, env.device)
        self.run = Path(cfg.out)
        if self.run.exists() and any(self.run.iterdir()):
            raise CnnzooError(f"{self.run} already holds a run; choose another --out")
        torch.manual_seed(cfg.seed)
        from ..models import create_model

        model = create_model(cfg.model, num_classes=len(source.classes), in_chans=cfg.in_chans)
        if w is not None:
            load_pretrained(model, w, new_head=True, log=self.notes.append)
        elif s.mode != "finetune":
            raise CnnzooError(f"transfer {s.mode} needs --weights (a file, run folder or URL)")
        else:
            self.notes.append("no weights: every layer starts from its random initialisation (training from scratch)")
        if s.mode == "features":
            resolve_layer(model, s.layer)  # an unknown layer fails before the run folder exists
        self.model, self.source = model.to(env.device), source

    def go(self) -> dict[str, Any]:
        self._prepare()
        cfg, run = self.cfg, self.run
        make_folder(run)
        config = cfg.to_dict() | {"transfer": dataclasses.asdict(self.s)}
        write_text(run / "config.yaml", yaml.safe_dump(config, sort_keys=False))
        write_text(run / "classes.json", json.dumps(self.source.classes, indent=1))
        self.log = (_Quiet if self.quiet else RunLog)(run / "log.txt")
        sizes = ", ".join(f"{k} {len(v)}" for k, v in self.source.splits.items())
        self.log(f"transfer {self.s.mode}: {cfg.model} on {cfg.data} (classes {', '.join(self.source.classes)}; "
                 f"{sizes}) at {cfg.input_size} px, {self.env.device}, {cfg.precision} -> {run}")
        for note in self.notes:
            self.log(note)
        self.metrics = MetricsLog(run / "metrics.jsonl")
        t0 = time.perf_counter()
        summary = self._features() if self.s.mode == "features" else self._train()
        summary |= {"out": str(run), "mode": self.s.mode, "model": cfg.model, "data": cfg.data,
                    "weights": self.s.weights, "classes": self.source.classes, "shots": self.s.shots,
                    "seconds": round(time.perf_counter() - t0, 2)}
        write_text(run / "results.json", json.dumps(summary, indent=1))
        self.log(f"test: top-1 {100 * summary['test_top1']:.2f}%  top-5 {100 * summary['test_top5']:.2f}%  "
                 f"({summary['test_images']} images); done: {run}")
        return summary

    def _state(self, state_dict: dict, epoch: int, step: int, best: tuple | None, history: list) -> dict[str, Any]:
        """A checkpoint in `cnnzoo train`'s format, so load_checkpoint, evaluate, export and serve read it."""
        c = self.cfg
        return {"model": c.model, "num_classes": len(self.source.classes), "in_chans": c.in_chans,
                "input_size": c.input_size, "mean": c.mean, "std": c.std, "crop_pct": c.crop_pct,
                "classes": self.source.classes, "state_dict": state_dict, "epoch": epoch, "step": step,
                "best_top1": best[0] if best else None, "best_epoch": best[2] if best else None,
                "history": history, "config": c.to_dict() | {"transfer": dataclasses.asdict(self.s)}}

    def _eval_loader(self, split: str) -> DataLoader:
        c = self.cfg
        tf = eval_transform(c.input_size, c.mean, c.std, in_chans=c.in_chans, crop_pct=c.crop_pct)
        ds = ImageDataset(self.source.splits[split], tf, in_chans=c.in_chans)
        return DataLoader(ds, batch_size=2 * c.batch_size, num_workers=0, collate_fn=collate)

    # --- features: activations + logistic regression --------------------------------------------------
    def _features(self) -> dict[str, Any]:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        s, c, run, model = self.s, self.cfg, self.run, self.model
        data = {}
        for split in self.source.splits:
            x, y = extract(model, self._eval_loader(split), s.layer, device=self.env.device, precision=c.precision)
            atomic_write(run / f"features-{split}.npy", lambda f: np.save(f, x))
            atomic_write(run / f"labels-{split}.npy", lambda f: np.save(f, y))
            data[split] = (x, y)
        k = len(self.source.classes)
        xtr, ytr = data["train"]
        if len(np.unique(ytr)) != k:
            raise CnnzooError("every class needs at least one readable training image to fit the classifier")
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=s.C, max_iter=5000, random_state=c.seed))
        clf.fit(xtr, ytr)
        weight, bias = _fold(clf, k)  # logits = x @ weight.T + bias, on the raw features
        atomic_write(run / "linear.npz", lambda f: np.savez(f, weight=weight, bias=bias, layer=s.layer,
                                                             classes=np.array(self.source.classes)))
        row: dict[str, Any] = {"epoch": 1, "step": 1, "features": int(xtr.shape[1])}
        for split, (x, y) in data.items():
            scores = torch.from_numpy(x @ weight.T + bias)
            top1, top5 = topk_correct(scores, torch.from_numpy(y))
            row |= {f"{split}_top1": top1 / len(y), f"{split}_top5": top5 / len(y)}
        self.metrics.append(row)
        self.log(f"{s.layer}: {xtr.shape[1]} features x {len(ytr)} training images; logistic regression (C={s.C}): "
                 + "  ".join(f"{k_} {100 * v:.2f}%" for k_, v in row.items() if k_.endswith("top1")))
        if resolve_layer(model, s.layer) == PRE_LOGITS:
            head = model.get_classifier()
            with torch.no_grad():
                head.weight.copy_(torch.from_numpy(weight))
                head.bias.copy_(torch.from_numpy(bias))
            sd = {k_: v.detach().cpu() for k_, v in model.state_dict().items()}
            save_checkpoint(self._state(sd, 1, 1, (row.get("val_top1", row["train_top1"]), 0, 1), [row]),
                            run / "checkpoints", best=True)
        else:
            self.log(f"{s.layer} is not the last layer's input: the classifier is in linear.npz, not in a checkpoint")
        return {"layer": s.layer, "features": int(xtr.shape[1]), "train_top1": row["train_top1"],
                "val_top1": row.get("val_top1"), "test_top1": row.get("test_top1"), "test_top5": row.get("test_top5"),
                "test_images": len(data["test"][1]) if "test" in data else 0}

    # --- linear and finetune: SGD ----------------------------------------------------------------------
    def _train(self) -> dict[str, Any]:
        s, c, env, model = self.s, self.cfg, self.env, self.model
        loaders = build_loaders(c, self.source, env)
        heads = head_modules(model)
        is_head = {name: name.rpartition(".")[0] in heads for name, _ in model.named_parameters()}
        phases = [("head", c.epochs)] if s.mode == "linear" else (
            [("head", s.head_epochs)] if s.head_epochs else []) + [("all", c.epochs - s.head_epochs)]
        criterion = torch.nn.CrossEntropyLoss(label_smoothing=c.label_smoothing)
        epoch, step, best, history, best_sd = 0, 0, None, [], None
        for phase, n_epochs in phases:
            frozen = phase == "head"
            for name, p in model.named_parameters():
                p.requires_grad_(is_head[name] or not frozen)
            scale = 1.0 if s.weights is None else s.backbone_lr
            optimizer = _optimizer(model, c, {n: 1.0 if is_head[n] else scale for n in is_head})
            pc = dataclasses.replace(c, epochs=n_epochs, warmup_epochs=_warmup(c.sched, n_epochs))
            schedule = _ScaledSchedule(optimizer, pc, len(loaders["train"]))
            self.log(f"{'new head alone, backbone frozen' if frozen else 'every layer'}: {n_epochs} epoch(s), "
                     f"lr {c.lr:.3g}" + ("" if frozen or s.weights is None else f", backbone x{s.backbone_lr:g}"))
            for _ in range(n_epochs):
                t0 = time.perf_counter()
                seed_everything(c.seed, epoch, 0)
                loaders["train"].sampler.set_epoch(epoch)
                model.train(not frozen)
                if s.freeze_bn:
                    for m in model.modules():
                        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                            m.eval()
                loss_sum, seen = 0.0, 0
                for x, y, _ in loaders["train"]:
                    if not len(y):
                        continue
                    x, y = x.to(env.device), y.to(env.device)
                    with autocast(env.device, c.precision):
                        loss = loss_of(self._forward(x, frozen), y, criterion)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    lr = schedule.lr()
                    schedule.step()
                    step += 1
                    loss_sum, seen = loss_sum + float(loss.detach()) * len(y), seen + len(y)
                epoch += 1
                if not math.isfinite(loss_sum):
                    raise CnnzooError(f"the loss became {loss_sum} in epoch {epoch}; lower --lr")
                val = evaluate_loader(model, loaders["val"], env=env, precision=c.precision, channels_last=False) \
                    if "val" in loaders else None
                row = {"epoch": epoch, "step": step, "phase": phase, "train_loss": loss_sum / max(seen, 1),
                       "val_loss": val and val["loss"], "val_top1": val and val["top1"],
                       "val_top5": val and val["top5"],
                       "lr": lr, "seconds": round(time.perf_counter() - t0, 3)}
                history.append(row)
                self.metrics.append(row)
                key = (val["top1"], -val["loss"], epoch) if val else None
                if key is not None and (best is None or key[:2] >= best[:2]):
                    best, best_sd = key, _cpu_copy(model)
                self.log(f"epoch {epoch}/{c.epochs}  {phase}  train_loss {row['train_loss']:.4f}  "
                         + (f"val_top1 {100 * val['top1']:.2f}%  " if val else "")
                         + f"lr {lr:.2e}  {row['seconds']:.1f} s")
        last_sd = _cpu_copy(model)
        if best_sd is not None and best[2] != epoch:
            save_checkpoint(self._state(best_sd, best[2], step, best, history[:best[2]]), self.run / "checkpoints",
                            best=True)
            save_checkpoint(self._state(last_sd, epoch, step, best, history), self.run / "checkpoints", best=False)
        else:
            save_checkpoint(self._state(last_sd, epoch, step, best, history), self.run / "checkpoints", best=True)
        if best_sd is not None:
            model.load_state_dict(best_sd)  # test the epoch validation chose, as `cnnzoo train` does
        summary = {"epochs": c.epochs, "best_epoch": best[2] if best else epoch,
                   "best_val_top1": best[0] if best else None, "final_train_loss": history[-1]["train_loss"]}
        if "test" in loaders:
            test = evaluate_loader(model, loaders["test"], env=env, precision=c.precision, channels_last=False)
            summary |= {"test_top1": test["top1"], "test_top5": test["top5"], "test_loss": test["loss"],
                        "test_images": test["images"]}
        return summary

    def _forward(self, x: torch.Tensor, frozen: bool):
        m = self.model
        if not frozen:
            return m(x)
        with torch.no_grad():  # the frozen part: no graph, no stored activations
            f = m.forward_head(m.forward_features(x), pre_logits=True)
        return m.get_classifier()(f)


class _Quiet(RunLog):
    """log.txt only, nothing on stdout (the experiment prints its own table)."""

    def __call__(self, message: str, echo: bool = True) -> None:
        super().__call__(message, echo=False)


class _ScaledSchedule(Schedule):
    """The trainer's schedule, applied to each parameter group times its `lr_scale` (discriminative rates)."""

    def _apply(self) -> None:
        lr = self.lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)


def _optimizer(model: torch.nn.Module, cfg, scales: dict[str, float]) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW over the trainable parameters, grouped by lr scale; no decay on 1-D tensors."""
    groups: dict[tuple[float, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad and scales[name] > 0:
            groups.setdefault((scales[name], p.ndim > 1), []).append(p)
    params = [{"params": ps, "lr_scale": sc, "weight_decay": cfg.weight_decay if decay else 0.0}
              for (sc, decay), ps in groups.items()]
    if cfg.opt == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.momentum, 0.999))


def _warmup(sched: str, epochs: int) -> float:
    return 0.25 * epochs if sched == "onecycle" else min(5.0, 0.1 * epochs)


def _cpu_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _fold(clf, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The pipeline's standardisation folded into its linear map: logits = x @ W.T + b on raw features.

    (x - mu) / sigma . a + c = x . (a / sigma) + (c - mu . a / sigma). With two classes scikit-learn keeps
    one row a (the log-odds of class 1); the class-0 row is then zero.
    """
    scaler, lr = clf[0], clf[-1]
    a = lr.coef_ / scaler.scale_
    c = lr.intercept_ - a @ scaler.mean_
    if k == 2 and a.shape[0] == 1:
        a, c = np.vstack([np.zeros_like(a), a]), np.concatenate([[0.0], c])
    return a.astype(np.float32), c.astype(np.float32)


