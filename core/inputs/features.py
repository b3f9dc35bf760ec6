"""Feature sets: loading ``.npz`` feature files, validating them, and forming ensembles.

A feature file holds ``train_x``, ``train_y``, ``test_x``, ``test_y`` and optionally ``val_x``, ``val_y``
(and optionally ``metric``: ``top1`` or ``mean_per_class``). Several files form an ensemble: every block is
L2-normalised per row, the blocks are concatenated, and the result is normalised again (SeA Eq. 1).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import attrs
import numpy as np

from ..api import METRICS
from ..errors import DataError, shown

SPLITS = ("train", "val", "test")
_KNOWN_KEYS = {f"{s}_{k}" for s in SPLITS for k in "xy"} | {"metric", "classes"}


@attrs.frozen
class FeatureSet:
    """Unit-normalised features of one data set under one backbone (or ensemble)."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    metric: str = "top1"
    val_x: np.ndarray | None = None
    val_y: np.ndarray | None = None
    sources: tuple[str, ...] = ()
    cache_keys: tuple[str, ...] = ()

    @property
    def dim(self) -> int:
        return self.train_x.shape[1]

    @property
    def has_val(self) -> bool:
        return self.val_x is not None


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise ``x / max(||x||, 1e-12)`` in float32."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


_LABEL_MAX = np.iinfo(np.int64).max  # a label above it (uint64, or a float) would wrap when cast to int64
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_labels(y: np.ndarray, where: str) -> np.ndarray:
    if y.ndim != 1:
        raise DataError(
            f"{where} has shape {y.shape}, expected a 1-D label vector", "store labels as integers of shape (n,)"
        )
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise DataError(f"{where} holds non-integer labels", "store class indices 0..C-1 as integers")
    elif y.dtype.kind not in "iu":
        raise DataError(f"{where} has dtype {y.dtype}, not integer labels", "store class indices 0..C-1 as integers")
    if y.size and (y.max() > _LABEL_MAX or y.dtype.kind == "f" and y.min() < -_LABEL_MAX):
        top = int(y.max()) if y.dtype.kind != "f" else f"{float(np.abs(y).max()):g}"
        raise DataError(f"{where} holds label {top}, beyond any class index", "labels must be class indices 0..C-1")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise DataError(f"{where} holds negative labels (min {y.min()})", "labels must be class indices 0..C-1")
    return y


class ArrayHeader:
    """Shape and dtype of an array stored in a ``.npz`` file, read without loading its data."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)


def _check_x(x: np.ndarray | ArrayHeader, where: str) -> None:
    if x.ndim != 2:
        raise DataError(f"{where} has shape {x.shape}, expected (n, d)", "store one feature vector per row")
    if x.dtype.kind not in "fiu":
        raise DataError(f"{where} has dtype {x.dtype}, not numbers", "store float features")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"{where} is empty (shape {x.shape})", "store at least one row and one feature")
    if isinstance(x, np.ndarray) and not np.all(np.isfinite(x)):
        bad = int((~np.isfinite(x)).any(axis=1).sum())
        raise DataError(f"{where} has {bad} row(s) with NaN or Inf", "re-extract the features or drop those rows")
    if isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.dtype.itemsize > 4:
        top = max(abs(float(x.max())), abs(float(x.min())))
        if top > _FLOAT32_MAX:
            raise DataError(
                f"{where} holds values up to {top:.3g} in magnitude, beyond float32's range (±{_FLOAT32_MAX:.3g}) "
                "that featbench trains in",
                "rescale the features (e.g. divide each row by its largest value in float64) and save them again",
            )


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive (an empty one starts with its end record)
_HEADER_READERS = {(1, 0): "read_array_header_1_0", (2, 0): "read_array_header_2_0"}


def _header(npz, key: str) -> ArrayHeader | None:
    """The header of member ``key`` of an open NpzFile (None for a format version we do not parse)."""
    with npz.zip.open(f"{key}.npy") as fh:
        reader = _HEADER_READERS.get(np.lib.format.read_magic(fh))
        if reader is None:
            return None
        shape, _, dtype = getattr(np.lib.format, reader)(fh)
    return ArrayHeader(shape, dtype)


def _check_member_sizes(npz, path: str) -> None:
    """Refuse, from the zip directory and the .npy headers alone (nothing is decompressed beyond a header),
    a file whose members unpack to more memory than this process has (a zip bomb), or whose header
    claims more data than its member holds."""
    from ..limits import available_memory, size

    infos = [i for i in npz.zip.infolist() if i.filename.endswith(".npy")]
    for info in infos:
        head = _header(npz, info.filename[:-4])
        if head is not None and not head.dtype.hasobject and _nbytes(head) > info.file_size:
            raise DataError(f"{path}: member {info.filename} claims shape {head.shape[:4]} ({size(_nbytes(head))}) but "
                            f"holds {size(info.file_size)}", "the file is damaged: write it again with numpy.savez")
    total = sum(i.file_size for i in infos)
    free = available_memory()
    if free is not None and total > free:
        big = max(infos, key=lambda i: i.file_size)
        raise DataError(f"{path}: member {big.filename} unpacks to {size(big.file_size)} ({size(big.compress_size)} "
                        f"compressed; {size(total)} in all), more than the {size(free)} of memory available",
                        "free memory, or raise this process' memory limit (ulimit -v, the job's memory); a member "
                        "that unpacks far beyond its compressed size may be a zip bomb")


def _nbytes(head: ArrayHeader) -> int:
    n = head.dtype.itemsize
    for d in head.shape:
        n *= int(d)
    return n


def _not_npz(path: str) -> DataError | None:
    """An explanation if ``path`` is not a zip archive (numpy would otherwise call it a pickle)."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:4] in _ZIP_MAGIC:
        return None
    fix = "save the arrays together with numpy.savez(PATH, train_x=..., train_y=..., test_x=..., test_y=...)"
    if not head:
        return DataError(f"{path} is empty, not an .npz feature file", fix)
    if head.startswith(b"\x93NUMPY"):
        return DataError(f"{path} holds a single .npy array, not an .npz feature file", fix)
    if head[:1] == b"\x80":
        return DataError(
            f"{path} is a Python pickle, not an .npz feature file (featbench never unpickles data files)", fix
        )
    return DataError(f"{path} is not an .npz feature file (no zip signature)", fix)


