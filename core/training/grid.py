"""Hyper-parameter grids: parsing ``--hp`` values and expanding them into K configurations."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

from ..api import HParam
from ..errors import ConfigError, UnknownNameError

#: Hyper-parameters of the trainer itself (methods.md 1.4); every run has them.
TRAINER_HPARAMS: tuple[HParam, ...] = (
    HParam("lr", 1.6, "learning rate of SGD (momentum 0.9, constant), > 0", low=0.0, low_open=True),
    HParam("wd", 1e-6, "weight decay added to the gradient of the mean batch loss, >= 0", low=0.0),
)


def parse_hp_args(items: Iterable[str]) -> dict[str, list[float | str]]:
    """``["lr=1.6", "eta=0,0.4,0.8", "cov=full"]`` -> ``{"lr": [1.6], "eta": [0, 0.4, 0.8], "cov": ["full"]}``.

    Numbers become floats; anything else stays a string (a choice-valued option, checked later by its HParam).
    """
    out: dict[str, list[float | str]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise ConfigError(f"malformed --hp {item!r}", "write --hp NAME=VALUE[,VALUE...], e.g. --hp eta=0,0.4,0.8")
        parsed: list[float | str] = []
        for v in values.split(","):
            v = v.strip()
            if not v:
                raise ConfigError(f"malformed --hp {item!r}: an empty value", "write --hp NAME=VALUE[,VALUE...] without empty items")
            try:
                parsed.append(float(v))
            except ValueError:
                parsed.append(v)
        if name in out:
            raise ConfigError(f"--hp {name} is given twice", "give all values in one --hp NAME=V1,V2")
        if len(set(parsed)) != len(parsed):
            raise ConfigError(f"--hp {item!r} repeats a value", "list each value once")
        out[name] = parsed
    return out


def hparams_for(loss_cls: type, aug_cls: type) -> dict[str, HParam]:
    """All hyper-parameters of a (loss, augmenter) pair, trainer's included; a name clash is an error."""
    out: dict[str, HParam] = {}
    for owner, params in (("trainer", TRAINER_HPARAMS), (loss_cls.__name__, loss_cls.hparams), (aug_cls.__name__, aug_cls.hparams)):
        for h in params:
            if h.name in out:
                raise ConfigError(f"hyper-parameter {h.name!r} is declared by both the {owner} and another component",
                                  "rename one of them in its plugin")
            out[h.name] = h
    return out


def expand_grid(params: Mapping[str, HParam], values: Mapping[str, Sequence[float | str]]) -> list[dict[str, float | str]]:
    """Cartesian product of ``values`` (checked against ``params``) with defaults for the rest.

    The order is deterministic: the first named parameter varies slowest.
    """
    for name in values:
        if name not in params:
            raise UnknownNameError("hyper-parameter", name, params)
    names = list(params)
    axes = [[params[n].check(v) for v in values[n]] if n in values else [params[n].default] for n in names]
    return [dict(zip(names, combo)) for combo in itertools.product(*axes)]


def structural_groups(params: Mapping[str, HParam], configs: Sequence[Mapping[str, float]]) -> list[list[int]]:
    """Indices of configurations that can share one K-stack (equal in every structural parameter)."""
    fixed = [n for n, h in params.items() if h.structural]
    groups: dict[tuple, list[int]] = {}
    for i, cfg in enumerate(configs):
        groups.setdefault(tuple(cfg[n] for n in fixed), []).append(i)
    return list(groups.values())
