"""How close a K-stack's per-configuration arithmetic gets to the machine's GEMM throughput; bf16 on CPU.

1. A plain float32 GEMM of the shapes the step is made of (logits ``(K*C, d) x (d, b)`` and the weight
   gradient ``(K*C, b) x (b, d)``) gives the machine's attainable throughput for this problem.
2. featbench trains the K = 24 SeA grid; its step's useful arithmetic is counted with the fused step's
   formula (per head 4bdC for logits and weight gradient, plus 2C^2 d + 2b^3 + 6b^2 C for heads with
   eta != 0, plus the shared Gram matrix 2b^2 d) and divided by the measured time per step.
3. The same with ``matmul="bf16"`` (oneDNN runs float32 products in bf16 with float32 accumulation on CPUs
   with bf16 units) and with bf16 / fp16 feature storage: time per step, and the accuracy effect over the
   whole grid (test top-1 per configuration against the float32 run after the full number of epochs).

    python benchmarks/gemm_efficiency.py                # CPU size, K = 24, timing over 2 epochs, accuracy over 30
    python benchmarks/gemm_efficiency.py --C 10
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import (
    add_size_args,
    alternate,
    featbench_run,
    header,
    set_threads,
    size_from_args,
    synthetic_features,
    top1,
)
from grid import grid_configs


def gemm_rate(m: int, k: int, n: int, precision: str, repeats: int = 10) -> float:
    """Best GFLOP/s of a (m, k) x (k, n) float32 product in ``precision`` (``fp32`` or ``bf16``, as the trainer)."""
    import time

    import torch

    from featbench.training.trainer import matmul_precision

    a, b = torch.randn(m, k), torch.randn(k, n)
    with matmul_precision(precision, torch.device("cpu")):
        a @ b
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
    return 2 * m * k * n / best / 1e9


def step_flops(configs: list[dict], size) -> float:
    b, d, C = size.b, size.d, size.C
    active = sum(c["eta"] != 0 for c in configs)
    return len(configs) * 4 * b * d * C + active * (2 * C * C * d + 2 * b ** 3 + 6 * b * b * C) + 2 * b * b * d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_size_args(ap)
    ap.add_argument("--timing-epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip-accuracy", action="store_true")
    args = ap.parse_args()
    set_threads(args.threads)
    size = size_from_args(args)
    configs = grid_configs(24)
    K = len(configs)
    header(f"arithmetic efficiency of a K = {K} SeA stack, and bf16 on CPU", size)
    for prec, label in (("fp32", "fp32"), ("bf16", "bf16 (oneDNN)")):
        fwd = gemm_rate(K * size.C, size.d, size.b, prec)
        bwd = gemm_rate(K * size.C, size.b, size.d, prec)
        print(f"plain {label} GEMM: logits shape {fwd:6.1f} GFLOP/s, weight-gradient shape {bwd:6.1f} GFLOP/s")
    peak = max(gemm_rate(K * size.C, size.d, size.b, "fp32"), gemm_rate(K * size.C, size.b, size.d, "fp32"))
    data = synthetic_features(size)
    steps = -(-size.n // size.b) * args.timing_epochs
    flops = step_flops(configs, size)
    variants = {"fp32": {}, "matmul bf16": dict(matmul="bf16"), "storage bf16": dict(storage="bfloat16"),
                "storage fp16": dict(storage="float16")}
    times = alternate(
        {name: featbench_run(data, size, configs, args.timing_epochs, **opt) for name, opt in variants.items()},
        args.repeats,
        {"warm-up": featbench_run(data, size, configs[:2], 1)},
    )
    print(
        f"useful arithmetic per step: {flops / 1e9:.2f} GFLOP ({flops / K / 1e9:.3f} per configuration); "
        f"{steps} steps timed, best of {args.repeats}"
    )
    for name, t in times.items():
        rate = flops * steps / t.wall / 1e9
        print(
            f"{name:13s} {t.wall / steps * 1e3:8.1f} ms/step ({t.wall / steps / K * 1e3:6.2f} ms per configuration)  "
            f"{rate:6.1f} GFLOP/s = {rate / peak * 100:5.1f} % of the fp32 GEMM rate"
        )
    if args.skip_accuracy:
        return
    acc = {
        name: top1(featbench_run(data, size, configs, **opt)().cpu(), data["test_x"], data["test_y"])
        for name, opt in variants.items()
    }
    base = acc["fp32"]
    print(f"accuracy over the grid after {size.epochs} epochs (test top-1, {K} configurations):")
    for name, a in acc.items():
        diff = a - base
        print(
            f"{name:13s} mean {np.mean(a):6.2f}  best {np.max(a):6.2f}  |diff vs fp32| mean "
            f"{np.mean(np.abs(diff)):.3f} "
            f"max {np.max(np.abs(diff)):.3f} pt"
        )


if __name__ == "__main__":
    main()
