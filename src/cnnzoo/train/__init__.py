"""Training and testing: the lecture's "train, test" steps (`cnnzoo train`, `cnnzoo evaluate`).

    from cnnzoo.train import train, evaluate, load_checkpoint
    summary = train(model="resnet18", data="digits", out="runs/digits")
    model, info = load_checkpoint("runs/digits")          # best.pt, eval mode, weights_only=True
    report = evaluate("runs/digits", split="test")

A run folder (`--out runs/NAME`), which export, predict, serve and transfer build on:

    runs/NAME/
      config.yaml            the resolved config: every setting as it ran (a resumed run reads it back)
      classes.json           class names, in label order (index i = logit i)
      metrics.jsonl          one line per epoch: epoch, step, train_loss, val_loss, val_top1, val_top5,
                             lr, seconds, images_per_s, skipped
      log.txt                what the run printed, plus the unreadable images it skipped
      results.json           the summary: best epoch and its val top-1; test top-1/top-5 of the last
                             checkpoint (test_*) and of the best (best_test_*); images/s; skipped images
      checkpoints/last.pt    the end of the latest epoch (what --resume continues from)
      checkpoints/best.pt    the epoch with the best validation top-1 (ties: the later epoch)
      tensorboard/           TensorBoard events, when tensorboard is installed
      eval-SPLIT.json, confusion-SPLIT.png   written by `cnnzoo evaluate`

A checkpoint is a dict read with `torch.load(path, weights_only=True)`. For inference it holds
`model` (registry name), `num_classes`, `in_chans`, `input_size`, `mean`, `std`, `crop_pct` (eval
preset: resize to input_size / crop_pct, centre crop, normalise), `classes` and `state_dict`; for
resuming, `optimizer`, `scheduler`, `scaler`, `epoch`, `step`, `rng`, `history`, `config`.

Several processes: `torchrun --nproc-per-node N -m cnnzoo train ...` (DistributedDataParallel; gloo on
CPU, nccl on CUDA, one GPU per process; `--batch-size` is the global batch; only rank 0 writes). Several
machines: start the same command on each, with torchrun's rendezvous,

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 --rdzv-id RUN \
        -m cnnzoo train --model resnet50 --data /shared/imagenet --out /shared/runs/r50

with the data at the same path on every machine. The run folder is written by global rank 0 only;
`--resume` reads `checkpoints/last.pt` on every machine, so keep the run folder on a shared file
system (or copy it to each machine) to resume a multi-machine run.
"""
from .._lazy import lazy_getattr

# Loaded on first use (PEP 562): `cnnzoo.train.config` (the flags of `cnnzoo train`) must import without torch.
_LAZY = {
    "atomic_save": ".checkpoint", "load_checkpoint": ".checkpoint", "read_checkpoint": ".checkpoint",
    "save_checkpoint": ".checkpoint", "TrainConfig": ".config", "build_config": ".config",
    "evaluate": ".evaluation", "evaluate_loader": ".evaluation", "format_report": ".evaluation",
    "AUX_WEIGHT": ".loop", "train": ".loop", "confusion_matrix": ".metrics", "per_class_accuracy": ".metrics",
    "read_metrics": ".metrics", "topk_correct": ".metrics", "lr_find": ".lr_range", "range_test": ".lr_range",
}
__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
