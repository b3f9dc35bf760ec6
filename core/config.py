"""registry.yaml: reading the packaged catalog (or a user's copy). Its grids are read by
:func:`featbench.training.grid.grid_values`."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import yaml

from .errors import ConfigError


def registry_path(override: str | None = None) -> str:
    """``override`` (``--registry``), else the registry.yaml shipped inside the package."""
    if override:
        return override
    return str(resources.files("featbench").joinpath("registry.yaml"))


def read_yaml(path: str, what: str, missing_hint: str):
    """Parse a YAML file within the limits of :mod:`featbench.safe_yaml`, turning a missing file, bad
    syntax or a limit into a ConfigError naming ``what``."""
    from .safe_yaml import YAMLLimitError, load

    try:
        return load(path)
    except YAMLLimitError as exc:
        problem = f"{what} {exc.problem}" if path in exc.problem else f"{what} {path}: {exc.problem}"
        raise ConfigError(problem, exc.hint) from None
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
        raise ConfigError(
            f"{path} does not hold a mapping at the top level", "see the registry.yaml shipped with featbench"
        )
    return data


def load_registry(path: str | None = None) -> dict:
    return _load(registry_path(path))
