"""Named catalogs of what plugins register, with the plugin and distribution behind every name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import attrs

from .errors import PluginError, UnknownNameError

T = TypeVar("T")


@attrs.frozen
class Provider:
    """Who registered a name: the plugin (module or object name) and its distribution."""

    plugin: str
    dist: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} (distribution {self.dist!r})"


@attrs.frozen
class Entry(Generic[T]):
    """One registered item."""

    name: str
    obj: T
    provider: Provider
    summary: str


def _first_doc_line(obj: Any) -> str:
    doc = getattr(obj, "__doc__", None) or ""
    for line in doc.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


class Catalog(Generic[T]):
    """All items of one kind (augmenters, losses, backbones, datasets)."""

    def __init__(self, kind: str, check: Callable[[str, Any], None] | None = None):
        self.kind = kind
        self._check = check
        self._entries: dict[str, Entry[T]] = {}

    def add(self, name: str, obj: T, provider: Provider, summary: str | None = None) -> None:
        if not isinstance(name, str) or not name or any(c.isspace() or c == "," for c in name):
            raise PluginError(f"{provider} registered an invalid {self.kind} name {name!r}",
                              "names are non-empty strings without spaces or commas")
        if name in self._entries:
            other = self._entries[name].provider
            raise PluginError(f"{self.kind} {name!r} is registered twice: by {other} and by {provider}",
                              "uninstall or disable one of them (--disable-plugin NAME)")
        if self._check is not None:
            self._check(name, obj)
        self._entries[name] = Entry(name, obj, provider, summary if summary is not None else _first_doc_line(obj))

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries) from None

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)


class Registry:
    """What a registration hook receives: ``registry.add(name, obj)`` files ``obj`` under ``name``.

    One Registry is made per plugin and per hook, so every name is attributed to the plugin that added it.
    An invalid registration (a wrong type, a taken name, bad hyper-parameter grids) raises PluginError, or,
    when ``on_reject`` is given, is handed to it and skipped, so only that one name is lost.
    """

    def __init__(self, catalog: Catalog, provider: Provider, on_reject: Callable[[PluginError], None] | None = None):
        self._catalog = catalog
        self.provider = provider
        self._on_reject = on_reject
        self.added: list[str] = []

    def add(self, name: str, obj: Any, summary: str | None = None) -> None:
        """Register ``obj`` as ``name``; ``summary`` defaults to the first line of its docstring."""
        try:
            self._catalog.add(name, obj, self.provider, summary)
        except PluginError as exc:
            if self._on_reject is None:
                raise
            self._on_reject(exc)
            return
        self.added.append(name)
