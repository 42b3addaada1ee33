"""The model registry: every architecture registers its builders here by name.

`list_models("resnet*")` lists names with fnmatch wildcards; `create_model(name, num_classes, in_chans)`
builds one. Builders are plain functions taking keyword arguments, so `cnnzoo.models.vgg16()` and
`create_model("vgg16")` are the same model.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import functools
from typing import Callable

from torch import nn

from ..errors import CnnzooError, unknown_name
from .base import Card

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_CARDS: dict[str, Card] = {}


def register_model(family: Card, **card_fields):
    """Register a builder under its function name, with `family`'s card specialised by `card_fields`.

    `deviations` given here are appended to the family's, so each model lists all of its own.
    """

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__
        extra = tuple(card_fields.pop("deviations", ()))
        card = dataclasses.replace(family, name=name, deviations=family.deviations + extra, **card_fields)
        if name in _BUILDERS:
            raise RuntimeError(f"model {name!r} registered twice")

        @functools.wraps(builder)
        def build(**kwargs) -> nn.Module:
            model = builder(**kwargs)
            model.card = card
            return model

        _BUILDERS[name] = build
        _CARDS[name] = card
        return build

    return decorate


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching an fnmatch pattern (`"vgg1?_bn"`, `"*resnet*"`), sorted."""
    return sorted(n for n in _BUILDERS if fnmatch.fnmatchcase(n, pattern))


def _check_name(name: str) -> None:
    if name not in _BUILDERS:
        raise unknown_name(name, _BUILDERS)


def get_card(name: str) -> Card:
    """The card of a registered model, without building it."""
    _check_name(name)
    return _CARDS[name]


def create_model(name: str, num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """Build a registered model with fresh weights. Any `num_classes` (0 gives the pooled features); `in_chans=1`
    for grayscale. `cnnzoo.create_model` adds `pretrained=` (see `cnnzoo.pretrained`)."""
    _check_name(name)
    if not isinstance(num_classes, int) or num_classes < 0:
        raise CnnzooError(f"num_classes must be a whole number >= 0, got {num_classes!r}")
    if not isinstance(in_chans, int) or in_chans < 1:
        raise CnnzooError(f"in_chans must be a whole number >= 1, got {in_chans!r}")
    try:
        return _BUILDERS[name](num_classes=num_classes, in_chans=in_chans, **kwargs)
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc):
            raise CnnzooError(f"{name}: {exc}".replace("__init__() ", "")) from None
        raise
