"""Models side by side: the lecture's "AlexNet vs VGG-16: much bigger network!", computed.

`compare(["alexnet", "vgg16"])` profiles each model at its card's input size (AlexNet at 227, the rest at 224)
and gives every total as a ratio to the first model. Memory is given twice: summed over every row, and over
the conv and fc rows only, which is how the lecture totals it ("AlexNet total: 1.9 MB", 1,958 KB). The
published ImageNet accuracy of each model comes from `imagenet_accuracy.csv`, each figure with its source.
"""
from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CnnzooError
from .profiler import Profile, profile
from .report import kb

ACCURACY_CSV = Path(__file__).with_name("imagenet_accuracy.csv")


@dataclasses.dataclass(frozen=True)
class Accuracy:
    top1: float | None
    top5: float | None
    source: str
    url: str


def load_accuracy(path: str | Path = ACCURACY_CSV) -> dict[str, Accuracy]:
    """Published ImageNet-1K top-1/top-5 (%) per model name, with where each figure comes from."""
    with open(path, newline="") as f:
        return {r["model"]: Accuracy(float(r["top1"]) if r["top1"] else None,
                                     float(r["top5"]) if r["top5"] else None, r["source"], r["url"])
                for r in csv.DictReader(f)}


@dataclasses.dataclass
class Comparison:
    profiles: list[Profile]
    accuracy: dict[str, Accuracy]

    def metrics(self, p: Profile) -> dict[str, float]:
        t = p.total
        return {"params": t.params, "flops": t.flops, "memory_kb": t.memory_kb,
                "conv_fc_memory_kb": p.lecture_memory_kb}

    def ratios(self) -> list[dict[str, float]]:
        """Each model's totals divided by the first model's."""
        base = self.metrics(self.profiles[0])
        return [{k: (v / base[k] if base[k] else float("nan")) for k, v in self.metrics(p).items()}
                for p in self.profiles]

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for p, r in zip(self.profiles, self.ratios()):
            acc = self.accuracy.get(p.model)
            out.append({"model": p.model, "input": list(p.input), "batch_size": p.batch_size, **self.metrics(p),
                        "ratio": r, "unused_params": p.unused_params,
                        "top1": acc.top1 if acc else None, "top5": acc.top5 if acc else None,
                        "accuracy_source": acc.source if acc else None})
        return out

    def table(self, markdown: bool = False) -> str:
        head = ["model", "input", "params", "x", "MAC (G)", "x", "memory (MB)", "x", "conv+fc memory (MB)", "x",
                "top-1 (%)"]
        body = []
        for row in self.rows():
            r = row["ratio"]
            body.append([row["model"], "x".join(map(str, row["input"])), f"{row['params']:,}", f"{r['params']:.2f}",
                         f"{row['flops'] / 1e9:,.3f}", f"{r['flops']:.2f}", kb(row["memory_kb"] / 1024),
                         f"{r['memory_kb']:.2f}", kb(row["conv_fc_memory_kb"] / 1024),
                         f"{r['conv_fc_memory_kb']:.2f}", "" if row["top1"] is None else f"{row['top1']:g}"])
        if markdown:
            align = "|".join(":--" if i < 2 else "--:" for i in range(len(head)))
            lines = ["| " + " | ".join(head) + " |", f"|{align}|"]
            lines += ["| " + " | ".join(b) + " |" for b in body]
        else:
            widths = [max(len(c[i]) for c in [head, *body]) for i in range(len(head))]
            fmt = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w)  # noqa: E731
                                          for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
            lines = [fmt(head), "-" * len(fmt(head)), *map(fmt, body)]
        return "\n".join([*lines, "", *self.footer()])

    def footer(self) -> list[str]:
        first = self.profiles[0].model
        lines = [f"x = ratio to {first}. MAC = multiply-adds (the lecture's 'flop') of every row: conv, fc and the "
                 f"lecture's pooling count (C*H'*W'*K*K); memory = output elements x bytes / 1024 summed over every "
                 f"row, and over the conv and fc rows only (the lecture's 'AlexNet total: 1.9 MB'); MB = 1024 KB; "
                 f"params = the parameters the forward pass uses."]
        for p in self.profiles:
            if p.unused_params:
                lines.append(f"{p.model}: {p.unused_params:,} parameters never used in eval mode "
                             f"({', '.join(p.unused_modules)}), not counted.")
        by_source: dict[str, list[str]] = {}
        for p in self.profiles:
            if p.model in self.accuracy:
                src = self.accuracy[p.model].source
                src = "torchvision's IMAGENET1K_V1 weights meta" if src.startswith("torchvision") else src
                by_source.setdefault(src, []).append(p.model)
        if by_source:
            lines.append("top-1 (published, imagenet_accuracy.csv): "
                         + "; ".join(f"{', '.join(ms)}: {src}" for src, ms in by_source.items()))
        return lines

    def csv(self) -> str:
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["model", "input", "params", "macs", "memory_kb", "conv_fc_memory_kb", "params_ratio",
                    "macs_ratio", "memory_ratio", "conv_fc_memory_ratio", "top1", "top5", "accuracy_source"])
        for row in self.rows():
            r = row["ratio"]
            w.writerow([row["model"], "x".join(map(str, row["input"])), row["params"], row["flops"], row["memory_kb"],
                        row["conv_fc_memory_kb"], r["params"], r["flops"], r["memory_kb"], r["conv_fc_memory_kb"],
                        row["top1"] if row["top1"] is not None else "", row["top5"] if row["top5"] is not None else "",
                        row["accuracy_source"] or ""])
        return buf.getvalue()

    def json(self) -> str:
        return json.dumps({"models": self.rows(), "convention": "flops = multiply-adds; memory_kb = output "
                           "elements * bytes / 1024, summed over every row; ratios to the first model"}, indent=1)


def compare(models: list[str | nn.Module], input_size: Any = None, batch_size: int = 1,
            dtype: torch.dtype = torch.float32) -> Comparison:
    """Profile each model (at its own card's input size unless `input_size` is given) and compare the totals."""
    if not models:
        raise CnnzooError("compare needs at least one model")
    return Comparison([profile(m, input_size, batch_size, dtype) for m in models], load_accuracy())
