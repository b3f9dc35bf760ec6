"""Shared pieces of the benchmark scripts: problem sizes, synthetic features, timing, machine description.

Timing on a shared machine is noisy, so every comparison runs its two sides back to back in the same
process, alternating, ``repeats`` times, and reports the best wall time of each side (and its process CPU
time, which other tenants disturb less) and the ratio of the two.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable

import attrs
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # reference_sea.py


@attrs.frozen
class Size:
    """One problem size: training rows, test rows, feature dimension, classes, batch, epochs."""

    n: int
    n_test: int
    d: int
    C: int
    b: int
    epochs: int


#: ``cpu``: a Caltech-101-sized problem that finishes in minutes on 2 cores; ``paper``: CIFAR-100 with the
#: four-backbone ensemble (SeA paper, d = 4 x 2048), meant for a GPU.
SIZES = {
    "cpu": Size(n=5784, n_test=2000, d=2560, C=101, b=256, epochs=30),
    "cpu10": Size(n=5784, n_test=2000, d=2560, C=10, b=256, epochs=30),
    "paper": Size(n=50_000, n_test=10_000, d=8192, C=100, b=256, epochs=100),
}


def add_size_args(ap, default: str = "cpu") -> None:
    """``--size`` and per-field overrides."""
    ap.add_argument("--size", choices=sorted(SIZES), default=default, help="problem size preset")
    for field in ("n", "n_test", "d", "C", "b", "epochs"):
        ap.add_argument(
            f"--{field.replace('_', '-')}", dest=field, type=int, default=None, help=f"override the preset's {field}"
        )


def size_from_args(args) -> Size:
    base = SIZES[args.size]
    return attrs.evolve(
        base, **{f: getattr(args, f) for f in ("n", "n_test", "d", "C", "b", "epochs") if getattr(args, f) is not None}
    )


def synthetic_features(size: Size, seed: int = 0, spread: float = 2.5) -> dict[str, np.ndarray]:
    """Clustered, non-negative (post-ReLU-like), unit-norm features: ``|mu_y + spread * N(0, I)|`` normalised,
    with class means ``mu_c ~ U(0, 2)^d``; balanced classes. Synthetic: no real images are involved."""
    rng = np.random.default_rng(seed)
    centers = (rng.random((size.C, size.d)) * 2).astype(np.float32)

    def draw(n: int):
        y = np.arange(n) % size.C
        rng.shuffle(y)
        x = np.empty((n, size.d), dtype=np.float32)
        for s in range(0, n, 4096):  # bounded temporaries at the paper's size
            block = centers[y[s : s + 4096]] + spread * rng.standard_normal(
                (len(y[s : s + 4096]), size.d), dtype=np.float32
            )
            np.abs(block, out=block)
            x[s : s + 4096] = block / np.linalg.norm(block, axis=1, keepdims=True)
        return x, y.astype(np.int64)

    train_x, train_y = draw(size.n)
    test_x, test_y = draw(size.n_test)
    return dict(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, num_classes=size.C)


@attrs.define
class Timing:
    """Best wall and CPU seconds over the repeats, and the last result."""

    wall: float = float("inf")
    cpu: float = float("inf")
    result: object = None


def alternate(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: dict[str, Callable[[], object]] | None = None
) -> dict[str, Timing]:
    """Run each function ``repeats`` times, alternating between them; keep the best times of each.

    ``warmup`` (same names, smaller problems) runs once first, so that no side pays one-time costs
    (library initialisation, allocator growth) inside its timing.
    """
    for fn in (warmup or {}).values():
        fn()
    out = {name: Timing() for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            res = fn()
            _sync()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            t = out[name]
            t.wall, t.cpu, t.result = min(t.wall, wall), min(t.cpu, cpu), res
    return out


def _sync() -> None:
    """Wait for queued GPU work, so a timing covers it."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def top1(weight, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Top-1 accuracy (%) of every head in ``weight`` (K, C, d) or (C, d)."""
    from featbench.training import metrics
    from featbench.training.trainer import predict

    w = weight if weight.dim() == 3 else weight[None]
    return metrics.top1(predict(w, x), y)


def reference_run(data: dict, size: Size, config: dict, epochs: int | None = None, device: str = "cpu", seed: int = 0):
    """A closure training ``config`` with the official-style reference loop; returns the weight (C, d)."""
    from reference_sea import train_reference

    cfg = {k: config[k] for k in ("lr", "wd", "alpha", "eta", "lamda", "delta")}
    return lambda: train_reference(
        data["train_x"],
        data["train_y"],
        size.C,
        epochs=epochs or size.epochs,
        batch_size=size.b,
        seed=seed,
        device=device,
        **cfg,
    )


def featbench_run(data: dict, size: Size, configs: list[dict], epochs: int | None = None, seed: int = 0, **settings):
    """A closure training ``configs`` as one featbench K-stack of SeA heads; returns the weights (K, C, d)."""
    from featbench.plugins.losses import SmoothedHinge
    from featbench.plugins.sea import SeA
    from featbench.training.trainer import TrainSettings, train_heads

    ts = TrainSettings(epochs=epochs or size.epochs, batch_size=size.b, seed=seed, **settings)
    return lambda: train_heads(data["train_x"], data["train_y"], size.C, SeA, SmoothedHinge(), configs, ts).weight


def set_threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


def machine() -> str:
    """One line naming the machine and the software, for the figures' provenance."""
    import torch

    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores{gpu}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"load average {load:.1f} at start"
    )


def header(title: str, size: Size | None = None) -> None:
    print(f"# {title}")
    print(f"machine: {machine()}")
    if size is not None:
        print(
            f"size: n={size.n} n_test={size.n_test} d={size.d} C={size.C} b={size.b} epochs={size.epochs} "
            f"(synthetic clustered unit-norm features)"
        )
