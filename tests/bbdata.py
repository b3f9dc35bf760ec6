"""Tiny synthetic copies of the data sets' on-disk layouts (torchvision's), for the loader tests.

Every image is 8x8; its pixel value encodes (class, index) so a test can check that a loader pairs each
file with the right label.
"""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
from PIL import Image


def write_image(path: str, value: int, mode: str = "RGB") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new(mode, (8, 8), (value, 255 - value, 7) if mode == "RGB" else value).save(path, format="PNG" if path.endswith(".png") else "JPEG")


def make_aircraft(root, classes=("707-320", "A320", "F-16A/B"), per_split=(2, 2, 3)):
    base = os.path.join(root, "fgvc-aircraft-2013b", "data")
    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, "variants.txt"), "w") as f:
        f.write("\n".join(classes) + "\n")
    n = 0
    for split, k in zip(("train", "val", "test"), per_split):
        with open(os.path.join(base, f"images_variant_{split}.txt"), "w") as f:
            for c in classes:
                for _ in range(k):
                    f.write(f"{1000000 + n} {c}\n")
                    write_image(os.path.join(base, "images", f"{1000000 + n}.jpg"), 10 * classes.index(c))
                    n += 1


def make_cub(root, n_classes=3, per_class=6):
    base = os.path.join(root, "CUB_200_2011")
    os.makedirs(os.path.join(base, "images"), exist_ok=True)
    imgs, labs, split, classes = [], [], [], []
    i = 1
    for c in range(1, n_classes + 1):
        cname = f"{c:03d}.Bird_{c}"
        classes.append(f"{c} {cname}")
        for j in range(per_class):
            rel = f"{cname}/Bird_{c}_{j}.jpg"
            write_image(os.path.join(base, "images", rel), 10 * (c - 1))
            imgs.append(f"{i} {rel}")
            labs.append(f"{i} {c}")
            split.append(f"{i} {1 if j < per_class - 2 else 0}")
            i += 1
    for name, lines in (("images.txt", imgs), ("image_class_labels.txt", labs), ("train_test_split.txt", split), ("classes.txt", classes)):
        with open(os.path.join(base, name), "w") as f:
            f.write("\n".join(lines) + "\n")


def make_caltech(root, classes=("BACKGROUND_Google", "accordion", "airplanes"), per_class=9, grayscale_first=True):
    base = os.path.join(root, "caltech101", "101_ObjectCategories")
    for ci, c in enumerate(classes):
        for j in range(per_class):
            mode = "L" if (grayscale_first and ci == 1 and j == 0) else "RGB"
            write_image(os.path.join(base, c, f"image_{j + 1:04d}.jpg"), 10 * ci, mode)


def make_cars(root, n_classes=3, per_class=(4, 2)):
    from scipy.io import savemat

    base = os.path.join(root, "stanford_cars")
    os.makedirs(os.path.join(base, "devkit"), exist_ok=True)
    savemat(os.path.join(base, "devkit", "cars_meta.mat"), {"class_names": np.array([f"Car {c}" for c in range(n_classes)], dtype=object)})
    dt = [("bbox_x1", "O"), ("class", "O"), ("fname", "O")]
    for folder, mat, k in (("cars_train", os.path.join(base, "devkit", "cars_train_annos.mat"), per_class[0]),
                           ("cars_test", os.path.join(base, "cars_test_annos_withlabels.mat"), per_class[1])):
        rows = []
        for c in range(n_classes):
            for j in range(k):
                fname = f"{c:02d}{j:03d}.jpg"
                write_image(os.path.join(base, folder, fname), 10 * c)
                rows.append((1, c + 1, fname))
        savemat(mat, {"annotations": np.array(rows, dtype=dt)})


