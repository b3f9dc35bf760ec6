"""Errors that the CLI turns into one clear line on stderr (no traceback) and a non-zero exit."""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterable

#: At most this many valid names are listed in an UnknownNameError (the closest ones are always named).
MAX_LISTED = 40


#: At most this many characters of a user's value are echoed in an error message.
MAX_SHOWN = 60


def shown(value: object, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` for an error message, bounded in length and in work: nested containers are cut
    after a few items and levels (``reprlib``), and the result after ``limit`` characters, so a value of
    any size (a 50 MB string, a YAML alias bomb) costs microseconds to show."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother, r.maxlong = 3, limit, limit, limit
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = r.maxfrozenset = r.maxdeque = r.maxarray = 4
    try:
        text = r.repr(value)
    except ValueError:  # an int beyond Python's 4300-digit conversion limit
        if isinstance(value, int):
            text = f"<an {type(value).__name__} of about {value.bit_length() * 0.30103:,.0f} digits>"
        else:
            text = f"<a {type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


#: A word (a path, say) longer than this is cut in the middle when an error line is printed.
MAX_WORD = 300


def one_line(text: str) -> str:
    """``text`` as one line for stderr: whitespace collapsed, and any word over :data:`MAX_WORD`
    characters (a path or value that no message shortened) cut in the middle. The last guard of
    :func:`shown`'s rule that no user value is echoed whole."""
    half = MAX_WORD // 2
    return " ".join(w if len(w) <= MAX_WORD else f"{w[:half]}...{w[-half:]}" for w in text.split())


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (library messages run on for paragraphs), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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

    def __init__(self, kind: str, name: str, valid: Iterable[str], extra: str | None = None, lead: bool = False):
        """``extra`` follows the suggestions, or comes first with ``lead`` (it then explains the miss better
        than a close spelling would: a disabled plugin, one that failed to load)."""
        valid = sorted(set(valid))
        close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
        hint = f"{extra}; " if extra and lead else ""
        hint += f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        if len(valid) > MAX_LISTED:
            hint += f"{len(valid)} valid names"
        else:
            hint += f"valid: {', '.join(valid) if valid else '(none registered)'}"
        if extra and not lead:
            hint += f"; {extra}"
        super().__init__(f"unknown {kind} {shown(name)}", hint)
        self.kind = kind
        self.name = name
        self.valid = valid


class PluginError(FeatbenchError):
    """A plugin could not be loaded, registered something invalid, or clashes with another."""


class DataError(FeatbenchError):
    """Feature files or labels that cannot be used as given."""


class WeightsUnavailableError(DataError):
    """A backbone's weights are not on this machine and cannot be fetched."""


class ConfigError(FeatbenchError):
    """Invalid hyper-parameters, flags or configuration files."""


class StorageError(FeatbenchError):
    """A file could not be written (disk full, read-only or missing directory, permissions)."""


_STORAGE_HINTS = {
    errno.ENOSPC: "free some disk space (or choose another location) and rerun the same command: "
    "everything finished is kept",
    errno.EDQUOT: "free some of your disk quota (or choose another location) and rerun the same command: "
    "everything finished is kept",
    errno.EFBIG: "the file system refuses files this large: choose another location",
    errno.EROFS: "the file system is read-only: choose a writable location",
    errno.EACCES: "choose a location you may write to",
    errno.EPERM: "choose a location you may write to",
    errno.ENOTDIR: "a path component is a file, not a directory: choose another location",
    errno.EEXIST: "a file is in the way: choose another location",
    errno.ENOENT: "choose an existing, writable location",
}


def storage_error(exc: OSError, what: str, where: str | None = None) -> StorageError:
    """A one-line :class:`StorageError` for an OSError raised while writing ``what`` (at ``where``)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    path = where or exc.filename
    return StorageError(f"cannot write {what}{f' at {path}' if path else ''}: {reason}", storage_hint(exc.errno))


def storage_hint(code: int | None) -> str:
    """How to fix an OSError with errno ``code``."""
    return _STORAGE_HINTS.get(code, "check the path and its permissions")
