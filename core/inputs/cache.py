"""The on-disk feature cache: one entry per (backbone, weights, preprocessing, data set, split).

An entry is a directory ``<root>/features/<key[:2]>/<key>/`` holding ``x.npy`` (features, float16,
(n, d)), ``y.npy`` (labels, int64) and ``meta.json`` (what the key was made of, shapes, and the SHA-256
of both files). ``meta.json`` is written last and atomically, so an entry without it is incomplete.

Writing is resumable: rows arrive in chunks of ``chunk_rows`` and go straight into a memory-mapped
``x.partial.npy``; after each chunk ``progress.json`` records the chunk's SHA-256, so an interrupted
extraction restarts after the last chunk that still verifies. Reading memory-maps ``x.npy`` and checks
both files against ``meta.json`` first; a corrupt or truncated entry is deleted (with a warning) and
reported as missing, so the caller recomputes it. Only numpy ``.npy`` and JSON are used (no pickles).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping

import attrs
import numpy as np

from ..errors import DataError, storage_error
from .files import replacing

FEATURE_VERSION = 1  # bump when extraction changes the numbers for the same inputs
FP16_MAX = float(np.finfo(np.float16).max)
#: Rows per resumable chunk: an interrupted extraction restarts after the last complete chunk
#: (``$FEATBENCH_CACHE_CHUNK_ROWS`` overrides it; a different value restarts an interrupted entry).
DEFAULT_CHUNK_ROWS = 2048


class CacheCorruptWarning(UserWarning):
    """A cache entry failed its checksum and was deleted; it will be recomputed."""


def default_cache_dir() -> str:
    """``$FEATBENCH_CACHE``, else ``~/.cache/featbench``."""
    return os.environ.get("FEATBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "featbench")


def cache_key(fields: Mapping) -> str:
    """SHA-256 of the canonical JSON of ``fields`` (order-independent), plus the feature version."""
    text = json.dumps(
        {"featbench_feature_version": FEATURE_VERSION, **fields}, sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()


_sha_memo: dict[tuple, str] = {}


def file_sha256(path: str, memo: bool = False) -> str:
    """SHA-256 of a file; with ``memo``, remembered per (path, size, mtime) within the process (for large
    read-only files such as weights; cache entries are always re-read)."""
    st = os.stat(path)
    tag = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if memo and tag in _sha_memo:
        return _sha_memo[tag]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    if memo:
        _sha_memo[tag] = h.hexdigest()
    return h.hexdigest()


def _write_json(path: str, data: Mapping) -> None:
    with replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def _save_npy(path: str, array: np.ndarray) -> None:
    with replacing(path, ".npy") as tmp:
        np.save(tmp, array, allow_pickle=False)


def _reserve(path: str) -> None:
    """Allocate the blocks of a (sparse) file now: a full disk then fails here with ENOSPC, instead of
    killing the process with SIGBUS when a memory-mapped page is written later."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):  # file systems without fallocate
            raise
    finally:
        os.close(fd)


def _chunk_sha(rows: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(rows).tobytes()).hexdigest()


@attrs.frozen
class CachedFeatures:
    """A complete cache entry: ``x`` is a read-only memory map (n, d) float16, ``y`` (n,) int64."""

    key: str
    x: np.ndarray
    y: np.ndarray
    meta: Mapping
    path: str  # the entry's directory


class FeatureCache:
    """Feature arrays on disk under ``root`` (see the module docstring)."""

    def __init__(self, root: str | None = None, chunk_rows: int | None = None):
        self.root = os.path.abspath(root or default_cache_dir())
        self.chunk_rows = chunk_rows or int(os.environ.get("FEATBENCH_CACHE_CHUNK_ROWS") or DEFAULT_CHUNK_ROWS)

    def entry_dir(self, key: str) -> str:
        return os.path.join(self.root, "features", key[:2], key)

    # ---- reading -----------------------------------------------------------------------------

    def load(self, key: str) -> CachedFeatures | None:
        """The entry ``key`` if complete and intact; None if missing (a corrupt entry is deleted)."""
        d = self.entry_dir(key)
        meta_path = os.path.join(d, "meta.json")
        if not os.path.isfile(meta_path):
            return None
        x_path, y_path = os.path.join(d, "x.npy"), os.path.join(d, "y.npy")
        try:
            with open(meta_path, encoding="utf-8") as f:
                meta = json.load(f)
            if meta.get("key") != key:
                raise ValueError("meta.json belongs to another key")
            for path, name in ((x_path, "x"), (y_path, "y")):
                if file_sha256(path) != meta["sha256"][name]:
                    raise ValueError(f"{name}.npy checksum mismatch")
            x = np.load(x_path, mmap_mode="r", allow_pickle=False)
            y = np.load(y_path, allow_pickle=False)
            if x.shape != (meta["n"], meta["d"]) or y.shape != (meta["n"],):
                raise ValueError(f"shape {x.shape} / {y.shape} != meta ({meta['n']}, {meta['d']})")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warnings.warn(
                f"feature cache entry {d} is corrupt ({exc}); deleting it and recomputing",
                CacheCorruptWarning,
                stacklevel=2,
            )
            shutil.rmtree(d, ignore_errors=True)
            return None
        return CachedFeatures(key=key, x=x, y=y, meta=meta, path=d)

    # ---- writing -----------------------------------------------------------------------------

    def check_writable(self) -> str:
        """Create the cache's lock directory (outside the entries, which load() may delete); a StorageError
        now if that is impossible. Returns the lock directory."""
        locks = os.path.join(self.root, "locks")
        try:
            os.makedirs(locks, exist_ok=True)
        except OSError as exc:
            raise storage_error(exc, "the feature cache", self.root) from None
        return locks

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold an exclusive lock on entry ``key`` (other featbench processes wait); a no-op without fcntl."""
        locks = self.check_writable()
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        with open(os.path.join(locks, f"{key}.lock"), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def writer(self, key: str, labels: np.ndarray, fields: Mapping) -> ChunkWriter:
        """A resumable writer for entry ``key`` with these labels (call inside :meth:`lock`)."""
        return ChunkWriter(self.entry_dir(key), key, np.asarray(labels, dtype=np.int64), dict(fields), self.chunk_rows)


class ChunkWriter:
    """Writes one entry chunk by chunk; ``start`` is the first row still to compute (after a resume)."""

    def __init__(self, directory: str, key: str, labels: np.ndarray, fields: dict, chunk_rows: int):
        self.dir, self.key, self.labels, self.fields = directory, key, labels, fields
        self.n = len(labels)
        self.chunk_rows = chunk_rows
        self.partial = os.path.join(directory, "x.partial.npy")
        self.progress_path = os.path.join(directory, "progress.json")
        self.d: int | None = None
        self.chunks: list[str] = []
        self._mm = None
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise storage_error(exc, "the feature cache entry", directory) from None
        self._resume()

    @property
    def start(self) -> int:
        return min(len(self.chunks) * self.chunk_rows, self.n)

    def _resume(self) -> None:
        """Keep the chunks of an interrupted write that still verify; start over otherwise."""
        try:
            with open(self.progress_path, encoding="utf-8") as f:
                prog = json.load(f)
            if (prog["key"], prog["n"], prog["chunk_rows"]) != (self.key, self.n, self.chunk_rows):
                raise ValueError("different entry")
            if prog["labels_sha256"] != _chunk_sha(self.labels):
                raise ValueError("different labels")
            mm = np.load(self.partial, mmap_mode="r+", allow_pickle=False)
            if mm.shape != (self.n, prog["d"]) or mm.dtype != np.float16:
                raise ValueError("partial file has the wrong shape")
        except (OSError, ValueError, KeyError, TypeError):
            return
        good = []
        for i, sha in enumerate(prog["chunks"]):
            if _chunk_sha(mm[i * self.chunk_rows : (i + 1) * self.chunk_rows]) != sha:
                break
            good.append(sha)
        self.d, self.chunks, self._mm = prog["d"], good, mm

    def write(self, x: np.ndarray) -> None:
        """Append the next chunk: ``chunk_rows`` rows (fewer only for the last), float32 features."""
        lo = self.start
        hi = min(lo + self.chunk_rows, self.n)
        if x.ndim != 2 or x.shape[0] != hi - lo:
            raise ValueError(f"expected a chunk of {hi - lo} rows, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise DataError(
                f"the backbone produced NaN/Inf features (rows {lo}..{hi - 1})",
                "check the weights and the preprocessing",
            )
        if np.abs(x).max(initial=0.0) > FP16_MAX:
            raise DataError(
                f"features exceed the float16 range (max |x| = {np.abs(x).max():.3g})",
                "this backbone's pooled features are too large to cache in float16; report it",
            )
        if self._mm is not None and x.shape[1] != self.d:
            raise ValueError(f"chunk has {x.shape[1]} features, the entry {self.d}")
        try:
            if self._mm is None:
                self._create(x.shape[1])
            self._mm[lo:hi] = x.astype(np.float16)
            self._mm.flush()
            chunks = [*self.chunks, _chunk_sha(self._mm[lo:hi])]
            _write_json(
                self.progress_path,
                {
                    "key": self.key,
                    "n": self.n,
                    "d": self.d,
                    "chunk_rows": self.chunk_rows,
                    "labels_sha256": _chunk_sha(self.labels),
                    "chunks": chunks,
                },
            )
        except OSError as exc:  # the chunks recorded in progress.json so far stay valid for a resume
            raise storage_error(exc, "the feature cache entry", self.dir) from None
        self.chunks = chunks

    def _create(self, d: int) -> None:
        """The memory-mapped ``x.partial.npy`` with all its blocks allocated (none left behind on failure)."""
        try:
            self._mm = np.lib.format.open_memmap(self.partial, mode="w+", dtype=np.float16, shape=(self.n, d))
            _reserve(self.partial)
        except BaseException:
            self._mm = None
            with contextlib.suppress(OSError):
                os.remove(self.partial)
            raise
        self.d = d

    def finish(self) -> None:
        """Commit the entry (all rows written): y.npy, x.npy, then meta.json as the commit point."""
        if self.start < self.n or self._mm is None and self.n:
            raise ValueError(f"entry {self.key} has {self.start} of {self.n} rows")
        y_path, x_path = os.path.join(self.dir, "y.npy"), os.path.join(self.dir, "x.npy")
        try:
            _save_npy(y_path, self.labels)
            if self._mm is None:  # an empty split
                self.d = 0
                _save_npy(x_path, np.zeros((0, 0), np.float16))
            else:
                self._mm.flush()
                del self._mm
                self._mm = None
                os.replace(self.partial, x_path)
            meta = {
                "key": self.key,
                "n": self.n,
                "d": self.d,
                "dtype": "float16",
                "fields": self.fields,
                "sha256": {"x": file_sha256(x_path), "y": file_sha256(y_path)},
            }
            try:
                _write_json(os.path.join(self.dir, "meta.json"), meta)
            except OSError:
                if self.d:  # every row is computed: put them back where a rerun resumes from
                    os.replace(x_path, self.partial)
                raise
        except OSError as exc:
            raise storage_error(exc, "the feature cache entry", self.dir) from None
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.progress_path)
