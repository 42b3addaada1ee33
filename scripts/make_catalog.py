"""Write src/cnnzoo/catalog.json from the registered models (run after adding or changing a model).

    .venv/bin/python scripts/make_catalog.py          # rewrite the file
    .venv/bin/python scripts/make_catalog.py --check  # exit 1 if the file is out of date (tests do this)
"""
from __future__ import annotations

import dataclasses
import json

import torch

from cnnzoo.analysis import profile
from cnnzoo.catalog import MACS_AT, PATH
from cnnzoo.models import create_model, get_card, list_models

from generated import write_or_check


def entry(name: str) -> dict:
    card = dataclasses.asdict(get_card(name))
    card["deviations"] = list(card["deviations"])
    with torch.device("meta"):
        params = sum(p.numel() for p in create_model(name).parameters())
    return {**card, "params": params, "macs": profile(name, MACS_AT).total.flops}


def render() -> str:
    return json.dumps([entry(n) for n in list_models()], indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    text = render()
    write_or_check(PATH, text, f"{len(json.loads(text))} models")