def make_cifar(root, ten=True, per_class=(10, 3), n_classes=None):
    n_classes = n_classes or (10 if ten else 100)
    rng = np.random.default_rng(0)
    base = os.path.join(root, "cifar-10-batches-py" if ten else "cifar-100-python")
    os.makedirs(base, exist_ok=True)
    key = "labels" if ten else "fine_labels"

    def batch(k):
        y = np.repeat(np.arange(n_classes), k)
        x = rng.integers(0, 256, size=(len(y), 3072), dtype=np.uint8)
        return {"data": x, key: y.tolist()}

    def dump(name, obj):
        with open(os.path.join(base, name), "wb") as f:
            pickle.dump(obj, f, protocol=2)

    if ten:
        parts = [batch(per_class[0] // 5 or 1) for _ in range(5)]
        for i, p in enumerate(parts, 1):
            dump(f"data_batch_{i}", p)
        dump("test_batch", batch(per_class[1]))
        dump("batches.meta", {"label_names": [f"c{i}" for i in range(n_classes)]})
        return parts
    dump("train", batch(per_class[0]))
    dump("test", batch(per_class[1]))
    dump("meta", {"fine_label_names": [f"c{i}" for i in range(n_classes)]})


def make_dtd(root, classes=("banded", "dotted", "zigzagged"), per_split=2):
    base = os.path.join(root, "dtd", "dtd")
    os.makedirs(os.path.join(base, "labels"), exist_ok=True)
    for s in ("train", "val", "test"):
        lines = []
        for ci, c in enumerate(classes):
            for j in range(per_split):
                rel = f"{c}/{c}_{s}_{j}.jpg"
                write_image(os.path.join(base, "images", rel), 10 * ci)
                lines.append(rel)
        with open(os.path.join(base, "labels", f"{s}1.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")


def make_flowers(root, n_classes=3, per_split=(2, 2, 3)):
    from scipy.io import savemat

    base = os.path.join(root, "flowers-102")
    labels, ids = [], {"trnid": [], "valid": [], "tstid": []}
    i = 1
    for c in range(n_classes):
        for key, k in zip(ids, per_split):
            for _ in range(k):
                write_image(os.path.join(base, "jpg", f"image_{i:05d}.jpg"), 10 * c)
                labels.append(c + 1)
                ids[key].append(i)
                i += 1
    savemat(os.path.join(base, "imagelabels.mat"), {"labels": np.array(labels)})
    savemat(os.path.join(base, "setid.mat"), {k: np.array(v) for k, v in ids.items()})


def make_food(root, classes=("apple_pie", "baklava", "waffles"), per_split=(10, 3)):
    base = os.path.join(root, "food-101")
    os.makedirs(os.path.join(base, "meta"), exist_ok=True)
    for s, k in zip(("train", "test"), per_split):
        meta = {}
        for ci, c in enumerate(classes):
            meta[c] = [f"{c}/{s}{j}" for j in range(k)]
            for rel in meta[c]:
                write_image(os.path.join(base, "images", rel + ".jpg"), 10 * ci)
        with open(os.path.join(base, "meta", f"{s}.json"), "w") as f:
            json.dump(meta, f)


def make_pets(root, breeds=("Abyssinian", "american_bulldog", "Bengal"), per_split=(5, 2)):
    base = os.path.join(root, "oxford-iiit-pet")
    os.makedirs(os.path.join(base, "annotations"), exist_ok=True)
    for s, k in zip(("trainval", "test"), per_split):
        lines = []
        for bi, b in enumerate(breeds):
            for j in range(k):
                image_id = f"{b}_{s}{j}"
                write_image(os.path.join(base, "images", image_id + ".jpg"), 10 * bi)
                lines.append(f"{image_id} {bi + 1} {1 + bi % 2} 1")
        with open(os.path.join(base, "annotations", f"{s}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")


def make_sun397(root, classes=("/a/abbey", "/b/bakery/shop", "/z/zoo"), per_split=(5, 2), partitions_dir=True):
    base = os.path.join(root, "SUN397")
    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, "ClassName.txt"), "w") as f:
        f.write("\n".join(classes) + "\n")
    pdir = os.path.join(base, "Partitions") if partitions_dir else base
    os.makedirs(pdir, exist_ok=True)
    for s, k in zip(("Training", "Testing"), per_split):
        lines = []
        for ci, c in enumerate(classes):
            for j in range(k):
                rel = f"{c}/sun_{s}{j}.jpg"
                write_image(os.path.join(base, rel.strip("/")), 10 * ci)
                lines.append(rel)
        with open(os.path.join(pdir, f"{s}_01.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")


def write_idx(path: str, array: np.ndarray) -> None:
    import gzip

    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with (gzip.open(path, "wb") if path.endswith(".gz") else open(path, "wb")) as f:
        f.write(data)


def make_idx(folder, n_train=40, n_test=20, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    ext = "-ubyte.gz" if gz else "-ubyte"
    out = {}
    for stem, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = np.arange(n) % 10
        write_idx(os.path.join(folder, f"{stem}-images-idx3{ext}"), x)
        write_idx(os.path.join(folder, f"{stem}-labels-idx1{ext}"), y)
        out[stem] = (x, y)
    return out
