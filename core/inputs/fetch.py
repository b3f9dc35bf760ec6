"""What a run needs from the network, the one-line plan, and fetching it.

The catalog (registry.yaml) describes each downloadable file of a data set under ``files:`` (``url``,
``md5`` or ``sha256``, ``bytes``, ``into`` and ``creates`` relative to the data root, optional ``inner``
archive and ``unpack``) and each backbone checkpoint by ``url``/``file``/``sha256``/``bytes`` (plus
``convert_from: byol`` for a release that must be converted). Invariants:

* A data-set file counts as present when its ``creates`` path exists (a root prepared by hand or by
  torchvision works as it is); a checkpoint when its file is in ``<cache>/weights/``.
* :func:`plan_line` is computed without writing anything; :func:`fetch_missing` checks the free space
  against it before the first byte is fetched, and refuses with that same line when it is short.
* Archives are downloaded to ``<data root>/.downloads/`` (verified, resumable: ``featbench.inputs.download``),
  unpacked (``featbench.inputs.archives``), then deleted.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Mapping, Sequence

import attrs

from ..errors import ConfigError, DataError
from .archives import unpack
from .download import OFFLINE_ENV, OfflineError, checksum_of, fetch, offline, source_url
from .progress import ExtractListener
from .safe_paths import cache_member, registry_url, relative_name

DOWNLOADS = ".downloads"
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")
#: Data sets whose loader needs no files (they ship with a Python package).
BUILTIN_LOADERS = ("digits",)


@attrs.frozen
class Download:
    """One file of the catalog: where it comes from, how to check it, where its content lands."""

    url: str
    file: str
    checksum: tuple[str, str] | None
    bytes: int | None
    into: str = "."  # folder (relative to the root) the file, or the archive's content, goes to
    creates: tuple[str, ...] = ()  # paths (relative to the root); any of them existing means this file is in place
    inner: str | None = None  # an archive inside the archive: only it is unpacked
    unpack: bool = True


@attrs.frozen
class Missing:
    """A data set or checkpoint that is not on this machine: the files to fetch, or why it cannot be."""

    kind: str  # "data set" or "checkpoint"
    name: str
    root: str  # the data root, or the weights folder of the cache
    downloads: tuple[Download, ...] = ()
    manual: str | None = None  # set when a script cannot fetch it
    convert: str | None = None  # "byol": the download is converted into ``dest``
    dest: str | None = None

    @property
    def fetchable(self) -> bool:
        return self.manual is None and bool(self.downloads)

    @property
    def bytes(self) -> int | None:
        """The known sizes summed (None when no size is known; see :attr:`unknown_sizes`)."""
        sizes = [d.bytes for d in self.downloads if d.bytes is not None]
        return sum(sizes) if sizes else None

    @property
    def unknown_sizes(self) -> int:
        return sum(1 for d in self.downloads if d.bytes is None)


def _download(raw: Mapping, where: str) -> Download:
    if not isinstance(raw, Mapping) or not raw.get("url"):
        raise ConfigError(f"registry {where}: each file needs a url", "write files: [{url: ..., md5: ..., bytes: ...}]")
    url = registry_url(str(raw["url"]), f"registry {where}", "catalog files are fetched over http(s)")
    file = str(raw.get("file") or url.rstrip("/").rsplit("/", 1)[-1])
    into = str(raw.get("into", "."))
    creates = raw.get("creates") or os.path.join(into, file)
    creates = tuple(str(c) for c in (creates if isinstance(creates, list) else [creates]))
    for what, path in (("file", file), ("into", into), *(("creates", c) for c in creates), ("inner", raw.get("inner"))):
        if path is not None:  # featbench.inputs.safe_paths: relative, no '..'
            relative_name(path, f"registry {where} ({what})", "data root", "use a relative path without '..'")
    unpack = raw.get("unpack", file.endswith(ARCHIVE_SUFFIXES))
    size = raw.get("bytes")
    return Download(
        url=url,
        file=file,
        checksum=checksum_of(raw.get("md5"), raw.get("sha256")),
        bytes=int(size) if size is not None else None,
        into=into,
        creates=creates,
        inner=raw.get("inner"),
        unpack=bool(unpack),
    )


def dataset_downloads(name: str, raw: Mapping) -> tuple[Download, ...]:
    return tuple(_download(f, f"datasets.{name}.files[{i}]") for i, f in enumerate(raw.get("files") or ()))


def missing_datasets(registry: Mapping, names: Sequence[str], data_root: str) -> list[Missing]:
    """The catalog data sets among ``names`` that are not (wholly) under ``data_root``."""
    catalog = registry.get("datasets") or {}
    out = []
    for name in names:
        raw = catalog.get(name)
        if not isinstance(raw, Mapping) or raw.get("loader") in BUILTIN_LOADERS:
            continue  # folder:PATH, plugin data sets and built-in ones are not the catalog's to fetch
        files = dataset_downloads(name, raw)
        if files:
            todo = tuple(d for d in files if not present(data_root, d))
            if todo:
                out.append(Missing("data set", name, data_root, todo))
            continue
        dirs = raw.get("dir") or ""
        dirs = [dirs] if isinstance(dirs, str) else list(dirs)
        if not any(d and os.path.isdir(os.path.join(data_root, d)) for d in dirs):
            manual = raw.get("manual") or (
                f"download {raw['url']} and unpack it" if raw.get("url") else "obtain the files"
            )
            out.append(
                Missing("data set", name, data_root, manual=f"{manual} under {os.path.join(data_root, dirs[0])}")
            )
    return out


def missing_checkpoints(
    registry: Mapping, names: Sequence[str], cache_dir: str, given: Mapping[str, str]
) -> list[Missing]:
    """The registry backbones among ``names`` whose weights file is neither in the cache nor given by --weights."""
    catalog = registry.get("backbones") or {}
    weights = os.path.join(cache_dir, "weights")
    out = []
    for name in names:
        raw = catalog.get(name)
        if name in given or not isinstance(raw, Mapping) or raw.get("package") or not raw.get("file"):
            continue
        if not str(raw.get("url") or "").startswith(("http://", "https://")):
            continue  # no URL, or a local file:// one: featbench.weights.locate takes it from there
        dest = cache_member(
            weights,
            raw["file"],
            f"registry backbones.{name}",
            "weights cache",
            "use a file name under the cache's weights/",
        )
        if os.path.isfile(dest):
            continue
        if raw.get("download", True) is False:
            manual = str(raw.get("manual") or "download {url} to {path}").format(url=raw["url"], path=dest)
            out.append(Missing("checkpoint", name, weights, manual=manual, dest=dest))
            continue
        convert = raw.get("convert_from")
        if convert:  # the release itself is fetched, then converted into ``file``
            file = str(raw["url"]).rstrip("/").rsplit("/", 1)[-1]
            d = Download(
                url=str(raw["url"]),
                file=file,
                checksum=checksum_of(raw.get("release_md5"), raw.get("release_sha256")),
                bytes=raw.get("bytes"),
                creates=(file,),
                unpack=False,
            )
        else:
            d = Download(
                url=str(raw["url"]),
                file=str(raw["file"]),
                checksum=checksum_of(None, raw.get("sha256")),
                bytes=raw.get("bytes"),
                creates=(str(raw["file"]),),
                unpack=False,
            )
        out.append(Missing("checkpoint", name, weights, (d,), convert=convert, dest=dest))
    return out


def present(root: str, d: Download) -> bool:
    return any(os.path.exists(os.path.join(root, c)) for c in d.creates)


# ---- the plan ------------------------------------------------------------------------------------


def human(n: int | None) -> str:
    if n is None:
        return "size unknown"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _existing(path: str) -> str:
    """``path`` or its nearest existing ancestor (nothing is created)."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def free_bytes(path: str) -> int:
    """Free space on the file system that holds ``path``."""
    return shutil.disk_usage(_existing(path)).free


