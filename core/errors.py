"""Errors that the CLI turns into one clear line on stderr (no traceback) and a non-zero exit."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FeatbenchError(Exception):
    """A user-facing problem: ``message`` names what is wrong, ``hint`` how to fix it."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UnknownNameError(FeatbenchError):
    """A name (plugin, hyper-parameter, format...) that is not among the valid ones."""

    def __init__(self, kind: str, name: str, valid: Iterable[str], extra: str | None = None):
        valid = sorted(set(valid))
        close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        hint += f"valid: {', '.join(valid) if valid else '(none registered)'}"
        if extra:
            hint += f"; {extra}"
        super().__init__(f"unknown {kind} {name!r}", hint)
        self.kind = kind
        self.name = name
        self.valid = valid


class PluginError(FeatbenchError):
    """A plugin could not be loaded, registered something invalid, or clashes with another."""


class DataError(FeatbenchError):
    """Feature files or labels that cannot be used as given."""


class ConfigError(FeatbenchError):
    """Invalid hyper-parameters, flags or configuration files."""
