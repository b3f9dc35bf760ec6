"""Helpers shared by the runner, store, report and CLI tests: tiny feature files and a plugin host."""

from __future__ import annotations

import os

import numpy as np


def make_features(path: str, seed: int, n_train: int = 90, n_test: int = 60, dim: int = 6, classes: int = 3,
                  val: int = 0, metric: str | None = None) -> str:
    """A small learnable .npz feature file (conftest's blobs), optionally with a val split and a metric."""
    from conftest import make_blobs

    arrays = make_blobs(n_train=n_train, n_test=n_test, d=dim, C=classes, seed=seed, n_val=val)
    if metric:
        arrays["metric"] = np.array(metric)
    np.savez(path, **arrays)
    return path


def feature_grid(directory: str, datasets=("d1", "d2"), backbones=("A", "B"), **kw) -> dict[str, dict[str, str]]:
    """``{dataset: {backbone: path}}`` of tiny feature files sharing labels per data set."""
    out: dict[str, dict[str, str]] = {}
    for i, ds in enumerate(datasets):
        out[ds] = {}
        for j, b in enumerate(backbones):
            # the same labels (same seed for the label draws) but different features per backbone
            path = os.path.join(directory, f"{ds}_{b}.npz")
            make_features(path, seed=100 * i, **kw)
            with np.load(path) as f:
                arrays = {k: f[k] for k in f.files}
            rng = np.random.default_rng(1000 * i + j)
            for split in ("train", "val", "test"):
                if f"{split}_x" in arrays:
                    proj = rng.normal(size=(arrays[f"{split}_x"].shape[1], arrays[f"{split}_x"].shape[1]))
                    arrays[f"{split}_x"] = (arrays[f"{split}_x"] @ (np.eye(proj.shape[0]) + 0.3 * proj)).astype(np.float32)
            np.savez(path, **arrays)
            out[ds][b] = path
    return out


def host():
    """A plugin host with the built-ins only (no third-party entry points)."""
    from featbench.manager import load_plugins

    return load_plugins(entry_points=[], strict=True)


def single_thread():
    """Set torch to one thread (tiny tensors on a busy 2-core machine train much faster so); returns an undo."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    return lambda: torch.set_num_threads(before)
