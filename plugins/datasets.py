"""Built-in data sets: the paper's eleven, scikit-learn digits, Fashion-MNIST, and ``folder:PATH``.

Each loader reads the on-disk layout that torchvision's downloaders produce (so a root prepared with
torchvision works as it is) and builds the protocol splits itself: the torchvision classes check MD5s of
their index files, unpickle CIFAR with plain pickle, expose files only through private attributes and
have no split for Caltech-101 / SUN397, so reading the files directly is both simpler and testable.
The catalog (folders, URLs, metrics, val rules) lives in registry.yaml ``datasets:``.
"""

from __future__ import annotations

import functools
import json
import os

import numpy as np

from featbench.api import (
    IMAGE_EXTENSIONS,
    ArrayImages,
    CatalogEntry,
    DatasetSpec,
    FileImages,
    Splits,
    catalog_entries,
    holdout_val,
    hookimpl,
    missing_data,
    per_class_split,
    read_idx,
    read_lines,
    safe_unpickle,
)
from featbench.errors import ConfigError, DataError


def _base(entry: CatalogEntry, root: str) -> str:
    path = os.path.join(root, entry.dir) if isinstance(entry.dir, str) else None
    if path is None or not os.path.isdir(path):
        raise missing_data(entry.name, path or root, "the data folder", entry.options.get("manual") or entry.url)
    return path


def _with_val(entry: CatalogEntry, train, test, classes, val=None) -> Splits:
    """Attach the protocol's val split: the provided one, or a seeded hold-out of train."""
    if val is None and isinstance(entry.val, (int, float)):
        train, val = holdout_val(train, float(entry.val))
    return Splits(train=train, val=val, test=test, classes=tuple(classes)).check(entry.name)


def _mat(path: str, entry: CatalogEntry):
    if not os.path.isfile(path):
        raise missing_data(entry.name, path, "annotation file", entry.options.get("manual") or entry.url)
    try:
        from scipy.io import loadmat
    except ImportError:
        raise ConfigError(
            f"data set {entry.name!r} reads .mat files with scipy", "pip install scipy (or 'featbench[datasets]')"
        ) from None
    return loadmat(path, squeeze_me=True)


# ---- the eleven ------------------------------------------------------------------------------------


def load_aircraft(entry: CatalogEntry, root: str) -> Splits:
    base = os.path.join(_base(entry, root), "data")
    classes = read_lines(os.path.join(base, "variants.txt"), entry.name, entry.url)
    index = {c: i for i, c in enumerate(classes)}

    def split(name):
        rows = [
            line.split(" ", 1)
            for line in read_lines(os.path.join(base, f"images_variant_{name}.txt"), entry.name, entry.url)
        ]
        return FileImages(base, [f"images/{i}.jpg" for i, _ in rows], [index[c] for _, c in rows])

    return _with_val(entry, split("train"), split("test"), classes, val=split("val"))


def load_cub(entry: CatalogEntry, root: str) -> Splits:
    base = _base(entry, root)

    def table(name):
        return dict(line.split(" ", 1) for line in read_lines(os.path.join(base, name), entry.name, entry.url))

    images, labels, is_train = table("images.txt"), table("image_class_labels.txt"), table("train_test_split.txt")
    classes = [c for _, c in sorted(table("classes.txt").items(), key=lambda kv: int(kv[0]))]
    ids = sorted(images, key=int)

    def split(flag):
        chosen = [i for i in ids if is_train[i].strip() == flag]
        return FileImages(
            os.path.join(base, "images"), [images[i] for i in chosen], [int(labels[i]) - 1 for i in chosen]
        )

    return _with_val(entry, split("1"), split("0"), classes)


def _class_folders(path: str) -> list[str]:
    return sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))


def _images_in(path: str) -> list[str]:
    return sorted(f for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS))


def load_caltech101(entry: CatalogEntry, root: str) -> Splits:
    base = _base(entry, root)
    classes = _class_folders(base)
    files, labels = [], []
    for i, c in enumerate(classes):
        names = _images_in(os.path.join(base, c))
        files += [f"{c}/{n}" for n in names]
        labels += [i] * len(names)
    every = FileImages(base, files, labels)
    n_val = int(entry.options.get("val_per_class", 5))
    n_train = int(entry.options.get("train_per_class", 30)) - n_val
    val_idx, train_idx, test_idx = per_class_split(every.labels, [n_val, n_train])
    return _with_val(entry, every.subset(train_idx), every.subset(test_idx), classes, val=every.subset(val_idx))