def load_feature_file(path: str, headers_only: bool = False) -> dict[str, np.ndarray]:
    """Read and validate one ``.npz`` file (never unpickles).

    With ``headers_only`` the feature matrices are not read (they come back as :class:`ArrayHeader` s):
    everything is checked except that their values are finite.
    """
    if not os.path.isfile(path):
        raise DataError(
            f"feature file not found: {path}", "pass --features PATH.npz with train_x/train_y/test_x/test_y"
        )
    problem = _not_npz(path)
    if problem is not None:
        raise problem
    try:
        with np.load(path, allow_pickle=False) as f:
            _check_member_sizes(f, path)
            arrays = {k: (headers_only and k.endswith("_x") and _header(f, k)) or f[k] for k in f.files}
    except DataError:
        raise
    except ValueError as exc:
        raise DataError(
            f"{path}: cannot read ({exc})", "store plain numeric arrays with numpy.savez (no object arrays)"
        ) from None
    except Exception as exc:
        raise DataError(
            f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})",
            "the file is damaged or truncated: write it again with numpy.savez",
        ) from None
    missing = [k for k in ("train_x", "train_y", "test_x", "test_y") if k not in arrays]
    if missing:
        raise DataError(
            f"{path}: missing key(s) {', '.join(missing)} (has {', '.join(sorted(arrays)) or 'nothing'})",
            "a feature file needs train_x, train_y, test_x, test_y (val_x, val_y optional)",
        )
    if ("val_x" in arrays) != ("val_y" in arrays):
        raise DataError(f"{path}: has only one of val_x / val_y", "store both or neither")
    for split in SPLITS:
        if f"{split}_x" not in arrays:
            continue
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        _check_x(x, f"{path}: {split}_x")
        arrays[f"{split}_y"] = _check_labels(y, f"{path}: {split}_y")
        if x.shape[0] != y.shape[0]:
            raise DataError(
                f"{path}: {split}_x has {x.shape[0]} rows but {split}_y has {y.shape[0]}",
                "x and y must have one label per row",
            )
    d = arrays["train_x"].shape[1]
    for split in ("val", "test"):
        if f"{split}_x" in arrays and arrays[f"{split}_x"].shape[1] != d:
            raise DataError(
                f"{path}: {split}_x has {arrays[f'{split}_x'].shape[1]} features but train_x has {d}",
                "extract all splits with the same backbone",
            )
    return arrays


def _metric_of(arrays: dict[str, np.ndarray], path: str) -> str | None:
    if "metric" not in arrays:
        return None
    metric = str(arrays["metric"])
    if metric not in METRICS:
        raise DataError(f"{path}: unknown metric {shown(metric)}", f"use one of {', '.join(METRICS)}")
    return metric


