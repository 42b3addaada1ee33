"""`cnnzoo tour`: the lecture in one run, architecture by architecture, in the lecture's order."""
from __future__ import annotations

import itertools
from pathlib import Path

from .models import get_card, list_models
from .summary import format_summary, summarize

# The lecture's order: the ILSVRC winners, then "other architectures". Families not named here follow.
LECTURE_ORDER = (
    "AlexNet", "ZFNet", "VGG", "GoogLeNet", "ResNet", "Pre-activation ResNet", "ResNeXt", "Wide ResNet",
    "SE-ResNet", "SE-ResNeXt", "DenseNet", "MobileNet V1", "MobileNet V2", "ShuffleNet", "ShuffleNet V2",
)


def families() -> list[tuple[str, list[str]]]:
    """Registered models grouped by family, in the lecture's order, oldest first within a family."""
    def rank(name: str) -> tuple:
        card = get_card(name)
        known = card.family in LECTURE_ORDER
        return (not known, LECTURE_ORDER.index(card.family) if known else card.year, card.family)

    names = sorted(list_models(), key=rank)
    return [(family, list(group)) for family, group in itertools.groupby(names, key=lambda n: get_card(n).family)]


def _heading(text: str) -> str:
    return f"\n{text}\n{'=' * len(text)}"


def architectures() -> str:
    """Each family's card in full, then one summary line per model of the family."""
    parts = []
    for family, names in families():
        first = get_card(names[0])
        parts.append(_heading(f"{family} ({first.venue} {first.year})"))
        parts.append(str(first))
        parts.append("")
        width = max(map(len, names))
        for name in names:
            parts.append(f"  {name:<{width}}  {format_summary(summarize(name))}")
    return "\n".join(parts)


def run_tour(out: str | Path = "runs/tour") -> None:
    """Print the tour; later chapters (analysis, training, deployment) write their files under `out`."""
    Path(out).mkdir(parents=True, exist_ok=True)
    print("cnnzoo tour: the CNN architectures lecture, computed\n")
    print(architectures(), flush=True)
    print(f"\ncnnzoo tour: done; files under {out}")