def load_cars(entry: CatalogEntry, root: str) -> Splits:
    base = _base(entry, root)
    classes = [str(c) for c in _mat(os.path.join(base, "devkit", "cars_meta.mat"), entry)["class_names"]]

    def split(folder, mat):
        ann = np.atleast_1d(_mat(mat, entry)["annotations"])
        return FileImages(
            os.path.join(base, folder), [str(a["fname"]) for a in ann], [int(a["class"]) - 1 for a in ann]
        )

    train = split("cars_train", os.path.join(base, "devkit", "cars_train_annos.mat"))
    test = split("cars_test", os.path.join(base, "cars_test_annos_withlabels.mat"))
    return _with_val(entry, train, test, classes)


def load_cifar(entry: CatalogEntry, root: str) -> Splits:
    base = _base(entry, root)
    ten = int(entry.options.get("variant", 10)) == 10
    names = ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]) if ten else (["train"], ["test"])
    meta = safe_unpickle(os.path.join(base, "batches.meta" if ten else "meta"), encoding="latin1")
    classes = meta["label_names" if ten else "fine_label_names"]

    def split(files):
        xs, ys = [], []
        for name in files:
            path = os.path.join(base, name)
            if not os.path.isfile(path):
                raise missing_data(entry.name, path, "batch file", entry.url)
            d = safe_unpickle(path, encoding="latin1")
            xs.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys += list(d["labels" if ten else "fine_labels"])
        return ArrayImages(np.ascontiguousarray(np.concatenate(xs)), ys)

    return _with_val(entry, split(names[0]), split(names[1]), classes)


def load_dtd(entry: CatalogEntry, root: str) -> Splits:
    base = _base(entry, root)
    classes = _class_folders(os.path.join(base, "images"))
    index = {c: i for i, c in enumerate(classes)}
    p = int(entry.options.get("partition", 1))

    def split(name):
        rel = read_lines(os.path.join(base, "labels", f"{name}{p}.txt"), entry.name, entry.url)
        return FileImages(os.path.join(base, "images"), rel, [index[r.split("/", 1)[0]] for r in rel])

    return _with_val(entry, split("train"), split("test"), classes, val=split("val"))


def load_flowers(entry: CatalogEntry, root: str) -> Splits:
    base = _base(entry, root)
    labels = np.asarray(_mat(os.path.join(base, "imagelabels.mat"), entry)["labels"], dtype=np.int64) - 1
    ids = _mat(os.path.join(base, "setid.mat"), entry)

    def split(key):
        chosen = np.atleast_1d(ids[key]).astype(np.int64)
        return FileImages(os.path.join(base, "jpg"), [f"image_{i:05d}.jpg" for i in chosen], labels[chosen - 1])

    classes = [str(i + 1) for i in range(int(labels.max()) + 1)]
    return _with_val(entry, split("trnid"), split("tstid"), classes, val=split("valid"))


def load_food(entry: CatalogEntry, root: str) -> Splits:
    base = _base(entry, root)

    def meta(name):
        path = os.path.join(base, "meta", f"{name}.json")
        if not os.path.isfile(path):
            raise missing_data(entry.name, path, "index file", entry.url)
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    train_meta, test_meta = meta("train"), meta("test")
    classes = sorted(train_meta)
    index = {c: i for i, c in enumerate(classes)}

    def split(m):
        pairs = [(f"{rel}.jpg", index[c]) for c in sorted(m) for rel in m[c]]
        return FileImages(os.path.join(base, "images"), [p for p, _ in pairs], [y for _, y in pairs])

    return _with_val(entry, split(train_meta), split(test_meta), classes)


def load_pets(entry: CatalogEntry, root: str) -> Splits:
    base = _base(entry, root)
    names: dict[int, str] = {}

    def split(name):
        rows = [
            line.split() for line in read_lines(os.path.join(base, "annotations", f"{name}.txt"), entry.name, entry.url)
        ]
        for r in rows:
            names.setdefault(int(r[1]) - 1, r[0].rsplit("_", 1)[0])
        return FileImages(os.path.join(base, "images"), [f"{r[0]}.jpg" for r in rows], [int(r[1]) - 1 for r in rows])

    train, test = split("trainval"), split("test")
    return _with_val(entry, train, test, [names[i] for i in range(len(names))])


def load_sun397(entry: CatalogEntry, root: str) -> Splits:
    base = _base(entry, root)
    classes = [c.strip("/") for c in read_lines(os.path.join(base, "ClassName.txt"), entry.name, entry.url)]
    index = {c: i for i, c in enumerate(classes)}
    p = int(entry.options.get("partition", 1))

    def split(name):
        file = f"{name}_{p:02d}.txt"
        path = next(
            (q for q in (os.path.join(base, file), os.path.join(base, "Partitions", file)) if os.path.isfile(q)),
            os.path.join(base, file),
        )
        rel = [r.strip("/") for r in read_lines(path, entry.name, entry.url)]
        return FileImages(base, rel, [index[os.path.dirname(r)] for r in rel])

    return _with_val(entry, split("Training"), split("Testing"), classes)


