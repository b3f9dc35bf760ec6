"""Peak memory of training on a float16 feature matrix larger than a quarter of RAM, memory-mapped.

Writes a synthetic unit-norm float16 matrix (default 409,600 x 8,192 = 6.25 GiB) to ``--dir`` in chunks,
opens it read-only with ``np.memmap`` and trains one SeA configuration on it for ``--epochs``; deletes the
file afterwards. A sampler thread records the process's resident memory every 50 ms, split into anonymous
memory (what the process itself allocated) and file-backed pages (the memmap's pages, which the kernel can
drop at any time). The comparison printed is that peak against the size the same rows would take loaded
in memory as float32, the old trainer's behaviour (that copy is not made here: it would not fit beside
the other tenants of a shared machine). On CUDA the rows are copied to the device in float16 and the
peak device memory is reported too.

    python benchmarks/memory.py [--rows 409600] [--d 8192] [--C 100] [--epochs 1] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time

import numpy as np
from _common import header, set_threads

GIB = 1 << 30


def rss_split() -> tuple[int, int]:
    """(anonymous, file-backed) resident bytes of this process."""
    anon = file = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                anon = int(line.split()[1]) * 1024
            elif line.startswith("RssFile:") or line.startswith("RssShmem:"):
                file += int(line.split()[1]) * 1024
    return anon, file


class PeakRSS:
    """Samples :func:`rss_split` in a thread; ``peak_anon`` / ``peak_file`` / ``peak_total`` in bytes."""

    def __init__(self, every: float = 0.05):
        self.every, self.peak_anon, self.peak_file, self.peak_total = every, 0, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            anon, file = rss_split()
            self.peak_anon, self.peak_file = max(self.peak_anon, anon), max(self.peak_file, file)
            self.peak_total = max(self.peak_total, anon + file)
            time.sleep(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def write_features(path: str, rows: int, d: int, C: int, seed: int = 0, chunk: int = 16384) -> np.ndarray:
    """Clustered non-negative unit rows in float16, written chunk by chunk; returns the labels."""
    rng = np.random.default_rng(seed)
    centers = (rng.random((C, d)) * 2).astype(np.float32)
    y = np.arange(rows) % C
    rng.shuffle(y)
    mm = np.memmap(path, dtype=np.float16, mode="w+", shape=(rows, d))
    for s in range(0, rows, chunk):
        yc = y[s:s + chunk]
        block = np.abs(centers[yc] + 2.5 * rng.standard_normal((len(yc), d), dtype=np.float32))
        mm[s:s + len(yc)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    mm.flush()
    del mm
    return y.astype(np.int64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=409_600)
    ap.add_argument("--d", type=int, default=8192)
    ap.add_argument("--C", type=int, default=100)
    ap.add_argument("--b", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    set_threads(args.threads)
    header("peak memory: training on a memory-mapped float16 feature matrix")
    import torch

    from featbench.plugins.losses import SmoothedHinge
    from featbench.plugins.sea import SeA
    from featbench.training.trainer import TrainSettings, train_heads

    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    fd, path = tempfile.mkstemp(suffix=".f16", dir=args.dir)
    os.close(fd)
    try:
        t0 = time.perf_counter()
        y = write_features(path, args.rows, args.d, args.C)
        size = os.path.getsize(path)
        print(f"wrote {path}: {args.rows} x {args.d} float16 = {size / GIB:.2f} GiB on disk "
              f"({size / ram * 100:.0f} % of {ram / GIB:.1f} GiB RAM) in {time.perf_counter() - t0:.0f} s")
        x = np.memmap(path, dtype=np.float16, mode="r", shape=(args.rows, args.d))
        cfg = dict(lr=1.0, wd=1e-6, lamda=0.1, delta=0.0, alpha=0.01, eta=0.8)
        settings = TrainSettings(epochs=args.epochs, batch_size=args.b, device=args.device)
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        before = rss_split()
        with PeakRSS() as peak:
            t0 = time.perf_counter()
            res = train_heads(x, y, args.C, SeA, SmoothedHinge(), [cfg], settings)
            seconds = time.perf_counter() - t0
        fp32 = args.rows * args.d * 4
        print(
            f"trained 1 SeA configuration, {args.epochs} epoch(s) of {-(-args.rows // args.b)} steps in "
            f"{seconds:.0f} s; "
            f"weights finite: {bool(torch.isfinite(res.weight).all())}"
        )
        print(f"RSS before training: anonymous {before[0] / GIB:.2f} GiB, file-backed {before[1] / GIB:.2f} GiB")
        print(
            f"peak RSS during training: total {peak.peak_total / GIB:.2f} GiB = anonymous {peak.peak_anon / GIB:.2f} "
            "GiB "
            f"+ file-backed memmap pages {peak.peak_file / GIB:.2f} GiB (reclaimable)"
        )
        grown = max(peak.peak_anon - before[0], 1)
        print(
            f"anonymous memory added by training: {grown / GIB:.3f} GiB; the same rows loaded as float32 would add "
            f"{fp32 / GIB:.2f} GiB ({fp32 / grown:.0f}x more)"
        )
        if args.device.startswith("cuda"):
            print(
                f"peak device memory: {torch.cuda.max_memory_allocated() / GIB:.2f} GiB "
                f"(features resident in float16: {size / GIB:.2f} GiB)"
            )
        else:
            print("peak device memory: n/a (CPU run; no GPU on this machine)")
    finally:
        os.remove(path)
        print(f"deleted {path}")


if __name__ == "__main__":
    main()
