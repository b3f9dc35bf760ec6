"""Data set loaders on synthetic copies of each on-disk layout: splits, labels, classes, metrics, errors."""

from __future__ import annotations

import os

import bbdata
import numpy as np
import pytest

from featbench.errors import DataError, UnknownNameError
from featbench.inputs.datasets import ArrayImages, FileImages, per_class_split, read_idx
from featbench.manager import load_plugins


@pytest.fixture(scope="module")
def host():
    return load_plugins(strict=True, entry_points=[])


def load(host, name, root):
    return host.get_dataset(name).load(str(root))


def pixel_class(src, i):
    """The class a synthetic image encodes in its red channel (10 * class)."""
    return round(np.asarray(src.image(i))[0, 0, 0] / 10)


def assert_pairs(src):
    for i in range(len(src)):
        assert pixel_class(src, i) == src.labels[i], (src.files[i] if hasattr(src, "files") else i)


def test_aircraft_provided_splits_and_metric(host, tmp_path):
    bbdata.make_aircraft(tmp_path)
    s = load(host, "aircraft", tmp_path)
    assert s.classes == ("707-320", "A320", "F-16A/B")
    assert (len(s.train), len(s.val), len(s.test)) == (6, 6, 9)
    for src in (s.train, s.val, s.test):
        assert_pairs(src)
    assert host.get_dataset("aircraft").metric == "mean_per_class"


def test_cub_official_split_and_seeded_val(host, tmp_path):
    bbdata.make_cub(tmp_path)  # 3 classes x (4 train + 2 test)
    s = load(host, "birds", tmp_path)
    assert len(s.classes) == 3 and len(s.test) == 6
    assert len(s.train) + len(s.val) == 12 and len(s.val) == 3  # 20% of 4 per class -> 1 each
    assert not set(s.train.files) & set(s.val.files)
    for src in (s.train, s.val, s.test):
        assert_pairs(src)
    again = load(host, "birds", tmp_path)
    assert again.val.files == s.val.files  # the generated split is deterministic
    assert host.get_dataset("birds").metric == "top1"


def test_caltech_30_per_class_with_background_and_rgb(host, tmp_path, monkeypatch):
    bbdata.make_caltech(tmp_path)  # 3 classes x 9 images, one grayscale
    from featbench.inputs.datasets import CatalogEntry

    spec = host.get_dataset("caltech101")
    entry = spec.load.args[0]
    small = CatalogEntry(**{**{k: getattr(entry, k) for k in ("name", "loader", "metric", "doc", "dir", "url", "val")},
                            "options": {"train_per_class": 6, "val_per_class": 2}})
    s = spec.load.func(small, str(tmp_path))
    assert s.classes[0] == "BACKGROUND_Google" and len(s.classes) == 3
    assert np.bincount(s.train.labels).tolist() == [4, 4, 4]
    assert np.bincount(s.val.labels).tolist() == [2, 2, 2]
    assert np.bincount(s.test.labels).tolist() == [3, 3, 3]
    files = s.train.files + s.val.files + s.test.files
    assert len(set(files)) == 27  # drawn without replacement: every image exactly once
    gray = [src.image(i) for src in (s.train, s.val, s.test) for i, f in enumerate(src.files) if f == "accordion/image_0001.jpg"]
    assert gray and gray[0].mode == "RGB"
    assert spec.metric == "mean_per_class"


def test_per_class_split_is_seeded_and_disjoint():
    y = np.repeat(np.arange(4), 10)
    a = per_class_split(y, [2, 3])
    b = per_class_split(y, [2, 3])
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert sorted(np.concatenate(a).tolist()) == list(range(40))
    assert [np.bincount(y[p]).tolist() for p in a] == [[2] * 4, [3] * 4, [5] * 4]


