"""One SeA configuration: featbench's trainer against the straightforward reference loop.

The reference is ``reference_sea.train_reference``: the official SeA loop (nn.Linear, torch.optim.SGD,
autograd for the feature gradient, softmax / zero-diagonal / renormalise). Both sides train the same
configuration (the official defaults, or ``--hp`` overrides) on the same synthetic features from the same
initial weights in the same data order, alternately, ``--repeats`` times; the best time of each side is
reported.

Equal accuracy: with the same seed both sides follow the same trajectory up to floating-point rounding,
but SeA's dynamics can amplify rounding differences (alpha = 0.01 is a sharp softmax), so accuracy is
compared as mean +- std of test top-1 over ``--seeds`` seeds (initial weights and data order) per side.

    python benchmarks/single_config.py                  # CPU size: 5,784 x 2,560, C = 101, 30 epochs
    python benchmarks/single_config.py --C 10           # the same with 10 classes
    python benchmarks/single_config.py --matmul bf16    # featbench with bf16 matrix products (oneDNN)
    python benchmarks/single_config.py --C 10 --hp lr=0.5 --hp alpha=0.05   # another configuration
    python benchmarks/single_config.py --size paper --device cuda --repeats 3
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import (
    add_size_args,
    alternate,
    featbench_run,
    header,
    reference_run,
    set_threads,
    size_from_args,
    synthetic_features,
    top1,
)

OFFICIAL = dict(lr=1.6, wd=1e-6, alpha=0.01, eta=0.8, lamda=0.1, delta=0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_size_args(ap)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3, help="seeds for the accuracy comparison (seed 0 is the timed one)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--matmul", default="fp32", help="featbench's matmul precision: fp32 | tf32 (CUDA) | bf16 (CPU)")
    ap.add_argument("--cuda-graphs", action="store_true", help="featbench replays epochs as CUDA graphs (GPU only)")
    ap.add_argument("--generic", action="store_true", help="also time featbench's generic (autograd) step")
    ap.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE", help="override an official default")
    args = ap.parse_args()
    set_threads(args.threads)
    config = {**OFFICIAL, **{k: float(v) for k, v in (item.split("=", 1) for item in args.hp)}}
    size = size_from_args(args)
    header("single SeA configuration: featbench vs the reference loop", size)
    data = synthetic_features(size)

    def featbench(seed: int = 0, epochs: int | None = None, fast: bool = True):
        run = featbench_run(data, size, [config], epochs, seed, device=args.device, fast=fast, matmul=args.matmul,
                            cuda_graphs=args.cuda_graphs and fast)
        return lambda: run()[0]

    def reference(seed: int = 0, epochs: int | None = None):
        return reference_run(data, size, config, epochs, args.device, seed)

    sides = {"reference loop": reference(), "featbench": featbench()}
    warm = {"reference loop": reference(epochs=1), "featbench": featbench(epochs=1)}
    if args.generic:
        sides["featbench generic"] = featbench(fast=False)
    times = alternate(sides, args.repeats, warm)
    ref = times["reference loop"]
    print(f"config: {config}; featbench matmul {args.matmul}; best of {args.repeats}")
    for name, t in times.items():
        gap = float((t.result.cpu() - ref.result.cpu()).abs().max())
        print(f"{name:18s} wall {t.wall:8.2f} s  cpu {t.cpu:8.2f} s  speed-up wall {ref.wall / t.wall:5.2f}x  "
              f"cpu {ref.cpu / t.cpu:5.2f}x  (seed 0: max|W - W_ref| {gap:.1e})")
    print(f"test top-1 over seeds 0..{args.seeds - 1} (mean +- std, then per seed):")
    for name, t in times.items():
        make = reference if name == "reference loop" else (lambda s, fast=name == "featbench": featbench(s, fast=fast))
        accs = [top1(t.result.cpu(), data["test_x"], data["test_y"])[0]]
        accs += [top1(make(s)().cpu(), data["test_x"], data["test_y"])[0] for s in range(1, args.seeds)]
        std = np.std(accs, ddof=1) if len(accs) > 1 else 0.0
        print(f"{name:18s} {np.mean(accs):6.2f} +- {std:5.2f}   " + " ".join(f"{a:6.2f}" for a in accs))


if __name__ == "__main__":
    main()
