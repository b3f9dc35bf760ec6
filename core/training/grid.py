"""Hyper-parameter grids: parsing ``--hp`` values and expanding them into K configurations."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

from ..api import HParam, declared_grid, declared_grid_names
from ..errors import ConfigError, UnknownNameError, shown

#: Hyper-parameters of the trainer itself (SeA paper §4 and its official code); every run has them.
TRAINER_HPARAMS: tuple[HParam, ...] = (
    HParam("lr", 1.6, "learning rate of SGD (momentum 0.9, constant), > 0", low=0.0, low_open=True),
    HParam("wd", 1e-6, "weight decay added to the gradient of the mean batch loss, >= 0", low=0.0),
)


def hp_value(value, what: str) -> float | str | bool:
    """One hyper-parameter value, from a flag, a suite file or registry.yaml alike: a number (or a string
    that reads as one) becomes a float, a boolean stays one, any other string stays a string (a
    choice-valued option, checked later by its :class:`~featbench.api.HParam`)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.strip():
        try:
            return float(value)
        except ValueError:
            return value.strip()
    raise ConfigError(
        f"{what} holds {shown(value)}, which is neither a number nor a name", f"write {what}: [0.1, 0.2] or [name, ...]"
    )


def hp_values(values, what: str) -> tuple[float | str | bool, ...]:
    """A value or a list of them (:func:`hp_value` each): at least one, none repeated."""
    items = list(values) if isinstance(values, (list, tuple)) else [values]
    if not items:
        raise ConfigError(f"{what} has no values", f"write {what}: [0.1, 0.2]")
    out = tuple(hp_value(v, what) for v in items)
    if len(set(out)) != len(out):
        raise ConfigError(f"{what} repeats a value", "list each value once")
    return out


def parse_hp_args(items: Iterable[str]) -> dict[str, list[float | str | bool]]:
    """``["lr=1.6", "eta=0,0.4,0.8", "cov=full"]`` -> ``{"lr": [1.6], "eta": [0, 0.4, 0.8], "cov": ["full"]}``
    (values as :func:`hp_values` reads them)."""
    out: dict[str, list[float | str | bool]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise ConfigError(
                f"malformed --hp {shown(item)}", "write --hp NAME=VALUE[,VALUE...], e.g. --hp eta=0,0.4,0.8"
            )
        pieces = [v.strip() for v in values.split(",")]
        if not all(pieces):
            raise ConfigError(
                f"malformed --hp {shown(item)}: an empty value", "write --hp NAME=VALUE[,VALUE...] without empty items"
            )
        if name in out:
            raise ConfigError(f"--hp {name} is given twice", "give all values in one --hp NAME=V1,V2")
        out[name] = list(hp_values(pieces, f"--hp {shown(item)}"))
    return out


def hparams_for(loss_cls: type, aug_cls: type) -> dict[str, HParam]:
    """All hyper-parameters of a (loss, augmenter) pair, trainer's included; a name clash is an error naming
    both components."""
    out: dict[str, HParam] = {}
    owners: dict[str, str] = {}
    components = (
        ("the trainer", TRAINER_HPARAMS),
        (f"the loss {loss_cls.__name__}", loss_cls.hparams),
        (f"the augmenter {aug_cls.__name__}", aug_cls.hparams),
    )
    for owner, params in components:
        for h in params:
            if h.name in out:
                raise ConfigError(
                    f"hyper-parameter {h.name!r} is declared by both {owners[h.name]} and {owner}",
                    "rename one of them in its plugin",
                )
            out[h.name] = h
            owners[h.name] = owner
    return out


def expand_grid(
    params: Mapping[str, HParam], values: Mapping[str, Sequence[float | str]]
) -> list[dict[str, float | str]]:
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


def _registry_grids(registry: Mapping) -> Mapping:
    grids = registry.get("grids") or {}
    if not isinstance(grids, Mapping):
        raise ConfigError(
            "grids: in the registry is not a mapping of grid names", "write grids: {NAME: {trainer: {lr: [...]}}}"
        )
    return grids


def grid_values(registry: Mapping, grid: str, components: list[str]) -> dict[str, list[float | str | bool]]:
    """The hyper-parameter lists of ``grid`` for the named components (trainer, loss, augmenter).

    Values are read by :func:`hp_values`, as ``--hp`` and suite files read them.
    """
    grids = _registry_grids(registry)
    if grid not in grids:
        raise UnknownNameError("grid", grid, grids)
    if not isinstance(grids[grid] or {}, Mapping):
        raise ConfigError(
            f"grids.{grid} in the registry is not a mapping",
            "write grids.NAME: {trainer: {lr: [...]}, COMPONENT: {...}}",
        )
    out: dict[str, list[float]] = {}
    for comp in components:
        entry = (grids[grid] or {}).get(comp) or {}
        if not isinstance(entry, Mapping):
            raise ConfigError(f"grids.{grid}.{comp} in the registry is not a mapping", "write NAME: [values]")
        for name, values in entry.items():
            out[name] = list(hp_values(values, f"grids.{grid}.{comp}.{name} in the registry"))
    return out


def grid_names_of(registry: Mapping, classes: Iterable[type]) -> list[str]:
    """Every grid ``--grid`` accepts for these components: registry.yaml's and those the classes declare."""
    names = dict.fromkeys(_registry_grids(registry))
    for cls in classes:
        names.update(dict.fromkeys(declared_grid_names(cls)))
    return list(names)


def search_values(
    registry: Mapping, grid: str, components: Sequence[tuple[str, type | None]]
) -> dict[str, list[float | str | bool]]:
    """The values ``--grid grid`` searches for the named components (``("trainer", None)``, the loss, the
    augmenter), in that order: each component's declared values (:func:`featbench.api.declared_grid`; those
    of the grid's ``base:`` in registry.yaml where it declares none for this grid), replaced parameter by
    parameter by its ``grids.GRID.COMPONENT`` entry in registry.yaml."""
    in_registry = grid in _registry_grids(registry)
    base = (_registry_grids(registry).get(grid) or {}).get("base") if in_registry else None
    out: dict[str, list[float | str | bool]] = {}
    for name, cls in components:
        if cls is not None:  # a grid with ``base: OTHER`` takes OTHER's declared values where it declares none
            declared = declared_grid(cls, grid) or (declared_grid(cls, base) if base else {})
            out.update({k: list(v) for k, v in declared.items()})
        if in_registry:
            out.update(grid_values(registry, grid, [name]))
    return out
