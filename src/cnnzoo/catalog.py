"""The model table as data: every registered model's card, size and cost, read without PyTorch.

`cnnzoo list` and `cnnzoo info` answer from `catalog.json` (shipped with the package) in milliseconds; they never
build a model. The file is made from the real models by `scripts/make_catalog.py` and
`tests/test_catalog.py` fails when it no longer matches them, so the data cannot drift from the code.

Each entry: the card's fields (`name`, `family`, `paper`, `authors`, `year`, `venue`, `url`, `input_size`,
`min_input_size`, `min_input_reason`, `lecture`, `torchvision`, `deviations`), plus `params` (with a 1000-class
head) and `macs` (multiply-adds of one 224x224 image, the lecture's "flop"; AlexNet too, whose card size is 227,
so that the column compares like with like).
"""
from __future__ import annotations

import fnmatch
import functools
import json
import textwrap
from pathlib import Path

PATH = Path(__file__).with_name("catalog.json")
MACS_AT = 224  # the input side of the `macs` column
SORT_KEYS = ("name", "family", "year", "params", "macs")


@functools.cache
def load() -> dict[str, dict]:
    """Every model's entry, by name, in name order."""
    return {e["name"]: e for e in json.loads(PATH.read_text())}


def entries(pattern: str = "*", family: str | None = None, sort: str = "name") -> list[dict]:
    """The entries whose name matches the fnmatch `pattern` and whose family contains `family` (any case)."""
    rows = [e for name, e in load().items() if fnmatch.fnmatchcase(name, pattern)]
    if family:
        rows = [e for e in rows if family.lower() in e["family"].lower()]
    key = (lambda e: (e[sort] is None, e[sort] or 0, e["name"])) if sort in ("params", "macs", "year") \
        else (lambda e: (str(e[sort]).lower(), e["name"]))
    return sorted(rows, key=key)


def format_card(card: dict) -> str:
    """A card as `cnnzoo info` and `print(model.card)` show it."""
    size, low = card["input_size"], card["min_input_size"]
    lines = [
        f"{card['name']}  ({card['family']})",
        f"  paper:      {card['authors']}, \"{card['paper']}\", {card['venue']} {card['year']}",
        f"  url:        {card['url']}",
        f"  input:      {size}x{size} by default; at least {low}x{low} ({card['min_input_reason']})",
    ]
    if card["lecture"]:
        lines.append(f"  lecture:    {card['lecture']}")
    lines.append(f"  weights:    loads torchvision.models.{card['torchvision']}'s state_dict unchanged"
                 if card["torchvision"] else "  weights:    no torchvision counterpart")
    deviations = card["deviations"]
    lines.append("  deviations from the paper:" if deviations else "  deviations from the paper: none")
    for d in deviations:
        lines.append(textwrap.fill(d, 100, initial_indent="    - ", subsequent_indent="      "))
    return "\n".join(lines)


def human(n: float, unit: str = "") -> str:
    """61,100,840 -> '61.1M'; 714,188,480 -> '714M'; 15.5e9 -> '15.5G'."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            v = n / scale
            return f"{v:.3g}{suffix}{unit}" if v < 100 else f"{v:.0f}{suffix}{unit}"
    return f"{n:g}{unit}"
