"""The training loop: `train(...)` is `cnnzoo train`.

One epoch: reseed every generator from (seed, epoch, rank); for each batch, forward under autocast,
loss (cross-entropy with label smoothing; GoogLeNet's two auxiliary heads add 0.3 x their loss, as in
the paper), backward (through the grad scaler for fp16), optimizer step, schedule step. Then validate,
write `checkpoints/last.pt` (and `best.pt` when validation top-1 improves), append to `metrics.jsonl`.

Exact resume: the data order (DistributedSampler: seed + epoch), each sample's augmentation (seeded by
seed, epoch, index) and the generators (reseeded per epoch) depend only on the epoch number, and the
checkpoint holds the model, optimizer, schedule and scaler, so a run resumed from the end of epoch k
repeats epochs k+1... exactly as an uninterrupted run does (bitwise on CPU, where kernels are
deterministic for a fixed thread count).
"""
from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CnnzooError
from ..weights import load_pretrained
from .checkpoint import load_weights, read_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig, build_config, resume_config, save_yaml
from .distributed import DistEnv, all_sum, barrier, broadcast_buffers, setup, teardown
from .evaluation import autocast, evaluate_loader
from .extras import check_run_folder, make_ema, make_mixer, remove_unfinished, zero_init_residual
from .metrics import MetricsLog
from .optim import Schedule, build_optimizer
from .precise_bn import recompute_bn_stats
from .prepare import build_loaders, cpu_threads, load_source, read_start_weights, resolve
from .runlog import Progress, RunLog, tensorboard_writer

AUX_WEIGHT = 0.3  # Szegedy et al. 2015, section 5: "their loss is added to the total loss with a discount weight (0.3)"
PAUSE_ENV = "CNNZOO_TRAIN_PAUSE_AT_STEP"  # fault injection for tests: block after this optimizer step


def train(config_file: str | None = None, *, resume: str | None = None, **overrides: Any) -> dict[str, Any]:
    """Train a model; return the run's summary (also written to `results.json`).

    `config_file` is a YAML file of settings; `overrides` (TrainConfig fields) win over it. With
    `resume=RUN`, the run's saved config is used and training continues from `checkpoints/last.pt`.
    """
    cfg = resume_config(resume, config_file, overrides) if resume else build_config(config_file, **overrides)
    if not cfg.model:
        raise CnnzooError("--model is required; run `cnnzoo list` to see the names")
    if not cfg.data:
        raise CnnzooError("--data is required: an image folder, a CSV (path,label[,split]), digits or synthetic")
    env = setup(cfg.device)
    try:
        return Trainer(cfg, env, resume).fit()
    finally:
        teardown(env)


def seed_everything(seed: int, epoch: int, rank: int) -> None:
    """Python, NumPy, torch (CPU and CUDA) from (seed, epoch, rank): an epoch's randomness depends on nothing else."""
    s = hash((seed, epoch, rank)) & 0xFFFF_FFFF
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def loss_of(out, target: torch.Tensor, criterion) -> torch.Tensor:
    """Cross-entropy of the logits, plus AUX_WEIGHT x that of each auxiliary head (GoogLeNet's aux1, aux2)."""
    if isinstance(out, tuple) and "logits" in getattr(out, "_fields", ()):
        loss = criterion(out.logits, target)
        for name in out._fields:
            aux = getattr(out, name)
            if name.startswith("aux") and aux is not None:
                loss = loss + AUX_WEIGHT * criterion(aux, target)
        return loss
    return criterion(out, target)


