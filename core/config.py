"""registry.yaml: reading the packaged catalog (or a user's copy) and the grids in it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources

import yaml

from .errors import ConfigError, UnknownNameError


def registry_path(override: str | None = None) -> str:
    """``override``, else ``$FEATBENCH_REGISTRY``, else the registry.yaml shipped inside the package."""
    path = override or os.environ.get("FEATBENCH_REGISTRY")
    if path:
        return path
    return str(resources.files("featbench").joinpath("registry.yaml"))


def read_yaml(path: str, what: str, missing_hint: str):
    """Parse a YAML file, turning a missing file or bad syntax into a ConfigError naming ``what``."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}", missing_hint) from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory", missing_hint) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text", "pass a YAML text file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}", missing_hint) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(exc)}", "fix the YAML syntax there") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's explanation on one line: what it expected and where (1-based line and column)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + (f"{context}, {problem}" if context else problem)


@lru_cache(maxsize=8)
def _load(path: str) -> dict:
    data = read_yaml(path, "registry file", "pass --registry PATH or reinstall featbench")
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold a mapping at the top level", "see the registry.yaml shipped with featbench")
    return data


def load_registry(path: str | None = None) -> dict:
    return _load(registry_path(path))


def grid_values(registry: Mapping, grid: str, components: list[str]) -> dict[str, list[float | str | bool]]:
    """The hyper-parameter lists of ``grid`` for the named components (trainer, loss, augmenter).

    Numbers become floats; strings and booleans (choice-valued options) are kept for ``HParam.check``.
    """
    grids = _grids(registry)
    if grid not in grids:
        raise UnknownNameError("grid", grid, grids)
    if not isinstance(grids[grid] or {}, Mapping):
        raise ConfigError(f"grids.{grid} in the registry is not a mapping", "write grids.NAME: {trainer: {lr: [...]}, COMPONENT: {...}}")
    out: dict[str, list[float]] = {}
    for comp in components:
        entry = (grids[grid] or {}).get(comp) or {}
        if not isinstance(entry, Mapping):
            raise ConfigError(f"grids.{grid}.{comp} in the registry is not a mapping", "write NAME: [values]")
        for name, values in entry.items():
            values = values if isinstance(values, list) else [values]
            if not all(isinstance(v, (str, bool, int, float)) for v in values):
                raise ConfigError(f"grids.{grid}.{comp}.{name} in the registry holds {values!r}", "write NAME: [number, ...]")
            out[name] = [v if isinstance(v, (str, bool)) else float(v) for v in values]
    return out


def _grids(registry: Mapping) -> Mapping:
    grids = registry.get("grids") or {}
    if not isinstance(grids, Mapping):
        raise ConfigError("grids: in the registry is not a mapping of grid names", "write grids: {NAME: {trainer: {lr: [...]}}}")
    return grids


def grid_names(registry: Mapping) -> list[str]:
    """The names of the grids registry.yaml defines."""
    return list(_grids(registry))