def space_needed(item: Missing) -> int:
    """Bytes the item occupies while it is fetched: an archive and its unpacked content side by side
    (taken as twice the archive: the plan line's "needed"), a plain file once; unknown sizes count 0."""
    return sum((d.bytes or 0) * (2 if d.unpack else 1) for d in item.downloads)


def plan(items: Sequence[Missing]) -> tuple[str, bool]:
    """One line naming what is missing, the bytes to fetch, and the free space where it goes; and whether
    that space suffices."""
    fetchable = [m for m in items if m.fetchable]
    parts = []
    for kind in ("data set", "checkpoint"):
        mine = [m for m in fetchable if m.kind == kind]
        if mine:
            listed = ", ".join(f"{m.name} {human(m.bytes)}{'+' if m.unknown_sizes and m.bytes else ''}" for m in mine)
            parts.append(f"{len(mine)} {kind}{'s' if len(mine) > 1 else ''} ({listed})")
    total = sum(m.bytes or 0 for m in fetchable)
    unknown = sum(m.unknown_sizes for m in fetchable)
    ok = True
    where = []
    by_disk: dict[int, list[Missing]] = {}  # the data root and the cache may share a file system
    for m in fetchable:
        by_disk.setdefault(os.stat(_existing(m.root)).st_dev, []).append(m)
    for group in by_disk.values():
        roots = list(dict.fromkeys(m.root for m in group))
        root = roots[0] if len(roots) == 1 else os.path.commonpath(roots)
        need, free = sum(space_needed(m) for m in group), free_bytes(roots[0])
        ok = ok and need <= free
        where.append(f"{human(need)} needed, {human(free)} free at {root}")
    line = ""
    if fetchable:
        line = (
            f"to fetch: {' and '.join(parts)}, {human(total)} in all"
            + (f" plus {unknown} file(s) of unknown size" if unknown else "")
            + f"; {'; '.join(where)}"
        )
    manual = [m for m in items if not m.fetchable]
    if manual:
        line += ("; " if line else "") + "not fetchable by script: " + ", ".join(f"{m.kind} {m.name}" for m in manual)
    return line, ok


