"""Write the offline feature files of the small CPU suites (``benchmarks/data/*.npz``).

Two real data sets that scikit-learn ships inside its wheel (no download) stand in for image data sets,
and two deterministic feature extractors stand in for backbones:

* data sets: ``digits`` (1,797 8x8 digit images, 10 classes; train/val/test 60/20/20, top-1) and
  ``cancer`` (Wisconsin breast cancer, 569 rows, 2 imbalanced classes; train/test 70/30 with no val split,
  so the search holds out part of train; mean per-class accuracy);
* "backbones": ``raw`` (the inputs standardised with training statistics) and ``rff`` (512 random Fourier
  features of the standardised inputs, a fixed random projection like an untrained network layer).

Usage: ``python benchmarks/make_cpu_features.py [OUT_DIR]`` (default: ``benchmarks/data``). Deterministic:
the same files every time.
"""

from __future__ import annotations

import os
import sys

import numpy as np

SEED = 0
RFF_DIM = 512


def _split(y: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Stratified split of the indices of ``y`` into parts of the given fractions (the last takes the rest)."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        start = 0
        for i, f in enumerate(fractions):
            stop = len(idx) if i == len(fractions) - 1 else start + int(round(f * len(idx)))
            parts[i].append(idx[start:stop])
            start = stop
    return [np.sort(np.concatenate(p)) for p in parts]


def _rff(x: np.ndarray, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.normal(0.0, 1.0 / np.sqrt(x.shape[1]), size=(x.shape[1], dim))
    b = rng.uniform(0.0, 2 * np.pi, size=dim)
    return np.sqrt(2.0 / dim) * np.cos(x @ w + b)


def write_dataset(
    out_dir: str, name: str, x: np.ndarray, y: np.ndarray, fractions: tuple[float, ...], metric: str
) -> list[str]:
    parts = _split(y, fractions, SEED)
    names = ["train", "val", "test"] if len(parts) == 3 else ["train", "test"]
    train = parts[0]
    mean, std = x[train].mean(0), x[train].std(0) + 1e-8
    z = (x - mean) / std
    paths = []
    for backbone, feats in (("raw", z), ("rff", _rff(z, RFF_DIM, SEED))):
        arrays = {"metric": np.array(metric)}
        for split, idx in zip(names, parts):
            arrays[f"{split}_x"] = feats[idx].astype(np.float32)
            arrays[f"{split}_y"] = y[idx].astype(np.int64)
        path = os.path.join(out_dir, f"{name}_{backbone}.npz")
        np.savez(path, **arrays)
        paths.append(path)
    return paths


def main(out_dir: str) -> list[str]:
    from sklearn.datasets import load_breast_cancer, load_digits

    os.makedirs(out_dir, exist_ok=True)
    digits = load_digits()
    cancer = load_breast_cancer()
    return write_dataset(
        out_dir, "digits", digits.data.astype(np.float64), digits.target, (0.6, 0.2, 0.2), "top1"
    ) + write_dataset(out_dir, "cancer", cancer.data.astype(np.float64), cancer.target, (0.7, 0.3), "mean_per_class")


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
    for p in main(target):
        print(p)
