"""featbench's `sea` against the literal official SeA loop, on the same features, over several seeds.

Both use the official defaults (lr 1.6, wd 1e-6, alpha 0.01, eta 0.8, lamda 0.1, delta 0, b 256,
100 epochs), the same initial weights and the same data order per seed; the reference is
`reference_sea.train_reference` (nn.Linear + torch.optim.SGD + autograd, softmax/zero-diagonal/renormalise).
Prints test top-1 per seed, mean ± std of both, and the largest weight difference.

    python benchmarks/sea_vs_reference.py [--features X.npz[,Y.npz]] [--seeds 5] [--epochs 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from reference_sea import train_reference  # noqa: E402

from featbench.inputs.features import load_features  # noqa: E402
from featbench.plugins.losses import SmoothedHinge  # noqa: E402
from featbench.plugins.sea import SeA  # noqa: E402
from featbench.training import metrics  # noqa: E402
from featbench.training.trainer import TrainSettings, predict, train_heads  # noqa: E402

OFFICIAL = dict(lr=1.6, wd=1e-6, alpha=0.01, eta=0.8, lamda=0.1, delta=0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", default=None, help="feature file(s); default: the embedded digits set")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=100)
    args = ap.parse_args()
    if args.features:
        fs = load_features(args.features.split(","))
    else:
        from featbench.inputs.demo import digits_features

        fs = digits_features()
    print(
        f"features {fs.name}: n={len(fs.train_y)} d={fs.dim} C={fs.num_classes}, {args.epochs} epochs, official "
        "defaults"
    )
    ours, ref, gaps = [], [], []
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        w_ref = train_reference(fs.train_x, fs.train_y, fs.num_classes, epochs=args.epochs, seed=seed, **OFFICIAL)
        t1 = time.perf_counter()
        res = train_heads(
            fs.train_x,
            fs.train_y,
            fs.num_classes,
            SeA,
            SmoothedHinge(),
            [OFFICIAL],
            TrainSettings(epochs=args.epochs, batch_size=256, seed=seed),
        )
        t2 = time.perf_counter()
        a_ref = metrics.top1(predict(w_ref[None], fs.test_x), fs.test_y)[0]
        a_ours = metrics.top1(predict(res.weight, fs.test_x), fs.test_y)[0]
        ref.append(a_ref)
        ours.append(a_ours)
        gaps.append(float((res.weight[0] - w_ref).abs().max()))
        print(
            f"seed {seed}: reference {a_ref:.2f} ({t1 - t0:.1f}s)  featbench {a_ours:.2f} ({t2 - t1:.1f}s)  max |dW| "
            f"{gaps[-1]:.2e}"
        )
    print(f"reference  {np.mean(ref):.2f} ± {np.std(ref, ddof=1) if len(ref) > 1 else 0:.2f}")
    print(f"featbench  {np.mean(ours):.2f} ± {np.std(ours, ddof=1) if len(ours) > 1 else 0:.2f}")
    print(f"mean |difference| per seed {np.mean(np.abs(np.array(ours) - np.array(ref))):.3f} pt")


if __name__ == "__main__":
    main()