def test_cars_from_local_mat_files(host, tmp_path):
    pytest.importorskip("scipy")
    bbdata.make_cars(tmp_path)
    s = load(host, "cars", tmp_path)
    assert s.classes == ("Car 0", "Car 1", "Car 2")
    assert len(s.train) + len(s.val) == 12 and len(s.test) == 6
    for src in (s.train, s.val, s.test):
        assert_pairs(src)


@pytest.mark.parametrize("ten", [True, False])
def test_cifar_batches_read_without_unpickling_code(host, tmp_path, ten):
    parts = bbdata.make_cifar(tmp_path, ten=ten, n_classes=None if ten else 100, per_class=(10, 3) if ten else (2, 1))
    s = load(host, "cifar10" if ten else "cifar100", tmp_path)
    assert len(s.classes) == (10 if ten else 100)
    assert len(s.test) == (30 if ten else 100)
    if ten:
        assert len(s.val) == 10 and len(s.train) == 90  # 10% of every class held out
        x = np.concatenate([p["data"] for p in parts]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        y = np.concatenate([p["labels"] for p in parts])
        every = np.concatenate([s.train.pixels, s.val.pixels])
        assert sorted(map(bytes, every)) == sorted(map(bytes, x))  # the same images, HWC
        i = 5
        j = [k for k in range(len(s.train)) if np.array_equal(s.train.pixels[k], x[i])][0]
        assert s.train.labels[j] == y[i]
        assert np.asarray(s.train.image(j)).shape == (32, 32, 3)


def test_dtd_flowers_food_pets_sun(host, tmp_path):
    bbdata.make_dtd(tmp_path)
    bbdata.make_food(tmp_path)
    bbdata.make_pets(tmp_path)
    bbdata.make_sun397(tmp_path)
    d = load(host, "dtd", tmp_path)
    assert (len(d.train), len(d.val), len(d.test)) == (6, 6, 6) and d.classes == ("banded", "dotted", "zigzagged")
    f = load(host, "food", tmp_path)
    assert (len(f.train), len(f.val), len(f.test)) == (27, 3, 9)
    p = load(host, "pets", tmp_path)
    assert p.classes == ("Abyssinian", "american_bulldog", "Bengal") and len(p.test) == 6 and len(p.train) + len(p.val) == 15
    sun = load(host, "sun397", tmp_path)
    assert sun.classes == ("a/abbey", "b/bakery/shop", "z/zoo") and len(sun.test) == 6 and len(sun.val) == 3
    for s in (d, f, p, sun):
        for src in (s.train, s.val, s.test):
            assert_pairs(src)
    assert host.get_dataset("pets").metric == "mean_per_class" and host.get_dataset("food").metric == "top1"


def test_flowers_mat_splits(host, tmp_path):
    pytest.importorskip("scipy")
    bbdata.make_flowers(tmp_path)
    s = load(host, "flowers", tmp_path)
    assert (len(s.train), len(s.val), len(s.test)) == (6, 6, 9) and len(s.classes) == 3
    for src in (s.train, s.val, s.test):
        assert_pairs(src)
    assert host.get_dataset("flowers").metric == "mean_per_class"


def test_missing_data_names_what_and_where(host, tmp_path):
    with pytest.raises(DataError) as e:
        load(host, "cifar100", tmp_path)
    msg = str(e.value)
    assert os.path.join(str(tmp_path), "cifar-100-python") in msg and "cifar-100-python.tar.gz" in msg and "--data-root" in msg
    with pytest.raises(DataError, match="dead"):
        load(host, "cars", tmp_path)
    bbdata.make_sun397(tmp_path)
    os.remove(os.path.join(tmp_path, "SUN397", "Partitions", "Testing_01.txt"))
    with pytest.raises(DataError, match="Testing_01.txt"):
        load(host, "sun397", tmp_path)


def test_digits_split_matches_the_embedded_default(host, tmp_path):
    pytest.importorskip("sklearn")
    from featbench.inputs.demo import digits_features

    s = load(host, "digits", tmp_path)
    demo = digits_features(seed=0)
    assert len(s.test) == len(demo.test_y) and np.array_equal(s.test.labels, demo.test_y)
    assert len(s.train) + len(s.val) == len(demo.train_y)
    img = np.asarray(s.test.image(0))
    assert img.shape == (8, 8, 3) and img.max() <= 255


def test_idx_reader_matches_torchvision(tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    data = bbdata.make_idx(str(tmp_path / "plain"), gz=False)
    x = read_idx(str(tmp_path / "plain" / "train-images-idx3-ubyte"))
    assert np.array_equal(x, read_image_file(str(tmp_path / "plain" / "train-images-idx3-ubyte")).numpy())
    assert np.array_equal(read_idx(str(tmp_path / "plain" / "t10k-labels-idx1-ubyte")),
                          read_label_file(str(tmp_path / "plain" / "t10k-labels-idx1-ubyte")).numpy())
    assert np.array_equal(x, data["train"][0])
    bbdata.make_idx(str(tmp_path / "gz"), gz=True)
    assert np.array_equal(read_idx(str(tmp_path / "gz" / "train-images-idx3-ubyte.gz")), x)
    with open(tmp_path / "plain" / "trunc", "wb") as f:
        f.write(open(tmp_path / "plain" / "train-images-idx3-ubyte", "rb").read()[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(str(tmp_path / "plain" / "trunc"))


def test_fashion_mnist_from_data_root_or_torchvision_layout(host, tmp_path):
    data = bbdata.make_idx(str(tmp_path / "FashionMNIST" / "raw"), gz=False)
    s = load(host, "fashion-mnist", tmp_path)
    assert s.classes[0] == "T-shirt/top" and len(s.test) == 20 and len(s.train) + len(s.val) == 40
    assert np.array_equal(s.test.pixels, data["t10k"][0]) and np.array_equal(s.test.labels, data["t10k"][1])


def test_folder_family(host, tmp_path):
    for split, k in (("train", 5), ("test", 2)):
        for ci, c in enumerate(("cat", "dog")):
            for j in range(k):
                bbdata.write_image(str(tmp_path / "d" / split / c / f"{j}.png"), 10 * ci)
    s = host.get_dataset(f"folder:{tmp_path / 'd'}").load("unused")
    assert s.classes == ("cat", "dog") and len(s.test) == 4 and len(s.val) == 2 and len(s.train) == 8
    for src in (s.train, s.val, s.test):
        assert_pairs(src)
    bbdata.write_image(str(tmp_path / "d" / "test" / "cow" / "0.png"), 0)
    with pytest.raises(DataError, match="cow"):
        host.get_dataset(f"folder:{tmp_path / 'd'}").load("unused")
    with pytest.raises(DataError, match="train"):
        host.get_dataset(f"folder:{tmp_path / 'nothing'}").load("unused")


def test_family_lookup_errors(host):
    with pytest.raises(UnknownNameError, match="folder:"):
        host.get_dataset("folder:")
    with pytest.raises(UnknownNameError, match="cifar100"):
        host.get_dataset("cifar1000")


def test_fingerprints_track_order_and_labels():
    a = FileImages("/r", ["x.jpg", "y.jpg"], [0, 1])
    assert a.fingerprint() == FileImages("/elsewhere", ["x.jpg", "y.jpg"], [0, 1]).fingerprint()
    assert a.fingerprint() != FileImages("/r", ["y.jpg", "x.jpg"], [1, 0]).fingerprint()
    assert a.fingerprint() != FileImages("/r", ["x.jpg", "y.jpg"], [0, 0]).fingerprint()
    px = np.zeros((2, 4, 4), np.uint8)
    b = ArrayImages(px, [0, 1])
    px2 = px.copy()
    px2[1, 0, 0] = 1
    assert b.fingerprint() != ArrayImages(px2, [0, 1]).fingerprint()
