"""Fig. 4 of the SeA paper (Qian, Xu, Hu, ECCV 2024, 4.1 "Effect of directions"): test accuracy of
augmentation directions as the step size eta varies.

Methods: ``sea``, ``sea_neg``, ``rand``, ``mixdir`` (the paper's "manifold mixup": one random example as
the direction) on eta in {0, 0.2, 0.4, 0.6, 0.8, 1.0}; ``adv`` on its own small grid {0, 0.005, 0.01,
0.02, 0.05} (the paper: "very sensitive"); ``none`` as the reference line. Fixed as in the paper's
ablation: smoothed hinge with lamda = 0.1, delta = 0, alpha = 0.01, lr = 1 (wd = 1e-6, the official
default; not stated in the paper), batch 256, constant-lr SGD with momentum 0.9, one evaluation on the
test split after the last epoch. Every method's eta grid is trained as one K-stack per seed.

The paper's figure is on CIFAR-100 with 8192-d S+M+B+C deep features (SeA 82.9, baseline 81.1,
SeA_Neg about 1 % below SeA, Rand about the baseline, Adv and mixup in between). The default data here
is the embedded scikit-learn digits set (64-d *pixel* features, ~1200 training images), which runs on a
CPU in seconds but is a different regime: expect different numbers, and do not read paper claims into
them. Pass ``--features X.npz`` (any featbench feature file, or several comma-separated for an ensemble)
to run it on real deep features.

Writes ``fig4_directions.md`` (tables), ``fig4_directions.json`` (all numbers) and ``fig4_directions.png``
to ``--out``.

    python benchmarks/fig4_directions.py --epochs 30 --out runs/fig4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

SHARED_ETAS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
ADV_ETAS = (0.0, 0.005, 0.01, 0.02, 0.05)
METHODS = {"sea": SHARED_ETAS, "sea_neg": SHARED_ETAS, "rand": SHARED_ETAS, "mixdir": SHARED_ETAS, "adv": ADV_ETAS}
FIXED = {"lamda": 0.1, "delta": 0.0, "alpha": 0.01}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--features", default=None, metavar="A.npz[,B.npz...]", help="feature file(s); default: embedded digits"
    )
    p.add_argument("--epochs", type=int, default=100, help="training epochs (paper: 100)")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1; mean and std are reported")
    p.add_argument("--lr", type=float, default=1.0, help="learning rate (paper's ablation: 1)")
    p.add_argument("--wd", type=float, default=1e-6, help="weight decay (official default 1e-6)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="runs/fig4", help="output directory")
    return p.parse_args(argv)


def load(spec):
    if spec is None:
        from featbench.inputs.demo import digits_features

        return digits_features(seed=0)
    from featbench.inputs.features import load_features

    return load_features([p for p in spec.split(",") if p])


def evaluate(fs, aug_cls, loss, etas, args, seed):
    """Test scores (percent) of one K-stack over ``etas`` (or one head for eta-less methods)."""
    from featbench.training import metrics
    from featbench.training.grid import expand_grid, hparams_for
    from featbench.training.trainer import TrainSettings, predict, train_heads

    params = hparams_for(type(loss), aug_cls)
    values = {"lr": [args.lr], "wd": [args.wd], **{k: [v] for k, v in FIXED.items()}}
    if etas:
        values["eta"] = list(etas)
    configs = expand_grid(params, {k: v for k, v in values.items() if k in params})
    train_x = fs.train_x if fs.val_x is None else np.concatenate([fs.train_x, fs.val_x])
    train_y = fs.train_y if fs.val_y is None else np.concatenate([fs.train_y, fs.val_y])
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, seed=seed, device=args.device)
    res = train_heads(train_x, train_y, fs.num_classes, aug_cls, loss, configs, settings)
    scores = metrics.score(fs.metric, predict(res.weight, fs.test_x, args.device), fs.test_y, fs.num_classes)
    return [float("nan") if dv else float(s) for s, dv in zip(scores, res.diverged)]


def run(args):
    from featbench.manager import load_plugins

    fs = load(args.features)
    host = load_plugins(entry_points=[])
    loss = host.get_loss("hinge")()
    seeds = list(range(args.seeds))
    start = time.perf_counter()
    results = {
        "none": {"etas": [0.0], "scores": [evaluate(fs, host.get_augmenter("none"), loss, (), args, s) for s in seeds]}
    }
    for name, etas in METHODS.items():
        results[name] = {
            "etas": list(etas),
            "scores": [evaluate(fs, host.get_augmenter(name), loss, etas, args, s) for s in seeds],
        }
        print(f"fig4: {name} done ({time.perf_counter() - start:.0f}s)", file=sys.stderr)
    for r in results.values():
        arr = np.array(r.pop("scores"))  # (seeds, etas)
        r["mean"], r["std"] = (
            arr.mean(0).tolist(),
            (arr.std(0, ddof=1) if len(seeds) > 1 else np.zeros(arr.shape[1])).tolist(),
        )
    meta = {
        "features": fs.name,
        "dim": fs.dim,
        "num_classes": fs.num_classes,
        "metric": fs.metric,
        "n_train": int(len(fs.train_y)),
        "n_test": int(len(fs.test_y)),
        "epochs": args.epochs,
        "seeds": seeds,
        "lr": args.lr,
        "wd": args.wd,
        "batch_size": args.batch_size,
        **FIXED,
        "seconds": round(time.perf_counter() - start, 1),
    }
    return results, meta


def _cell(mean, std, seeds):
    return f"{mean:.2f}" + (f" ± {std:.2f}" if len(seeds) > 1 else "")


def markdown(results, meta):
    seeds = meta["seeds"]
    base = results["none"]["mean"][0]
    lines = [
        f"# SeA Fig. 4 on {meta['features']} (d = {meta['dim']}, C = {meta['num_classes']}, test {meta['metric']} %)",
        "",
        f"{meta['epochs']} epochs, lr {meta['lr']:g}, wd {meta['wd']:g}, lamda {meta['lamda']:g}, delta "
        f"{meta['delta']:g}, "
        f"alpha {meta['alpha']:g}, batch {meta['batch_size']}, seeds {seeds}. Baseline (none): "
        f"{_cell(base, results['none']['std'][0], seeds)}.",
        "",
    ]
    for title, names, etas in (
        ("Shared step sizes", [n for n, e in METHODS.items() if e == SHARED_ETAS], SHARED_ETAS),
        ("Adv on its own step sizes", ["adv"], ADV_ETAS),
    ):
        lines += [
            f"## {title}",
            "",
            "| method | " + " | ".join(f"η={e:g}" for e in etas) + " | best η | best − none |",
            "|---|" + "---:|" * (len(etas) + 2),
        ]
        for n in names:
            r = results[n]
            best = int(np.nanargmax(r["mean"][1:])) + 1  # the best non-zero step
            lines.append(
                f"| {n} | "
                + " | ".join(_cell(m, s, seeds) for m, s in zip(r["mean"], r["std"]))
                + f" | {r['etas'][best]:g} | {r['mean'][best] - base:+.2f} |"
            )
        lines.append("")
    lines.append(
        "η = 0 is the baseline for every method (the same run as `none`). Paper numbers come from 8192-d deep "
        "features on CIFAR-100; see the script's docstring."
    )
    return "\n".join(lines) + "\n"


def plot(results, meta, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = results["none"]["mean"][0]
    floor = base - 10  # points far below the baseline are drawn at the floor and labelled with their value
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    for ax, names in ((axes[0], ["sea", "sea_neg", "rand", "mixdir"]), (axes[1], ["adv"])):
        low = False
        for n in names:
            r = results[n]
            mean = np.maximum(np.array(r["mean"]), floor)
            std = np.where(np.array(r["mean"]) < floor, 0.0, r["std"]) if len(meta["seeds"]) > 1 else None
            line = ax.errorbar(r["etas"], mean, yerr=std, marker="o", capsize=3, label=n)
            for e, m in zip(r["etas"], r["mean"]):
                if m < floor:
                    low = True
                    ax.annotate(
                        f"{m:.1f} (off scale)",
                        (e, floor),
                        textcoords="offset points",
                        xytext=(0, 6),
                        ha="center",
                        color=line[0].get_color(),
                        fontsize=8,
                    )
        ax.axhline(base, color="k", ls="--", lw=1, label="none")
        if low:
            top = max(m + s for n in names for m, s in zip(results[n]["mean"], results[n]["std"]) if m >= floor)
            ax.set_ylim(floor - 1, top + 1)
        ax.set_xlabel("step size η")
        ax.set_ylabel(f"test {meta['metric']} (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_title("in-batch directions")
    axes[1].set_title("Adv (its own η grid)")
    fig.suptitle(
        f"SeA Fig. 4 reproduction on {meta['features']} (d={meta['dim']}, {meta['epochs']} epochs, "
        f"{len(meta['seeds'])} seed(s))"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    results, meta = run(args)
    os.makedirs(args.out, exist_ok=True)
    text = markdown(results, meta)
    with open(os.path.join(args.out, "fig4_directions.md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(args.out, "fig4_directions.json"), "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "results": results}, f, indent=2)
    plot(results, meta, os.path.join(args.out, "fig4_directions.png"))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
