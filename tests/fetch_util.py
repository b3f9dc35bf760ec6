"""A loopback HTTP server that counts requests and honours Range, and tiny archives in the real layouts of
CIFAR-10 (python pickles), DTD (a VGG-style tar with its split files) and Caltech-101 (a zip holding
101_ObjectCategories.tar.gz)."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


class Loopback:
    """Serves ``files`` (name -> bytes) on 127.0.0.1 at a random port, in a thread of this process.

    ``requests`` lists ``(path, Range header or "")`` of every request; ``cut[name] = n`` makes the next
    response for ``name`` announce the whole length but stop after ``n`` bytes (a broken connection);
    ``honour_range = False`` answers every request with the whole file (200).
    """

    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.requests: list[tuple[str, str]] = []
        self.cut: dict[str, int] = {}
        self.honour_range = True
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                rng = self.headers.get("Range", "")
                owner.requests.append((name, rng))
                if name not in owner.files:
                    self.send_error(404)
                    return
                body = owner.files[name]
                start = (
                    int(rng.split("=", 1)[1].split("-", 1)[0]) if rng.startswith("bytes=") and owner.honour_range else 0
                )
                if start >= len(body) and start:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                stop = owner.cut.pop(name, None)
                self.wfile.write(body[start:stop] if stop is not None else body[start:])
                if stop is not None:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Loopback:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _tar(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _jpeg(rng, size: int = 16) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def cifar10_archive(per_class_and_batch: int = 1, test_per_class: int = 2, seed: int = 0) -> bytes:
    """cifar-10-python.tar.gz: cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}."""
    rng = np.random.default_rng(seed)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

    def batch(k):
        labels = [c for c in range(10) for _ in range(k)]
        data = rng.integers(0, 255, (len(labels), 3072), dtype=np.uint8)
        return pickle.dumps(
            {"batch_label": "x", "labels": labels, "data": data, "filenames": [f"{i}.png" for i in range(len(labels))]}
        )

    entries = {f"cifar-10-batches-py/data_batch_{i}": batch(per_class_and_batch) for i in range(1, 6)}
    entries["cifar-10-batches-py/test_batch"] = batch(test_per_class)
    entries["cifar-10-batches-py/batches.meta"] = pickle.dumps({"label_names": names, "num_cases_per_batch": 10})
    return _tar(entries)


def cifar100_archive(classes: int = 4, train_per_class: int = 3, test_per_class: int = 2, seed: int = 0) -> bytes:
    """cifar-100-python.tar.gz: cifar-100-python/{train, test, meta} with fine and coarse labels."""
    rng = np.random.default_rng(seed)

    def split(k):
        fine = [c for c in range(classes) for _ in range(k)]
        return pickle.dumps(
            {
                "filenames": [f"{i}.png" for i in range(len(fine))],
                "fine_labels": fine,
                "coarse_labels": [c // 2 for c in fine],
                "data": rng.integers(0, 255, (len(fine), 3072), dtype=np.uint8),
            }
        )

    meta = {
        "fine_label_names": [f"class{c}" for c in range(classes)],
        "coarse_label_names": [f"super{c}" for c in range(classes // 2)],
    }
    return _tar(
        {
            "cifar-100-python/train": split(train_per_class),
            "cifar-100-python/test": split(test_per_class),
            "cifar-100-python/meta": pickle.dumps(meta),
        }
    )


def dtd_archive(classes=("banded", "dotted", "striped"), per_split: int = 2, seed: int = 0) -> bytes:
    """dtd-r1.0.1.tar.gz: dtd/images/<class>/*.jpg and dtd/labels/{train,val,test}1.txt."""
    rng = np.random.default_rng(seed)
    entries, lists = {}, {"train": [], "val": [], "test": []}
    for c in classes:
        for i in range(3 * per_split):
            rel = f"{c}/{c}_{i:04d}.jpg"
            entries[f"dtd/images/{rel}"] = _jpeg(rng)
            lists[("train", "val", "test")[i // per_split]].append(rel)
    for split, rels in lists.items():
        entries[f"dtd/labels/{split}1.txt"] = ("\n".join(rels) + "\n").encode()
    return _tar(entries)


def caltech101_archive(
    classes=("BACKGROUND_Google", "accordion", "airplanes"), per_class: int = 8, seed: int = 0
) -> bytes:
    """caltech-101.zip: caltech-101/101_ObjectCategories.tar.gz (and Annotations.tar), as data.caltech.edu serves it."""
    rng = np.random.default_rng(seed)
    inner = _tar(
        {f"101_ObjectCategories/{c}/image_{i:04d}.jpg": _jpeg(rng) for c in classes for i in range(1, per_class + 1)}
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("caltech-101/101_ObjectCategories.tar.gz", inner)
        z.writestr("caltech-101/Annotations.tar", _tar({"Annotations/README": b"not used"}))
        z.writestr("caltech-101/show_annotation.m", b"% not used")
    return buf.getvalue()


def registry_for(archives: dict[str, bytes], path: str, **dataset_overrides) -> str:
    """A copy of the packaged registry whose catalog checksums and sizes are those of ``archives``
    (by file name); ``dataset_overrides[name]`` updates that data set's entry. Returns its path."""
    import yaml

    from featbench.config import registry_path

    with open(registry_path(), encoding="utf-8") as f:
        reg = yaml.safe_load(f)
    for name, entry in reg["datasets"].items():
        for item in entry.get("files") or ():
            file = item.get("file") or item["url"].rsplit("/", 1)[-1]
            if file in archives:
                item.update(md5=md5(archives[file]), bytes=len(archives[file]))
        entry.update(dataset_overrides.get(name, {}))
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(reg, f)
    return path


def tree(path: str) -> list[str]:
    """Every file and folder below ``path`` (relative, sorted)."""
    out = []
    for root, dirs, names in os.walk(path):
        out += [os.path.relpath(os.path.join(root, n), path) for n in dirs + names]
    return sorted(out)
