"""The feature cache: keys, atomic commit, checksums, corruption and resumable chunked writes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from featbench.errors import DataError
from featbench.inputs.cache import CacheCorruptWarning, FeatureCache, cache_key


def rows(n, d, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def fill(cache, key, x, y, stop_after=None):
    w = cache.writer(key, y, {"test": True})
    done = 0
    while w.start < w.n:
        lo = w.start
        w.write(x[lo:lo + cache.chunk_rows])
        done += 1
        if stop_after is not None and done == stop_after:
            return w
    w.finish()
    return w


def test_key_is_order_independent_and_sensitive_to_every_field():
    a = {"backbone": "S", "preprocess": {"resize": 224, "crop": 224}, "split": "train"}
    b = {"split": "train", "preprocess": {"crop": 224, "resize": 224}, "backbone": "S"}
    assert cache_key(a) == cache_key(b)
    assert cache_key(a) != cache_key({**a, "split": "test"})
    assert cache_key(a) != cache_key({**a, "preprocess": {"resize": 256, "crop": 224}})


def test_roundtrip_is_fp16_memmapped_and_checksummed(tmp_path):
    cache = FeatureCache(str(tmp_path), chunk_rows=4)
    x, y = rows(10, 3), np.arange(10) % 3
    assert cache.load("k" * 64) is None
    fill(cache, "k" * 64, x, y)
    hit = cache.load("k" * 64)
    assert isinstance(hit.x, np.memmap) and hit.x.dtype == np.float16
    assert np.array_equal(hit.x, x.astype(np.float16)) and np.array_equal(hit.y, y)
    meta = json.load(open(os.path.join(hit.path, "meta.json")))
    assert meta["n"] == 10 and meta["d"] == 3 and meta["fields"] == {"test": True}
    assert not os.path.exists(os.path.join(hit.path, "progress.json"))


@pytest.mark.parametrize("damage", ["flip", "truncate", "meta"])
def test_corrupt_entries_are_detected_and_deleted(tmp_path, damage):
    cache = FeatureCache(str(tmp_path), chunk_rows=4)
    key = "c" * 64
    x, y = rows(10, 3), np.arange(10)
    fill(cache, key, x, y)
    path = os.path.join(cache.entry_dir(key), "x.npy")
    if damage == "flip":
        data = bytearray(open(path, "rb").read())
        data[-3] ^= 0x40
        open(path, "wb").write(bytes(data))
    elif damage == "truncate":
        data = open(path, "rb").read()
        open(path, "wb").write(data[:-6])
    else:
        open(os.path.join(cache.entry_dir(key), "meta.json"), "w").write("{not json")
    with pytest.warns(CacheCorruptWarning):
        assert cache.load(key) is None
    assert not os.path.exists(cache.entry_dir(key))
    fill(cache, key, x, y)  # recomputed
    assert np.array_equal(cache.load(key).x, x.astype(np.float16))


def test_an_interrupted_write_resumes_after_the_last_good_chunk(tmp_path):
    cache = FeatureCache(str(tmp_path), chunk_rows=4)
    key = "r" * 64
    x, y = rows(10, 5), np.arange(10) % 2
    w = fill(cache, key, x, y, stop_after=2)  # 8 of 10 rows, then "crash"
    assert w.start == 8 and cache.load(key) is None  # not committed: no meta.json
    del w
    w2 = cache.writer(key, y, {})
    assert w2.start == 8
    w2.write(x[8:])
    w2.finish()
    assert np.array_equal(cache.load(key).x, x.astype(np.float16))


def test_resume_drops_chunks_that_no_longer_verify(tmp_path):
    cache = FeatureCache(str(tmp_path), chunk_rows=4)
    key = "s" * 64
    x, y = rows(12, 2), np.arange(12) % 2
    fill(cache, key, x, y, stop_after=3)
    mm = np.load(os.path.join(cache.entry_dir(key), "x.partial.npy"), mmap_mode="r+")
    mm[5, 0] += 1  # damage the second chunk
    mm.flush()
    del mm
    w = cache.writer(key, y, {})
    assert w.start == 4  # chunk 0 kept, chunks 1-2 recomputed
    # different labels mean a different entry: start over
    assert cache.writer(key, y[::-1].copy(), {}).start == 0


def test_writer_refuses_nan_overflow_and_misaligned_chunks(tmp_path):
    cache = FeatureCache(str(tmp_path), chunk_rows=4)
    w = cache.writer("n" * 64, np.arange(6), {})
    bad = rows(4, 2)
    bad[1, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        w.write(bad)
    with pytest.raises(DataError, match="float16"):
        w.write(rows(4, 2) * 1e6)
    with pytest.raises(ValueError, match="4 rows"):
        w.write(rows(3, 2))
    with pytest.raises(ValueError, match="0 of 6"):
        w.finish()
