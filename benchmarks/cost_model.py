"""Measure the cost model of ``featbench.bench.workload``: seconds per configuration-epoch on this machine.

Trains stacks of K ``none`` configurations (hinge loss) on synthetic features of several shapes, times
each (best of ``--repeats``, process CPU time of one thread, after a warm-up), and fits

    seconds per configuration-epoch = GAMMA * steps + n * d * (ALPHA * C + BETA * b)

(steps = ceil(n / b) per epoch: a fixed cost per step and configuration, plus the products of the step)
by non-negative least squares of the relative error. Prints every measurement, the model's prediction
for it, and the three constants to copy into ``core/bench/workload.py``. Usage: ``python benchmarks/cost_model.py``.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from _common import Size, header, set_threads, synthetic_features

SHAPES = [(958, 64, 10), (4000, 64, 10), (2000, 512, 10), (2000, 512, 100), (4000, 1024, 50), (1000, 2048, 200)]


def measure(n: int, d: int, C: int, b: int, K: int, epochs: int, repeats: int) -> float:
    """Best process CPU seconds of one configuration-epoch (a K-stack's time / K / epochs): CPU time, which
    other tenants of a shared machine disturb far less than wall time."""
    from featbench.plugins.baseline import NoAugmentation
    from featbench.plugins.losses import SmoothedHinge
    from featbench.training.trainer import TrainSettings, train_heads

    data = synthetic_features(Size(n=n, n_test=1, d=d, C=C, b=b, epochs=epochs))
    configs = [{"lr": 0.5 + 0.1 * k, "wd": 0.0, "lamda": 0.1, "delta": 0.0} for k in range(K)]
    settings = TrainSettings(epochs=epochs, batch_size=b, seed=0)
    train_heads(
        data["train_x"],
        data["train_y"],
        C,
        NoAugmentation,
        SmoothedHinge(),
        configs[:1],
        TrainSettings(epochs=1, batch_size=b, seed=0),
    )  # warm-up
    best = math.inf
    for _ in range(repeats):
        start = time.process_time()
        train_heads(data["train_x"], data["train_y"], C, NoAugmentation, SmoothedHinge(), configs, settings)
        best = min(best, time.process_time() - start)
    return best / K / epochs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the CPU time of one core)")
    ap.add_argument("--K", type=int, default=64, help="configurations per stack (default 64, featbench run's)")
    ap.add_argument("--b", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    set_threads(args.threads)
    header("cost model: seconds per configuration-epoch")
    rows, seconds = [], []
    for n, d, C in SHAPES:
        t = measure(n, d, C, args.b, args.K, args.epochs, args.repeats)
        rows.append([math.ceil(n / args.b), n * d * C, n * d * args.b])
        seconds.append(t)
        print(f"n={n} d={d} C={C} b={args.b} K={args.K}: {t * 1e3:.3f} ms per configuration-epoch", flush=True)
    from scipy.optimize import nnls

    a, t = np.array(rows, dtype=float), np.array(seconds)
    (gamma, alpha, beta), _ = nnls(a / t[:, None], np.ones_like(t))  # least relative error
    print("fit: seconds per configuration-epoch = GAMMA * ceil(n / b) + n * d * (ALPHA * C + BETA * b)")
    for (n, d, C), r, t in zip(SHAPES, rows, seconds):
        model = gamma * r[0] + alpha * r[1] + beta * r[2]
        print(f"  n={n} d={d} C={C}: measured {t * 1e3:.3f} ms, model {model * 1e3:.3f} ms ({model / t:.2f}x)")
    print(
        f"GAMMA = {gamma:.3e}  # s per step and configuration\nALPHA = {alpha:.3e}  # s per row x feature x class\n"
        f"BETA = {beta:.3e}  # s per row x feature x batch row"
    )


if __name__ == "__main__":
    main()