def check_classes(train_y: np.ndarray, others: dict[str, np.ndarray], name: str) -> int:
    """Labels must be 0..C-1 with every class present in train (so C <= the training rows, checked before
    anything of size C is built); other splits may not add classes."""
    classes = np.unique(train_y)
    C = int(classes[-1]) + 1
    if C > len(train_y):  # before anything of size C is built
        raise DataError(f"{name}: training labels go up to {C - 1}, but there are only {len(train_y)} training rows "
                        "(every class 0..C-1 needs at least one)",
                        "labels must be class indices 0..C-1: remap them, e.g. with "
                        "numpy.unique(y, return_inverse=True)")
    if len(classes) != C:
        missing = np.setdiff1d(np.arange(C), classes).tolist()
        raise DataError(
            f"{name}: training labels are not contiguous 0..{C - 1} (missing "
            f"{missing[:5]}{'...' if len(missing) > 5 else ''})",
            "remap labels to 0..C-1, e.g. with numpy.unique(y, return_inverse=True)",
        )
    if C < 2:
        raise DataError(f"{name}: the training set has a single class", "a classifier needs at least 2 classes")
    for split, y in others.items():
        if y.size and y.max() >= C:
            raise DataError(
                f"{name}: {split} has class {int(y.max())}, never seen in training (C = {C})",
                "every test/val class must appear in train_y",
            )
    return C


def check_feature_files(paths: Sequence[str], name: str | None = None, metric: str | None = None) -> None:
    """Check one feature file or an ensemble without reading the feature matrices: keys, shapes, dtypes,
    labels, agreement between members. Only NaN/Inf values are left for :func:`load_features` to find."""
    _load_checked(paths, name, metric, headers_only=True)


def load_features(paths: Sequence[str], name: str | None = None, metric: str | None = None) -> FeatureSet:
    """Load one feature file, or an ensemble of several (normalise, concatenate, normalise)."""
    files, splits, metric, label, C = _load_checked(paths, name, metric, headers_only=False)
    out = {}
    for s in splits:
        blocks = [l2_normalize(f[f"{s}_x"]) for f in files]
        out[f"{s}_x"] = l2_normalize(np.concatenate(blocks, axis=1)) if len(blocks) > 1 else blocks[0]
        out[f"{s}_y"] = files[0][f"{s}_y"]
    return FeatureSet(
        name=label,
        train_x=out["train_x"],
        train_y=out["train_y"],
        test_x=out["test_x"],
        test_y=out["test_y"],
        val_x=out.get("val_x"),
        val_y=out.get("val_y"),
        num_classes=C,
        metric=metric,
        sources=tuple(paths),
    )


def _load_checked(paths: Sequence[str], name: str | None, metric: str | None, headers_only: bool):
    """``(files, splits, metric, label, num_classes)`` of a validated file or ensemble."""
    if not paths:
        raise DataError("no feature files given", "pass --features A.npz[,B.npz]")
    files = [load_feature_file(p, headers_only) for p in paths]
    first, ref = files[0], paths[0]
    splits = [s for s in SPLITS if f"{s}_x" in first]
    for p, f in zip(paths[1:], files[1:]):
        if [s for s in SPLITS if f"{s}_x" in f] != splits:
            raise DataError(f"ensemble members disagree on splits: {ref} and {p}", "give every member the same splits")
        for s in splits:
            if f[f"{s}_x"].shape[0] != first[f"{s}_x"].shape[0]:
                raise DataError(
                    f"ensemble members disagree on the number of {s} rows: {ref} has {first[f'{s}_x'].shape[0]}, {p} "
                    f"has {f[f'{s}_x'].shape[0]}",
                    "extract every backbone on the same images in the same order",
                )
            if not np.array_equal(f[f"{s}_y"], first[f"{s}_y"]):
                raise DataError(
                    f"ensemble members disagree on {s} labels: {ref} vs {p}",
                    "extract every backbone on the same images in the same order",
                )
    metrics = {m for m in (_metric_of(f, p) for p, f in zip(paths, files)) if m}
    if metric is None:
        if len(metrics) > 1:
            raise DataError(f"ensemble members disagree on the metric: {sorted(metrics)}", "pass --metric")
        metric = metrics.pop() if metrics else "top1"
    label = name or "+".join(os.path.splitext(os.path.basename(p))[0] for p in paths)
    C = check_classes(first["train_y"], {s: first[f"{s}_y"] for s in splits if s != "train"}, label)
    return files, splits, metric, label, C
