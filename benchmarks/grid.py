"""A SeA grid trained together (one K-stack) against the same configurations one after another.

Three ways to train the same K configurations on the same synthetic features, same seed:

* ``together``: featbench trains all K heads as one stack on shared mini-batches (timed once, whole grid);
* ``featbench one by one``: featbench trains each configuration alone (K = 1);
* ``reference one by one``: the official-style reference loop (benchmarks/reference_sea.py) per configuration.

The one-by-one totals are extrapolated from a measured subset, stratified by eta = 0 / eta > 0 (the
reference skips the augmentation when eta = 0, so those runs are cheaper): total = n_zero * t_zero +
n_pos * t_pos, each t the mean over the measured runs of its stratum. Test accuracies of the measured
single runs are printed beside the same configuration's head in the stack (equal up to rounding).

    python benchmarks/grid.py --grid 24                 # 3 lr x 4 eta x 2 alpha, CPU size, 30 epochs
    python benchmarks/grid.py --grid 24 --C 10
    python benchmarks/grid.py --grid 216 --epochs 3     # 6 lr x 4 eta x 3 alpha x 3 lamda
    python benchmarks/grid.py --grid 1728 --size paper --device cuda --matmul tf32 --cuda-graphs  # the whole SeA grid
"""

from __future__ import annotations

import argparse
import itertools

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

LR = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
ETA = [0.0, 0.2, 0.4, 0.8]
ALPHA = [0.01, 0.02, 0.05]
LAMDA = [0.05, 0.1, 1.0]
WD = [0.0, 1e-6, 1e-5, 1e-4]
DELTA = [0.0, 1.0]

#: Grids from the SeA paper's search space (its §4); 1728 is the whole of it.
GRIDS = {
    24: dict(lr=[0.5, 1.0, 2.0], eta=ETA, alpha=[0.01, 0.05]),
    216: dict(lr=LR, eta=ETA, alpha=ALPHA, lamda=LAMDA),
    1728: dict(lr=LR, wd=WD, alpha=ALPHA, lamda=LAMDA, delta=DELTA, eta=ETA),
}
DEFAULTS = dict(lr=1.0, wd=1e-6, alpha=0.01, eta=0.8, lamda=0.1, delta=0.0)


def grid_configs(k: int) -> list[dict]:
    axes = GRIDS[k]
    return [{**DEFAULTS, **dict(zip(axes, combo))} for combo in itertools.product(*axes.values())]


def spread_subset(indices: list[int], m: int) -> list[int]:
    """``m`` indices spread evenly over ``indices``."""
    if m >= len(indices):
        return list(indices)
    return [indices[int(round(i * (len(indices) - 1) / max(m - 1, 1)))] for i in range(m)]


def one_by_one(configs: list[dict], runs: dict[int, float]) -> float:
    """Extrapolated total seconds of all configurations from the measured ``runs`` (index -> seconds)."""
    total = 0.0
    for zero in (True, False):
        members = [i for i, c in enumerate(configs) if (c["eta"] == 0) == zero]
        measured = [t for i, t in runs.items() if (configs[i]["eta"] == 0) == zero]
        if members:
            total += len(members) * float(np.mean(measured))
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_size_args(ap)
    ap.add_argument("--grid", type=int, choices=sorted(GRIDS), default=24)
    ap.add_argument("--singles", type=int, default=4, help="featbench single runs to measure (per eta stratum: half)")
    ap.add_argument(
        "--references", type=int, default=2, help="reference runs to measure (one per eta stratum at least)"
    )
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--matmul", default="fp32")
    ap.add_argument("--cuda-graphs", action="store_true", help="featbench replays epochs as CUDA graphs (GPU only)")
    ap.add_argument("--heads-per-chunk", type=int, default=0, help="heads stepped at a time (0: as many as fit)")
    args = ap.parse_args()
    set_threads(args.threads)
    size = size_from_args(args)
    configs = grid_configs(args.grid)
    header(f"grid of K = {len(configs)} SeA configurations: together vs one after another", size)
    print(f"grid axes: {GRIDS[args.grid]}; other hyper-parameters {DEFAULTS}")
    data = synthetic_features(size)
    opts = dict(device=args.device, matmul=args.matmul, cuda_graphs=args.cuda_graphs)

    alternate(
        {
            "warm-up": featbench_run(data, size, configs[:2], 1, **opts),
            "warm-up reference": reference_run(data, size, configs[-1], 1, args.device),
        },
        1,
    )
    stack = alternate(
        {"together": featbench_run(data, size, configs, heads_per_chunk=args.heads_per_chunk, **opts)}, 1
    )["together"]
    acc_stack = top1(stack.result.cpu(), data["test_x"], data["test_y"])

    zero = [i for i, c in enumerate(configs) if c["eta"] == 0]
    pos = [i for i, c in enumerate(configs) if c["eta"] != 0]
    picks = spread_subset(zero, args.singles // 2) + spread_subset(pos, args.singles - args.singles // 2)
    ref_picks = spread_subset(zero, max(1, args.references // 2)) + spread_subset(
        pos, max(1, args.references - args.references // 2)
    )
    singles, refs = {}, {}
    for i in sorted(set(picks) | set(ref_picks)):
        sides = {}
        if i in picks:
            sides["featbench"] = featbench_run(data, size, [configs[i]], **opts)
        if i in ref_picks:
            sides["reference"] = reference_run(data, size, configs[i], device=args.device)
        res = alternate(sides, 1)
        line = f"  config {i:4d} {configs[i]}: head in stack {acc_stack[i]:6.2f}"
        if "featbench" in res:
            singles[i] = res["featbench"].wall
            w = res["featbench"].result.cpu()
            acc = top1(w, data["test_x"], data["test_y"])[0]
            line += f" | featbench alone {res['featbench'].wall:7.2f} s top-1 {acc:6.2f}"
            line += f" max|dW| vs stack {float((w[0] - stack.result[i].cpu()).abs().max()):.1e}"
        if "reference" in res:
            refs[i] = res["reference"].wall
            acc = top1(res["reference"].result.cpu(), data["test_x"], data["test_y"])[0]
            line += f" | reference {res['reference'].wall:7.2f} s top-1 {acc:6.2f}"
        print(line)
    fb_total, ref_total = one_by_one(configs, singles), one_by_one(configs, refs)
    K = len(configs)
    print(
        f"together (K = {K} in one stack): wall {stack.wall:9.1f} s  cpu {stack.cpu:9.1f} s  ({stack.wall / K:.2f} s "
        "per configuration)"
    )
    print(
        f"featbench one by one (extrapolated from {len(singles)} runs): {fb_total:9.1f} s  -> together is "
        f"{fb_total / stack.wall:5.2f}x faster"
    )
    print(
        f"reference one by one (extrapolated from {len(refs)} runs): {ref_total:9.1f} s  -> together is "
        f"{ref_total / stack.wall:5.2f}x faster"
    )
    print(f"mean test top-1 over the grid: {float(np.mean(acc_stack)):.2f} (best {float(np.max(acc_stack)):.2f})")


if __name__ == "__main__":
    main()
