"""HTTP downloads that are verified, resumable and placed atomically (standard library only).

Invariants:

* A file reaches its final name only after its whole content matched the catalog's checksum (MD5 or
  SHA-256); until then it is ``NAME.part`` next to it, and a later call resumes it from its byte offset
  with an HTTP ``Range`` request (a server that ignores Range sends the whole file again).
* A checksum mismatch deletes the file and raises a one-line :class:`DataError`.
* Offline mode (``FEATBENCH_OFFLINE=1``, or :func:`set_offline`) refuses before any connection is opened.
* ``FEATBENCH_MIRROR`` (or the registry's top-level ``mirror:`` key) replaces every catalog URL by
  ``MIRROR/FILE``, FILE being the name the catalog stores the download under. Only HTTP(S) URLs are
  fetched, and ``file://`` ones where the user pointed at them (``FEATBENCH_MIRROR=file:///PATH``).
* Progress goes to an :class:`~featbench.inputs.progress.ExtractListener` (the command line draws a bar
  only when stderr is a terminal); nothing here prints.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Mapping

from ..errors import DataError, FeatbenchError, first_line
from .progress import ExtractListener

OFFLINE_ENV = "FEATBENCH_OFFLINE"
MIRROR_ENV = "FEATBENCH_MIRROR"
TIMEOUT_S = 60  # per blocking socket operation, not per download
CHUNK = 1 << 20
_TRUE = {"1", "true", "yes", "on"}
DIGEST_NAMES = {"sha256": "SHA-256", "md5": "MD5"}


class OfflineError(FeatbenchError):
    """A network access was needed while offline mode forbids every connection."""


class DownloadError(FeatbenchError):
    """The server could not be reached or refused the file; a partial download is kept for resuming."""


def offline() -> bool:
    """Whether every network access is forbidden (``$FEATBENCH_OFFLINE`` set to 1/true/yes/on)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in _TRUE


def set_offline() -> None:
    """Forbid network access for the rest of this process and its children (the ``--offline`` flag); the
    Hugging Face hub, which timm uses, is told as well."""
    os.environ[OFFLINE_ENV] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"


def mirror_base(registry: Mapping | None = None) -> str | None:
    """``$FEATBENCH_MIRROR``, else the registry's ``mirror:`` key, else None."""
    base = os.environ.get(MIRROR_ENV) or (registry or {}).get("mirror")
    return str(base).rstrip("/") if base else None


def source_url(url: str, file: str, registry: Mapping | None = None) -> str:
    """Where ``file`` is fetched from: the mirror's ``BASE/file`` when one is set, else ``url``."""
    base = mirror_base(registry)
    return f"{base}/{file}" if base else url


def file_digest(path: str, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def checksum_of(md5: str | None, sha256: str | None) -> tuple[str, str] | None:
    """``(algorithm, expected hex digest)`` of a catalog entry; SHA-256 wins when both are known."""
    if sha256:
        return "sha256", str(sha256).lower()
    if md5:
        return "md5", str(md5).lower()
    return None


def matches(path: str, expected: tuple[str, str] | None) -> bool:
    """Whether ``path`` has the expected digest (a prefix of at least 8 hex digits is accepted); True without one."""
    if expected is None:
        return True
    algorithm, digest = expected
    return file_digest(path, algorithm).startswith(digest)


def fetch(
    url: str,
    dest: str,
    *,
    expected: tuple[str, str] | None,
    what: str,
    size: int | None = None,
    listener: ExtractListener | None = None,
    alternative: str = "",
) -> str:
    """Download ``url`` to ``dest`` (verified, resumable, atomic); returns ``dest``.

    An existing ``dest`` that matches ``expected`` is kept without a connection; one that does not is
    deleted and fetched again. ``alternative`` ends the fix of a checksum error (e.g. ``--weights NAME=FILE``).
    """
    if os.path.isfile(dest):
        if matches(dest, expected):
            return dest
        os.remove(dest)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("http", "https") and not (scheme == "file" and os.environ.get(MIRROR_ENV)):
        raise DataError(
            f"{what}: {url} is not an http(s) URL",
            f"catalog URLs are fetched over HTTP(S); a local folder of the files works as {MIRROR_ENV}=file:///PATH",
        )
    if offline():
        raise OfflineError(
            f"{what}: {os.path.basename(dest)} is missing and {OFFLINE_ENV}=1 forbids downloading {url}",
            f"fetch it on a machine with a network (featbench download) or unset {OFFLINE_ENV}",
        )
    part = dest + ".part"
    _stream(url, part, what, size, listener or ExtractListener())
    if not matches(part, expected):
        algorithm, digest = expected
        got = file_digest(part, algorithm)
        os.remove(part)
        raise DataError(
            f"{what}: the file downloaded from {url} has {DIGEST_NAMES[algorithm]} {got}, but registry.yaml "
            f"expects {digest}; it was deleted",
            f"retry later (a damaged or changed download), check the mirror set by {MIRROR_ENV} / the registry's "
            f"mirror: key{alternative}",
        )
    os.replace(part, dest)
    return dest


def _stream(url: str, part: str, what: str, size: int | None, listener: ExtractListener) -> None:
    """Append the rest of ``url`` to ``part`` (from its current length; the whole file if the server
    ignores Range)."""
    offset = os.path.getsize(part) if os.path.isfile(part) else 0
    request = urllib.request.Request(
        url, headers={"User-Agent": "featbench", **({"Range": f"bytes={offset}-"} if offset else {})}
    )
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the partial file already holds everything: the checksum decides
            return
        raise DownloadError(
            f"{what}: downloading {url} failed (HTTP {exc.code} {exc.reason})",
            f"retry later, or download it yourself into {os.path.dirname(part)}",
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        reason = getattr(exc, "reason", None) or first_line(exc)
        raise DownloadError(
            f"{what}: cannot reach {url} ({reason})",
            f"check the network (or set {MIRROR_ENV}), then rerun: a partial download resumes",
        ) from None
    with response:
        os.makedirs(os.path.dirname(os.path.abspath(part)), exist_ok=True)  # only once the server answered
        resumed = offset > 0 and response.status == 206
        length = response.headers.get("Content-Length")
        total = (int(length) + (offset if resumed else 0)) if length and length.isdigit() else size
        listener.bytes_started(os.path.basename(part)[:-5], total, offset if resumed else 0)
        announced = int(length) if length and length.isdigit() else None
        received = 0
        try:
            with open(part, "ab" if resumed else "wb") as out:
                while True:
                    try:
                        block = response.read(CHUNK)
                    except (OSError, http.client.HTTPException) as exc:
                        out.write(getattr(exc, "partial", b"") or b"")  # IncompleteRead: what did arrive is kept
                        raise DownloadError(
                            f"{what}: the connection to {url} broke ({type(exc).__name__})",
                            "rerun the same command: the download resumes where it stopped",
                        ) from None
                    if not block:
                        break
                    out.write(block)
                    received += len(block)
                    listener.bytes_done(len(block))
        finally:
            listener.bytes_finished()
    if announced is not None and received < announced:
        raise DownloadError(
            f"{what}: the connection to {url} closed after {received} of {announced} bytes",
            "rerun the same command: the download resumes where it stopped",
        )
