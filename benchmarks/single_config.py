"""One SeA configuration: featbench's trainer against the straightforward reference loop.

The reference is ``reference_sea.train_reference``: the official SeA loop (nn.Linear, torch.optim.SGD,
autograd for the feature gradient, softmax / zero-diagonal / renormalise). Both sides train the same
configuration (the official defaults) on the same synthetic features from the same initial weights in the
same data order, alternately, ``--repeats`` times; the best time of each side is reported with its test
accuracy and the largest weight difference (equal accuracy = the same trajectory up to rounding).

    python benchmarks/single_config.py                  # CPU size: 5,784 x 2,560, C = 101, 30 epochs
    python benchmarks/single_config.py --C 10           # the same with 10 classes
    python benchmarks/single_config.py --size paper --device cuda --repeats 3
"""

from __future__ import annotations

import argparse

from _common import (add_size_args, alternate, featbench_run, header, reference_run, set_threads, size_from_args,
                     synthetic_features, top1)

OFFICIAL = dict(lr=1.6, wd=1e-6, alpha=0.01, eta=0.8, lamda=0.1, delta=0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_size_args(ap)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--matmul", default="fp32", help="featbench's matmul precision: fp32 | tf32 (CUDA) | bf16")
    ap.add_argument("--generic", action="store_true", help="also time featbench's generic (autograd) step")
    args = ap.parse_args()
    set_threads(args.threads)
    size = size_from_args(args)
    header("single SeA configuration: featbench vs the reference loop", size)
    data = synthetic_features(size)

    def featbench(fast: bool, epochs: int | None = None):
        run = featbench_run(data, size, [OFFICIAL], epochs, device=args.device, fast=fast, matmul=args.matmul)
        return lambda: run()[0]

    sides = {"reference loop": reference_run(data, size, OFFICIAL, device=args.device), "featbench": featbench(True)}
    warm = {"reference loop": reference_run(data, size, OFFICIAL, 1, args.device), "featbench": featbench(True, 1)}
    if args.generic:
        sides["featbench generic"] = featbench(False)
    times = alternate(sides, args.repeats, warm)
    ref = times["reference loop"]
    print(f"config: {OFFICIAL}; best of {args.repeats}")
    for name, t in times.items():
        w = t.result.cpu()
        acc = top1(w, data["test_x"], data["test_y"])[0]
        gap = float((w - ref.result.cpu()).abs().max())
        print(f"{name:18s} wall {t.wall:8.2f} s  cpu {t.cpu:8.2f} s  test top-1 {acc:6.2f}  max|W - W_ref| {gap:.1e}"
              f"  speed-up wall {ref.wall / t.wall:5.2f}x  cpu {ref.cpu / t.cpu:5.2f}x")


if __name__ == "__main__":
    main()