# ---- offline data sets -----------------------------------------------------------------------------


def load_digits(entry: CatalogEntry, root: str) -> Splits:
    """scikit-learn's 1,797 8x8 digits (0..16 ink) as 8-bit images; test split as the embedded default."""
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError:
        raise ConfigError("the digits data set needs scikit-learn", "pip install 'featbench[demo]'") from None
    data = sk_digits()
    pixels = np.round(data.images * (255.0 / 16.0)).astype(np.uint8)
    every = ArrayImages(pixels, data.target)
    train, test = holdout_val(every, float(entry.options.get("test_fraction", 1 / 3)))  # the embedded default's split
    return _with_val(entry, train, test, [str(d) for d in range(10)])


def _find_idx(folder: str, stem: str) -> str | None:
    for name in (f"{stem}-ubyte.gz", f"{stem}-ubyte", f"{stem}.idx3-ubyte", f"{stem}.idx1-ubyte"):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None


def load_idx(entry: CatalogEntry, root: str) -> Splits:
    """MNIST-format data sets (Fashion-MNIST): the first folder of ``dir`` holding all four IDX files."""
    stems = ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")
    dirs = (entry.dir,) if isinstance(entry.dir, str) else entry.dir
    tried = [os.path.join(root, d) for d in dirs]  # an absolute d stays absolute
    for folder in tried:
        found = [_find_idx(folder, s) for s in stems]
        if all(found):
            x_tr, y_tr, x_te, y_te = (read_idx(p) for p in found)
            classes = entry.options.get("classes") or [str(i) for i in range(int(y_tr.max()) + 1)]
            return _with_val(entry, ArrayImages(x_tr, y_tr), ArrayImages(x_te, y_te), classes)
    raise missing_data(entry.name, " or ".join(tried), "the four IDX files (train/t10k images/labels)", entry.url)


def load_folder(path: str, root: str, val_fraction: float = 0.2) -> Splits:
    """``PATH/train/<class>/*`` and ``PATH/test/<class>/*`` (and optionally ``PATH/val/<class>/*``)."""
    path = os.path.expanduser(path)
    name = f"folder:{path}"
    if not os.path.isdir(os.path.join(path, "train")) or not os.path.isdir(os.path.join(path, "test")):
        raise DataError(
            f"{name}: expected the folders {os.path.join(path, 'train')} and {os.path.join(path, 'test')}",
            "lay the images out as PATH/{train,test}[/val]/<class>/<image> (torchvision ImageFolder per split)",
        )
    classes = _class_folders(os.path.join(path, "train"))
    index = {c: i for i, c in enumerate(classes)}

    def split(sub):
        base = os.path.join(path, sub)
        extra = sorted(set(_class_folders(base)) - set(index))
        if extra:
            raise DataError(
                f"{name}: {sub}/ has classes not in train/: {extra[:5]}", "every class needs training images"
            )
        files, labels = [], []
        for c in _class_folders(base):
            names = _images_in(os.path.join(base, c))
            files += [f"{c}/{n}" for n in names]
            labels += [index[c]] * len(names)
        return FileImages(base, files, labels)

    train, test = split("train"), split("test")
    if os.path.isdir(os.path.join(path, "val")):
        val = split("val")
    else:
        train, val = holdout_val(train, val_fraction)
    return Splits(train=train, val=val, test=test, classes=tuple(classes)).check(name)


LOADERS = {
    "aircraft": load_aircraft,
    "cub": load_cub,
    "caltech101": load_caltech101,
    "cars": load_cars,
    "cifar": load_cifar,
    "dtd": load_dtd,
    "flowers": load_flowers,
    "food": load_food,
    "pets": load_pets,
    "sun397": load_sun397,
    "digits": load_digits,
    "idx": load_idx,
}


def _resolve_folder(name: str) -> DatasetSpec:
    path = name.split(":", 1)[1]
    if not os.path.isdir(os.path.expanduser(path)):
        raise DataError(f"{name}: no such directory", "pass folder:PATH with PATH/{train,test}[,val]/<class>/<image>")
    return DatasetSpec(load=functools.partial(load_folder, path))


@hookimpl
def register_datasets(registry, catalog):
    for entry in catalog_entries(catalog):
        if entry.loader not in LOADERS:
            raise ConfigError(
                f"registry datasets.{entry.name}: unknown loader {entry.loader!r}", f"use one of {', '.join(LOADERS)}"
            )
        registry.add(
            entry.name,
            DatasetSpec(load=functools.partial(LOADERS[entry.loader], entry), metric=entry.metric),
            summary=entry.doc,
        )
    registry.add(
        "folder:",
        DatasetSpec(resolve=_resolve_folder),
        summary="any image folder: folder:PATH with PATH/{train,test}[,val]/<class>/*",
    )