def check_plan(items: Sequence[Missing], listener: ExtractListener, required: Collection[str] = ()) -> None:
    """Say the plan line when something is to be downloaded; refuse (a one-line error) when offline, when a
    ``required`` checkpoint (one every result needs) is missing and no script can fetch it (downloading the
    rest would be wasted), or when the disk is too small."""
    fetchable = [m for m in items if m.fetchable]
    if not fetchable:  # nothing to download: whoever needs a manual item says what to do about it
        return
    line, ok = plan(items)
    if offline():
        listener.fetching(line)
        raise OfflineError(
            f"{len(fetchable)} missing input(s) cannot be fetched offline ({OFFLINE_ENV}=1 or --offline): "
            + ", ".join(m.name for m in fetchable),
            "run `featbench download NAME,...` on a machine with a network and copy the data root and "
            f"cache here, or unset {OFFLINE_ENV}",
        )
    manual = [m for m in items if m.kind == "checkpoint" and not m.fetchable and m.name in required]
    if manual:
        m = manual[0]
        raise DataError(
            f"checkpoint {m.name} is missing and no script can fetch it, so nothing was downloaded",
            f"{m.manual}, or pass --weights {m.name}=FILE",
        )
    if not ok:
        raise DataError(
            f"not enough disk space: {line}", "free some space, or point --data-root / --cache-dir at a larger disk"
        )
    listener.fetching(line)


def fetch_inputs(
    datasets: Sequence[str],
    backbones: Sequence[str],
    *,
    registry_path: str | None = None,
    data_root: str | None = None,
    cache_dir: str | None = None,
    weights: Mapping[str, str] | None = None,
    listener: ExtractListener | None = None,
    required: Collection[str] = (),
) -> list[Missing]:
    """Fetch the catalog data sets and registry checkpoints among these names that are not on this machine
    (after the plan line; refused as :func:`check_plan` says); returns the missing items no script can fetch
    (their loaders say what to do about them)."""
    from ..config import load_registry
    from .cache import default_cache_dir
    from .datasets import default_data_root

    registry = load_registry(registry_path)
    root = os.path.abspath(os.path.expanduser(data_root or default_data_root()))
    cache = os.path.abspath(os.path.expanduser(cache_dir or default_cache_dir()))
    items = missing_datasets(registry, list(datasets), root) + missing_checkpoints(
        registry, list(backbones), cache, dict(weights or {})
    )
    if items:
        fetch_missing(items, listener or ExtractListener(), registry=registry, required=required)
    return [m for m in items if not m.fetchable]


def fetch_missing(
    items: Sequence[Missing], listener: ExtractListener, registry: Mapping | None = None, required: Collection[str] = ()
) -> None:
    """Plan (:func:`check_plan`), then fetch, verify and place every fetchable item."""
    check_plan(items, listener, required)
    for m in items:
        if not m.fetchable:
            continue
        for d in m.downloads:
            _fetch_one(m, d, listener, registry)
        listener.message(f"fetched {m.kind} {m.name}")


def _fetch_one(m: Missing, d: Download, listener: ExtractListener, registry: Mapping | None) -> None:
    url = source_url(d.url, d.file, registry)
    what = f"{m.kind} {m.name}"
    if m.convert:
        _fetch_converted(m, d, url, listener)
        return
    if not d.unpack:
        target = m.dest if m.kind == "checkpoint" else os.path.join(m.root, d.into, d.file)
        instead = ""
        if m.kind == "checkpoint":
            instead = f", or fetch the right file yourself and pass --weights {m.name}=FILE"
        fetch(url, target, expected=d.checksum, what=what, size=d.bytes, listener=listener, alternative=instead)
        return
    archive = os.path.join(m.root, DOWNLOADS, d.file)
    fetch(url, archive, expected=d.checksum, what=what, size=d.bytes, listener=listener)
    unpack(archive, os.path.join(m.root, d.into), m.root, inner=d.inner)
    if not present(m.root, d):
        raise DataError(
            f"{what}: {d.file} unpacked, but {os.path.join(m.root, d.creates[0])} is still missing",
            f"the archive's layout changed upstream: unpack it by hand (it is kept in {os.path.dirname(archive)})",
        )
    os.remove(archive)
    _remove_if_empty(os.path.dirname(archive))


def _fetch_converted(m: Missing, d: Download, url: str, listener: ExtractListener) -> None:
    if m.convert != "byol":
        raise ConfigError(
            f"registry backbones.{m.name}: unknown convert_from {m.convert!r}", "the converter known is byol"
        )
    from .convert import convert_byol

    release = os.path.join(m.root, DOWNLOADS, d.file)
    fetch(url, release, expected=d.checksum, what=f"checkpoint {m.name}", size=d.bytes, listener=listener)
    convert_byol(release, m.dest)  # written atomically
    os.remove(release)
    _remove_if_empty(os.path.dirname(release))


def _remove_if_empty(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass
