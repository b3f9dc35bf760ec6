"""Image data sets: image sources, protocol splits, the data root, and the catalog in registry.yaml.

A data set plugin's ``load(data_root)`` returns :class:`Splits`: ``train``, ``val`` (provided by the data
set, or a seeded stratified hold-out of train when the protocol generates one) and ``test``, each an
:class:`ImageSource` (images in a fixed order with integer labels). The protocol then selects on val,
refits on train+val and scores test with the data set's metric (``featbench.training.protocol``).
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Mapping, Sequence

import attrs
import numpy as np

from ..errors import ConfigError, DataError

SPLIT_SEED = 0  # every generated split uses this seed (the split is part of the feature-cache key)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def default_data_root() -> str:
    """``$FEATBENCH_DATA``, else ``~/.cache/featbench/data``."""
    return os.environ.get("FEATBENCH_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "featbench", "data")


class ImageSource:
    """Images in a fixed order with integer labels; ``image(i)`` is a PIL RGB image."""

    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i: int):
        raise NotImplementedError

    def subset(self, idx: np.ndarray) -> ImageSource:
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A digest of the image identities and labels in order (part of the feature-cache key)."""
        raise NotImplementedError


class FileImages(ImageSource):
    """Image files under ``root`` (paths relative to it, so moving the data keeps the cache valid)."""

    def __init__(self, root: str, files: Sequence[str], labels: Sequence[int]):
        self.root = root
        self.files = [str(f) for f in files]
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.files) != len(self.labels):
            raise ValueError("files and labels differ in length")
        self._fp: str | None = None

    def image(self, i: int):
        from PIL import Image

        with Image.open(os.path.join(self.root, self.files[i])) as im:
            return im.convert("RGB")  # also fixes grayscale / CMYK images (Caltech-101)

    def subset(self, idx: np.ndarray) -> FileImages:
        return FileImages(self.root, [self.files[i] for i in idx], self.labels[idx])

    def fingerprint(self) -> str:
        if self._fp is None:
            text = "\n".join(f"{f}\t{y}" for f, y in zip(self.files, self.labels.tolist()))
            self._fp = "files:" + hashlib.sha256(text.encode()).hexdigest()
        return self._fp


class ArrayImages(ImageSource):
    """Images held as a uint8 array (n, h, w) or (n, h, w, 3)."""

    def __init__(self, pixels: np.ndarray, labels: Sequence[int]):
        if pixels.dtype != np.uint8 or pixels.ndim not in (3, 4):
            raise ValueError(f"expected uint8 (n, h, w[, 3]) pixels, got {pixels.dtype} {pixels.shape}")
        self.pixels = pixels
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(pixels) != len(self.labels):
            raise ValueError("pixels and labels differ in length")
        self._fp: str | None = None

    def image(self, i: int):
        from PIL import Image

        return Image.fromarray(self.pixels[i]).convert("RGB")

    def subset(self, idx: np.ndarray) -> ArrayImages:
        return ArrayImages(self.pixels[idx], self.labels[idx])

    def fingerprint(self) -> str:
        if self._fp is None:
            h = hashlib.sha256(repr(self.pixels.shape).encode())
            h.update(np.ascontiguousarray(self.pixels).tobytes())
            h.update(self.labels.tobytes())
            self._fp = "pixels:" + h.hexdigest()
        return self._fp


@attrs.frozen
class Splits:
    """A data set's protocol splits. ``val`` is None only where the protocol holds out per seed."""

    train: ImageSource
    test: ImageSource
    classes: tuple[str, ...]
    val: ImageSource | None = None

    def items(self) -> list[tuple[str, ImageSource]]:
        return [
            (s, src) for s, src in (("train", self.train), ("val", self.val), ("test", self.test)) if src is not None
        ]

    def check(self, name: str) -> Splits:
        """Every split non-empty, labels in 0..C-1, every class present in train; returns self."""
        C = len(self.classes)
        for split, src in self.items():
            if len(src) == 0:
                raise DataError(f"{name}: the {split} split is empty", "check the data set files")
            if src.labels.min() < 0 or src.labels.max() >= C:
                raise DataError(f"{name}: {split} labels fall outside 0..{C - 1}", "check the label files")
        missing = sorted(set(range(C)) - set(np.unique(self.train.labels).tolist()))
        if missing:
            raise DataError(
                f"{name}: classes {[self.classes[i] for i in missing[:5]]} have no training image",
                "every class needs training images",
            )
        return self


def stratified_holdout(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) with about ``fraction`` of every class held out (at least one row per class
    with >= 2 rows stays in each part)."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        k = int(round(fraction * len(idx)))
        k = min(max(k, 1 if len(idx) >= 2 else 0), len(idx) - 1)
        val_idx.append(idx[:k])
        train_idx.append(idx[k:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def holdout_val(train: ImageSource, fraction: float, seed: int = SPLIT_SEED) -> tuple[ImageSource, ImageSource]:
    """Split ``train`` into (train, val) with ``fraction`` of every class in val (seeded, stratified)."""
    tr, va = stratified_holdout(train.labels, fraction, seed)
    return train.subset(tr), train.subset(va)


def per_class_split(labels: np.ndarray, counts: Sequence[int], seed: int = SPLIT_SEED) -> list[np.ndarray]:
    """Draw, without replacement, ``counts[0]`` rows per class, then ``counts[1]``, ...; the rest last.

    Classes are visited in label order with one seeded generator, so the split is reproducible.
    """
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(counts) + 1)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for j, k in enumerate(counts):
            parts[j].append(idx[start : start + k])
            start += k
        parts[-1].append(idx[start:])
    return [np.sort(np.concatenate(p)) for p in parts]


def missing_data(name: str, path: str, what: str, url: str | None) -> DataError:
    """The error for data that is not where we look: what to download and where to put it."""
    fetch = f"download {url} and unpack it" if url else "obtain the files"
    return DataError(
        f"data set {name!r}: {what} not found at {path}",
        f"{fetch} so that {path} exists, or point --data-root / $FEATBENCH_DATA at the folder that holds it",
    )


def read_lines(path: str, name: str, url: str | None) -> list[str]:
    if not os.path.isfile(path):
        raise missing_data(name, path, "index file", url)
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (MNIST format), plain or gzip-compressed."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path} is not an IDX file", "use the original *-ubyte(.gz) files")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise DataError(f"{path}: unknown IDX type code {data[2]:#x}", "use the original *-ubyte(.gz) files")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(dtypes[data[2]])
    body = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated ({body.size} values, header says {shape})", "download the file again")
    return body.reshape(shape).astype(dtype.newbyteorder("="))


# ---- catalog (registry.yaml ``datasets:``) ----------------------------------------------------------


@attrs.frozen
class CatalogEntry:
    """One ``datasets:`` entry of registry.yaml: which loader reads it, where, and with what protocol."""

    name: str
    loader: str
    metric: str = "top1"
    doc: str = ""
    dir: str | tuple[str, ...] = ""
    url: str | None = None
    val: str | float | None = None  # "provided", a hold-out fraction of train, or None
    options: Mapping = attrs.field(factory=dict)


def catalog_entries(registry: Mapping) -> list[CatalogEntry]:
    """Validate and return the ``datasets:`` section."""
    out = []
    for name, raw in (registry.get("datasets") or {}).items():
        if not isinstance(raw, Mapping) or "loader" not in raw:
            raise ConfigError(f"registry datasets.{name} needs a 'loader'", "see the entries shipped in registry.yaml")
        known = {f.name for f in attrs.fields(CatalogEntry)} - {"name", "options"}
        fields = {k: v for k, v in raw.items() if k in known}
        if isinstance(fields.get("dir"), list):
            fields["dir"] = tuple(fields["dir"])
        out.append(CatalogEntry(name=name, options={k: v for k, v in raw.items() if k not in known}, **fields))
    return out