class Trainer:
    """One run: `fit()` prepares everything (failing before writing anything), then trains and tests."""

    def __init__(self, cfg: TrainConfig, env: DistEnv, resume: str | None = None) -> None:
        self.cfg, self.env, self.resume = cfg, env, resume

    def fit(self) -> dict[str, Any]:
        with cpu_threads(self.cfg, self.env):
            return self._fit()

    def _fit(self) -> dict[str, Any]:
        self._prepare()
        try:
            self._build()
            for epoch in range(self.start_epoch, self.cfg.epochs):
                if self._patience_out():
                    break
                t0 = time.perf_counter()
                self._train_epoch(epoch)
                self._end_epoch(epoch, t0)
        except BaseException:
            if self.env.is_main and self.owns_folder:  # nothing worth keeping: the same --out works again
                remove_unfinished(self.run)
            raise
        if self.tb is not None:
            self.tb.close()
        return self._finish()

    def _prepare(self) -> None:
        """Everything that can fail on the user's input, before anything is written."""
        env = self.env
        # fixed input sizes: let cuDNN time its kernels; TF32 for fp32 (CUDA runs are not bitwise anyway)
        if env.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        source = load_source(self.cfg)  # named data sets read their root and --download from the config
        resuming = bool(self.resume) and (Path(self.resume) / "checkpoints" / "last.pt").is_file()
        self.notes: list[str] = []
        # a resumed run's weights are its checkpoint's
        weights = None if resuming else read_start_weights(self.cfg, source, self.notes)
        cfg = resolve(self.cfg, source, env.device)
        if env.distributed:  # rank 0 chose the run folder
            box = [cfg.out]
            torch.distributed.broadcast_object_list(box, src=0)
            cfg.out = box[0]
        from ..models import create_model

        torch.manual_seed(cfg.seed)
        model = create_model(cfg.model, num_classes=len(source.classes), in_chans=cfg.in_chans)
        if cfg.zero_init_residual and weights is None and not resuming and zero_init_residual(model):
            self.notes.append("residual blocks start as the identity (last batch-norm scale 0; --zero-init-residual)")
        self.loaders = build_loaders(cfg, source, env)
        if weights is not None:
            load_pretrained(model, weights, log=self.notes.append)
        self.ckpt = None
        if resuming:
            self.ckpt = read_checkpoint(self.resume, "last")
            if self.ckpt["classes"] != source.classes:
                raise CnnzooError(f"the data's classes no longer match the run's ({self.ckpt['path']}); "
                                  f"resume with the data it was trained on")
            load_weights(model, self.ckpt)
        self.run = Path(cfg.out)
        half = check_run_folder(self.run, self.resume) if env.is_main else False
        self.owns_folder = not self.resume and (half or not self.run.exists())
        if half:
            self.notes.append(f"replacing the half-written run in {self.run} (it had no checkpoint)")
            remove_unfinished(self.run)
        barrier(env)  # every process has checked its input before rank 0 writes anything
        self.cfg, self.source, self.model = cfg, source, model

    def _build(self) -> None:
        """The run folder, the model on its device, optimizer, schedule, scaler; the checkpoint's state if resuming."""
        cfg, env, run = self.cfg, self.env, self.run
        if env.is_main:
            (run / "checkpoints").mkdir(parents=True, exist_ok=True)
            for marker in run.glob(".paused-at-step-*"):
                marker.unlink()
            save_yaml(cfg, run / "config.yaml")
            (run / "classes.json").write_text(json.dumps(self.source.classes, indent=1))
        self.log = RunLog(run / "log.txt" if env.is_main else None)
        self.model = self.model.to(env.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model, cfg)
        self.ema = make_ema(self.model, cfg.ema)
        self.mixer = make_mixer(cfg.mixup, cfg.cutmix, len(self.source.classes))
        self.batches_per_epoch = len(self.loaders["train"])
        self.steps_per_epoch = -(-self.batches_per_epoch // cfg.accum_steps)  # optimizer steps
        self.schedule = Schedule(self.optimizer, cfg, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(env.device.type, enabled=cfg.precision == "fp16")
        self.start_epoch, self.step, self.best, self.history = 0, 0, None, []
        if self.ckpt is not None:
            c = self.ckpt
            self.optimizer.load_state_dict(c["optimizer"])
            self.schedule.load_state_dict(c["scheduler"])
            self.scaler.load_state_dict(c["scaler"])
            set_rng_state(c["rng"])
            self.start_epoch, self.step, self.history = c["epoch"], c["step"], list(c["history"])
            self.best = (c["best_top1"], -c["best_loss"], c["best_epoch"])
            if self.ema is not None:
                self.ema.module.load_state_dict(c["ema_state_dict"])
                self.ema.n_averaged.copy_(c["ema_n_averaged"])
        self.metrics = MetricsLog(run / "metrics.jsonl")
        if env.is_main:
            self.metrics.rewrite(self.history)  # drops the row of an epoch that ended after the last checkpoint
        self.ddp = self.model
        if env.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [env.device.index] if env.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:  # outermost, so that DDP's bucketed all-reduce is compiled with the step (torch docs)
            self.ddp = torch.compile(self.ddp)
        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.tb = tensorboard_writer(run, cfg.tensorboard and env.is_main, self.log)
        params = sum(p.numel() for p in self.model.parameters())
        sizes = ", ".join(f"{k} {len(v)}" for k, v in self.source.splits.items())
        threads = f", {torch.get_num_threads()} thread(s)" if env.device.type == "cpu" else ""
        self.log(f"{cfg.model} ({params / 1e6:.2f} M parameters) on {cfg.data} ({len(self.source.classes)} classes; "
                 f"{sizes}) at {cfg.input_size} px, {env.device}, {cfg.precision}"
                 f"{', channels_last' if cfg.channels_last else ''}, {env.world_size} process(es){threads} -> {run}")
        if self.ema is not None:
            self.notes.append(f"validating an EMA of the weights (decay {cfg.ema}); checkpoints hold both, "
                              f"evaluate and predict use the EMA weights")
        for note in self.notes:
            self.log(note)
        if self.start_epoch:
            done = " (the run was already complete)" if self.start_epoch >= cfg.epochs else ""
            self.log(f"resuming after epoch {self.start_epoch} (step {self.step}) from {self.ckpt['path']}{done}")
        show = cfg.progress if cfg.progress is not None else sys.stderr.isatty()
        self.progress = Progress(show and env.is_main, cfg.epochs * self.steps_per_epoch, self.step)
        self.pause_at = int(os.environ.get(PAUSE_ENV, "0"))
        self.lr = self.schedule.lr()
        self.skipped = _read_skipped(run / "skipped.txt")
        self.train_seconds, self.train_images = 0.0, 0

    def _train_epoch(self, epoch: int) -> None:
        cfg, env = self.cfg, self.env
        t0 = time.perf_counter()
        seed_everything(cfg.seed, epoch, env.rank)
        self.loaders["train"].sampler.set_epoch(epoch)
        self.ddp.train()
        check_every = 1 if env.device.type == "cpu" else 25  # a CUDA .item() waits for the GPU
        loss_sum, seen, skipped = torch.zeros((), device=env.device), 0, []
        bar = self.progress.epoch(epoch, cfg.epochs, self.steps_per_epoch)
        self.optimizer.zero_grad(set_to_none=True)
        for i, (x, y, bad) in enumerate(self.loaders["train"]):
            skipped += bad
            if not len(y):
                if env.distributed:  # the other processes wait for this one's gradient: it cannot skip
                    raise CnnzooError(f"every image of a batch was unreadable ({bad[0].path}, ...); "
                                      f"run `cnnzoo data check {cfg.data}` and remove them")
                continue
            x, y = x.to(env.device, non_blocking=True), y.to(env.device, non_blocking=True)
            target = y
            if self.mixer is not None:  # seeded through torch's generator, reseeded every epoch
                x, target = self.mixer(x, y)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(env.device, cfg.precision):
                loss = loss_of(self.ddp(x), target, self.criterion)
            self.scaler.scale(loss / cfg.accum_steps).backward()
            if (i + 1) % cfg.accum_steps == 0 or i + 1 == self.batches_per_epoch:
                self._optimizer_step()
            loss_sum += loss.detach().float() * len(y)
            seen += len(y)
            if (i + 1) % check_every == 0 or i + 1 == self.batches_per_epoch:
                running = float(loss_sum) / seen
                if not math.isfinite(running):
                    self._stop_nonfinite(running, epoch)
                self.progress.update(bar, i + 1, self.step, running, self.lr,
                                     seen * env.world_size / (time.perf_counter() - t0))
            if self.pause_at and self.step == self.pause_at:
                self._pause()
        self.progress.close(bar)
        seconds = time.perf_counter() - t0
        loss_total, seen_total, n_bad = all_sum([float(loss_sum), seen, len(skipped)], env)
        if not math.isfinite(loss_total):
            self._stop_nonfinite(loss_total, epoch)
        if not seen_total:
            raise CnnzooError(f"no training image of {cfg.data} could be read in epoch {epoch + 1}; "
                              f"run `cnnzoo data check {cfg.data}`")
        self.train_seconds += seconds
        self.train_images += int(seen_total)
        self.epoch_stats = {"train_loss": loss_total / max(seen_total, 1), "images": int(seen_total),
                            "seconds": seconds, "skipped": int(n_bad), "skipped_list": self._gather_skipped(skipped)}

    def _optimizer_step(self) -> None:
        """Clip, step (through the fp16 scaler), update the EMA and the schedule."""
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.lr = self.schedule.lr()
        self.schedule.step()
        self.step += 1

    def _precise_bn(self, epoch: int) -> None:
        """Batch-norm statistics of the final weights (see precise_bn.py), for the raw and the EMA model."""
        if not self.cfg.precise_bn:
            return
        cfg, env = self.cfg, self.env
        loader = self.loaders["bn_stats"]  # training images, not augmented (prepare.build_loaders says why)
        loader.sampler.set_epoch(epoch)  # each epoch its own seeded subset: deterministic on resume

        def inputs():
            for x, y, _ in loader:
                x = x.to(env.device, non_blocking=True)
                yield x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x

        for model in [self.model] + ([self.ema.module] if self.ema is not None else []):
            with autocast(env.device, cfg.precision):
                recompute_bn_stats(model, inputs(), cfg.precise_bn)

    def _patience_out(self) -> bool:
        """Early stopping: validation top-1 has not improved for `patience` epochs (logged once)."""
        cfg = self.cfg
        if not cfg.patience or self.best is None or "val" not in self.loaders:
            return False
        waited = len(self.history) - self.best[2]
        if waited >= cfg.patience:
            self.log(f"stopping early: validation top-1 has not improved for {waited} epoch(s) "
                     f"(best {100 * self.best[0]:.2f}% in epoch {self.best[2]}; --patience {cfg.patience})")
            return True
        return False

    def _end_epoch(self, epoch: int, t0: float) -> None:
        """Validate, choose best, write the checkpoints and the metrics row (rank 0), log the epoch."""
        cfg, env, s = self.cfg, self.env, self.epoch_stats
        self._precise_bn(epoch)
        broadcast_buffers(self.model, env)
        if self.ema is not None:
            broadcast_buffers(self.ema.module, env)
        val = raw = None
        if "val" in self.loaders:
            val = raw = self._validate()
            if self.ema is not None:
                val = self._validate(model=self.ema.module)
            for which, v in (("validation", val), ("validation (raw weights)", raw)):
                if not math.isfinite(v["loss"]):
                    self._stop_nonfinite(v["loss"], epoch, which)
        top5 = val and (val["top5"] if len(self.source.classes) > 5 else None)
        row = {"epoch": epoch + 1, "step": self.step, "train_loss": s["train_loss"],
               "val_loss": val and val["loss"], "val_top1": val and val["top1"], "val_top5": top5,
               **({"raw_val_top1": raw and raw["top1"]} if self.ema is not None else {}),
               "lr": self.lr, "seconds": round(time.perf_counter() - t0, 3),
               "images_per_s": round(s["images"] / s["seconds"], 1), "skipped": s["skipped"]}
        # Best: highest validation top-1, then lowest validation loss; a tie goes to the later epoch.
        key = (val["top1"], -val["loss"], epoch + 1) if val else (0.0, -row["train_loss"], epoch + 1)
        is_best = self.best is None or key[:2] >= self.best[:2]
        self.best = key if is_best else self.best
        self.history.append(row)
        if env.is_main:
            state = {"model": cfg.model, "num_classes": len(self.source.classes), "in_chans": cfg.in_chans,
                     "input_size": cfg.input_size, "mean": cfg.mean, "std": cfg.std, "crop_pct": cfg.crop_pct,
                     "classes": self.source.classes, "state_dict": self.model.state_dict(),
                     "optimizer": self.optimizer.state_dict(), "scheduler": self.schedule.state_dict(),
                     "scaler": self.scaler.state_dict(), "epoch": epoch + 1, "step": self.step,
                     "best_top1": self.best[0], "best_loss": -self.best[1], "best_epoch": self.best[2],
                     "history": self.history, "rng": rng_state(), "config": cfg.to_dict()}
            if self.ema is not None:
                state |= {"ema_state_dict": self.ema.module.state_dict(), "ema_n_averaged": self.ema.n_averaged}
            save_checkpoint(state, self.run / "checkpoints", best=is_best)
            self.metrics.append(row)
            if self.tb is not None:
                for k in ("train_loss", "val_loss", "val_top1", "val_top5", "lr", "images_per_s"):
                    if row[k] is not None:
                        self.tb.add_scalar(k, row[k], epoch + 1)
        new = [(p, why) for p, why in s["skipped_list"] if p not in self.skipped]
        if new:  # each unreadable image is reported once per run, and listed in skipped.txt
            self.skipped.update(new)
            if env.is_main:
                (self.run / "skipped.txt").write_text("".join(f"{p}\t{why}\n" for p, why in sorted(self.skipped.items())))
            self.log(f"skipped {len(new)} unreadable image(s) (listed in {self.run / 'skipped.txt'}): "
                     + "; ".join(f"{p} ({why})" for p, why in new[:5]) + ("; ..." if len(new) > 5 else ""))
        self.log(self._epoch_line(row, cfg.epochs, is_best))

    def _validate(self, split: str = "val", model: torch.nn.Module | None = None) -> dict[str, Any]:
        return evaluate_loader(model or self.model, self.loaders[split], env=self.env, precision=self.cfg.precision,
                               channels_last=bool(self.cfg.channels_last))

    def _gather_skipped(self, skipped: list) -> list[tuple[str, str]]:
        mine = [(s.path, s.reason) for s in skipped]
        if not self.env.distributed:
            return mine
        everyone: list = [None] * self.env.world_size
        torch.distributed.all_gather_object(everyone, mine)
        return [s for part in everyone for s in part]

    def _epoch_line(self, row: dict[str, Any], epochs: int, is_best: bool) -> str:
        top5 = f"val_top5 {100 * row['val_top5']:.2f}%  " if row["val_top5"] is not None else ""
        raw = f"(raw {100 * row['raw_val_top1']:.2f}%)  " if row.get("raw_val_top1") is not None else ""
        val = (f"val_loss {row['val_loss']:.4f}  val_top1 {100 * row['val_top1']:.2f}%  {raw}{top5}"
               if row["val_top1"] is not None else "")
        return (f"epoch {row['epoch']}/{epochs}  train_loss {row['train_loss']:.4f}  {val}lr {row['lr']:.2e}  "
                f"{row['images_per_s']:.0f} img/s  {row['seconds']:.1f} s{'  *best' if is_best else ''}")

    def _stop_nonfinite(self, value: float, epoch: int, which: str = "training") -> None:
        last = self.run / "checkpoints" / "last.pt"
        kept = f"the last good checkpoint {last} is kept" if last.exists() else "no checkpoint had been written yet"
        msg = (f"the {which} loss became {value} in epoch {epoch + 1} (step {self.step}, lr {self.lr:.3g}); training stopped "
               f"and {kept}; lower --lr, add --grad-clip 1.0, or use --precision fp32")
        self.log(msg, echo=False)
        raise CnnzooError(msg)

    def _pause(self) -> None:
        if self.env.is_main:
            (self.run / f".paused-at-step-{self.step}").touch()
        self.log(f"paused after step {self.step} ({PAUSE_ENV})", echo=False)
        while True:
            time.sleep(60)

    def _finish(self) -> dict[str, Any]:
        cfg, env, run, best = self.cfg, self.env, self.run, self.best
        summary: dict[str, Any] = {
            "out": str(run), "model": cfg.model, "data": cfg.data, "epochs": cfg.epochs,
            "best_epoch": best[2] if best else None,
            "best_val_top1": best[0] if best and "val" in self.loaders else None,
            "train_seconds": round(self.train_seconds, 2),
            "images_per_s": round(self.train_images / self.train_seconds, 1) if self.train_seconds else None,
            "skipped_images": sorted(self.skipped)}
        barrier(env)
        if "test" in self.loaders and best is not None:
            # The model at the end of the schedule (what the run trained), then the one validation chose.
            for which, prefix in (("last", "test"), ("best", "best_test")):
                ckpt = read_checkpoint(run, which)
                load_weights(self.model, ckpt, ema=True)
                test = self._validate("test")
                summary |= {f"{prefix}_top1": test["top1"], f"{prefix}_top5": test["top5"],
                            f"{prefix}_loss": test["loss"], "test_images": test["images"]}
                top5 = f"top-5 {100 * test['top5']:.2f}%  " if len(self.source.classes) > 5 else ""
                self.log(f"test, {which} (epoch {ckpt['epoch']}): top-1 {100 * test['top1']:.2f}%  "
                         f"{top5}loss {test['loss']:.4f}  ({test['images']} images)")
                if ckpt["epoch"] == best[2]:  # last is best: the same figures
                    summary |= {f"best_test_{k}": summary[f"test_{k}"] for k in ("top1", "top5", "loss")}
                    break
        if self.skipped:
            self.log(f"{len(self.skipped)} unreadable image(s) were skipped in all; they are listed in {run / 'skipped.txt'}")
        if env.is_main:
            (run / "results.json").write_text(json.dumps(summary, indent=1))
        self.log(f"done: {run}  (checkpoints/best.pt, metrics.jsonl, log.txt)")
        return summary


def _read_skipped(path: Path) -> dict[str, str]:
    """The unreadable images an earlier part of this run listed (a resumed run reports only new ones)."""
    if not path.is_file():
        return {}
    return dict(line.split("\t", 1) for line in path.read_text().splitlines() if "\t" in line)
