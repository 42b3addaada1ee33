"""Top-k accuracy, the confusion matrix, and the run's `metrics.jsonl`.

Top-k: a sample counts as correct when its label is among the k highest scores (ILSVRC's top-5
error is 1 - top-5 accuracy). With fewer than k classes, top-k is capped at the number of classes.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """How many rows of `logits` have their `target` among the top k, for each k."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices  # N x kmax
    hit = top.eq(target.unsqueeze(1))
    return [int(hit[:, : min(k, kmax)].any(dim=1).sum()) for k in ks]


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """C[i, j] = how many images of class i were predicted as class j."""
    idx = target.long() * num_classes + pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(cm: torch.Tensor) -> list[float | None]:
    """Recall of each class (diagonal / row sum); None for a class with no images."""
    totals = cm.sum(dim=1)
    return [float(cm[i, i] / totals[i]) if totals[i] > 0 else None for i in range(cm.shape[0])]


def plot_confusion(cm: torch.Tensor, classes: list[str], path: str | os.PathLike, title: str = "") -> None:
    """The confusion matrix as a PNG: rows are true classes, columns predictions, counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    side = min(max(4.0, 0.45 * n + 2), 30.0)
    fig, ax = plt.subplots(figsize=(side, side))
    rows = cm.sum(dim=1, keepdim=True).clamp_min(1)
    ax.imshow((cm / rows).numpy(), cmap="Blues", vmin=0, vmax=1)
    if n <= 40:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if cm[i, j] > 0.5 * rows[i, 0] else "black")
        ax.set_xticks(range(n), classes, rotation=90)
        ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    from ..fileio import write_figure

    try:
        write_figure(fig, path, dpi=100)
    finally:
        plt.close(fig)


class MetricsLog:
    """`metrics.jsonl`: one JSON object per epoch, appended as each epoch ends."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def rewrite(self, rows: list[dict[str, Any]]) -> None:
        """Replace the file with `rows` (on resume: the checkpoint's history, dropping a re-run epoch's row)."""
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        os.replace(tmp, self.path)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a `metrics.jsonl` (a run folder or the file itself)."""
    p = Path(path)
    p = p / "metrics.jsonl" if p.is_dir() else p
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def plot_curves(history: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Training and validation loss, and validation top-1, per epoch (from `metrics.jsonl`), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.5))
    loss_ax.plot(epochs, [h["train_loss"] for h in history], label="train")
    loss_ax.plot(epochs, [h["val_loss"] for h in history], label="validation")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    loss_ax.legend()
    acc_ax.plot(epochs, [100 * h["val_top1"] for h in history], label="top-1")
    acc_ax.plot(epochs, [100 * h["val_top5"] for h in history], label="top-5")
    acc_ax.set(xlabel="epoch", ylabel="%", title="validation accuracy")
    acc_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
