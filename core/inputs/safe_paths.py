"""Where files named by a catalog may go: inside featbench's own directories, fetched over http(s) only.

A ``registry.yaml`` (or a plugin's catalog) is data anyone may hand to featbench with ``--registry``; the
files it names are written and read under a directory featbench owns (``<cache>/weights/``, a data root,
an installed package). :func:`relative_name` refuses a name that is absolute or climbs out with ``..``,
:func:`cache_member` also one that leaves through a symbolic link already there, and :func:`registry_url`
a URL that is not http(s): a ``file://`` URL in a catalog would copy any local file into the cache. A
local file is the user's own choice, given on the command line (``--weights NAME=PATH`` or
``NAME=file:///PATH``): :func:`user_file`.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError, shown

URL_SCHEMES = ("http", "https")


def relative_name(name: object, what: str, where: str, fix: str) -> str:
    """``name`` if it is a relative path without ``..`` (so that it stays inside any directory it is joined
    to); else a ConfigError ``WHAT: file NAME leaves the WHERE (why)`` with ``fix``."""
    if not isinstance(name, str) or not name.strip() or "\0" in name:
        raise ConfigError(f"{what}: file {shown(name)} is not a file name", fix)
    if os.path.isabs(name) or name.startswith("~") or (os.altsep and name.startswith(os.altsep)):
        raise ConfigError(f"{what}: file {shown(name)} leaves the {where} (an absolute path)", fix)
    if ".." in name.replace(os.altsep or os.sep, os.sep).split(os.sep):
        raise ConfigError(f"{what}: file {shown(name)} leaves the {where} ('..')", fix)
    return name


def cache_member(root: str, name: object, what: str, where: str, fix: str) -> str:
    """``root/name`` for a :func:`relative_name` that also stays inside ``root`` once symbolic links already
    there are followed."""
    path = os.path.normpath(os.path.join(root, relative_name(name, what, where, fix)))
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
        raise ConfigError(f"{what}: file {shown(name)} leaves the {where} (through a symbolic link)", fix)
    return path


def registry_url(url: str | None, what: str, fix: str) -> str | None:
    """``url`` if it is None or an http(s) URL; else a ConfigError (a catalog never reads local files)."""
    if url is None:
        return None
    scheme = urlsplit(str(url)).scheme.lower() if isinstance(url, str) else ""
    if scheme not in URL_SCHEMES:
        raise ConfigError(f"{what}: url {shown(url)} is not an http(s) URL", fix)
    return url


def user_file(value: str) -> str:
    """A path the user gave: ``file:///abs/path`` (or ``file:/abs/path``) becomes ``/abs/path``; anything else
    is returned with ``~`` expanded."""
    if value.startswith("file:"):
        parts = urlsplit(value)
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"{shown(value)} names a file on another host", "give a local path")
        return unquote(parts.path)
    return os.path.expanduser(value)
