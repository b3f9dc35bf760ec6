"""Successive halving against the full grid search, cell by cell (``featbench run --search halving|grid``).

For every cell (feature source x augmenter row, one seed) the same grid is searched twice through the
runner, once with ``search=grid`` and once with ``search=halving`` (default rungs and keep 1/3), each in a
fresh in-memory store, and the script prints:

* the wall time of each search (:class:`SearchClock`: from the cell's first search job to its refit, so every
  search stack, halving's state bookkeeping between rungs, the store writes and the selection) and their ratio,
  the acceptance figure; then the wall time of each whole cell (feature loading, the search, the refit and
  its test scoring) and its ratio, and the refit's training time, which both searches pay alike. A search
  shorter than ``SHORT_SEARCH_S`` is run ``--repeats`` times, and the run with the fastest search is reported;
* "(trainer)": the ratio of the two searches' trainer time alone (building the stacks, restoring a rung's
  states, the epochs; from the records), the speed-up halving would reach if its bookkeeping between rungs
  (encoding states, the store, the selection) were free;
* how much less halving trained, from the records: the ratio of configuration-epochs (the speed-up when the
  work per head dominates a step) and of stack-epochs (each K-stack's step also has a part its heads share,
  the data pass and the operations the step dispatches; the speed-up when that part dominates, as with tiny
  features). The measured speed-up lies between the two, less the bookkeeping between rungs;
* whether halving chose the same configuration;
* the test-metric difference of the two chosen configurations' refits, with its significance test
  (``featbench.significance.gain_test``: McNemar's exact test on top-1, a paired bootstrap on mean
  per-class accuracy).

Acceptance (issue 17): on every cell halving searches >= 3x faster and its choice is not significantly
different (p >= 0.05).

Sources:
* ``digits@effnet+mnv2``: EfficientNet-Lite0 + MobileNetV2 features of scikit-learn's digits at 160 px
  (the README's main job; extracted into the feature cache on first use);
* ``fashion@effnet+mnv2``: the same backbones on Fashion-MNIST at 64 px (``apt-get install
  dataset-fashion-mnist``), a stratified subset of ``--fashion-train`` training rows (default 12,000; the
  official 10% val and the whole 10,000-image test set are kept);
* the CPU suites' feature files (``benchmarks/make_cpu_features.py``): digits and breast cancer under
  ``raw`` and ``raw+rff``.

Grid (``--grid``): ``large`` (default) = the paper's trainer and loss grid (6 lr x 4 wd x 3 lamda x 2
delta: 144 configurations for ``none``) x eta {0, 0.2, 0.4, 0.8} for SeA (576; the paper's 1,728 has 12
method values), several K-stacks of 64; ``medium`` = lr {0.5, 1, 2, 4} x wd {0, 1e-5} x lamda {0.1, 1},
times eta {0, 0.2, 0.4, 0.8} for SeA: 16 and 64 configurations, one K-stack each; ``small`` = lr {0.5, 2} x
wd {0, 1e-5} (x eta {0.4, 0.8}), the registry's ``quick`` grid: 4 and 8. 30 epochs, batch 256, seed 0.
Halving pays for itself only when the grid is several K-stacks: a K-stack's epoch costs a shared part (the
data pass) plus a part per head, and on one stack of cheap heads the shared part is a large share of an epoch,
so training the 2 that survive to the last rung costs far more than 2/16 of training all 16 (``medium``'s ``none``
cells).

``--stack-cost`` measures that split instead: it runs the ``none`` row's grid at K-stacks of 8, 16, 32 and 64,
fits trainer seconds = a x stack-epochs + b x configuration-epochs, and prints a, b, a's share of a 64-stack's
epoch, and the trainer speed-up the fit predicts for the default halving schedule.

Usage: ``python benchmarks/search_fidelity.py [--quick] [--sources digits,fashion,cpu] [--threads 2]
[--halving-rungs E1,E2,... --halving-keep F] [--stack-cost] [--json OUT.json]``; ``--quick`` runs the digits
cells only with the small grid. ``--probe-check`` only compares the L-BFGS probe (``--probe lbfgs``) with
scikit-learn's ``LogisticRegression`` at equal regularisation on the digits@effnet+mnv2 features.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

import numpy as np

from featbench.bench.progress import Listener
from featbench.records import REFIT, SEARCH

HERE = os.path.dirname(os.path.abspath(__file__))
BACKBONES = ("efficientnet-lite0", "mobilenet-v2")
GRIDS = {
    "medium": {"lr": (0.5, 1.0, 2.0, 4.0), "wd": (0.0, 1e-5), "lamda": (0.1, 1.0), "sea.eta": (0.0, 0.2, 0.4, 0.8)},
    "small": {"lr": (0.5, 2.0), "wd": (0.0, 1e-5), "sea.eta": (0.4, 0.8)},
    "large": {
        "lr": (0.25, 0.5, 1.0, 2.0, 4.0, 8.0),
        "wd": (0.0, 1e-6, 1e-5, 1e-4),
        "lamda": (0.05, 0.1, 1.0),
        "delta": (0.0, 1.0),
        "sea.eta": (0.0, 0.2, 0.4, 0.8),
    },
}


def _save(path: str, fs) -> str:
    arrays = {
        "train_x": fs.train_x,
        "train_y": fs.train_y,
        "test_x": fs.test_x,
        "test_y": fs.test_y,
        "metric": np.array(fs.metric),
    }
    if fs.has_val:
        arrays.update(val_x=fs.val_x, val_y=fs.val_y)
    np.savez(path, **{k: np.asarray(v, dtype=np.float32) if k.endswith("_x") else v for k, v in arrays.items()})
    return path


def _subset(fs, n: int, seed: int = 0):
    """A stratified subset of ``n`` training rows (val and test untouched)."""
    import attrs

    from featbench.training.protocol import stratified_holdout

    if n >= len(fs.train_y):
        return fs
    _, keep = stratified_holdout(fs.train_y, n / len(fs.train_y), seed)
    return attrs.evolve(fs, train_x=np.asarray(fs.train_x[keep]), train_y=fs.train_y[keep])


SOURCES = ("digits", "fashion", "cpu")
CPU_DATA = os.path.join(HERE, "data")  # where make_cpu_features.py writes the CPU suites' feature files


def sources(
    work: str, quick: bool, fashion_train: int, host, which=SOURCES, cpu_data: str = CPU_DATA
) -> list[tuple[str, tuple[str, ...]]]:
    """``(label, feature files)`` of every source in ``which``, writing the real-feature ones to ``work`` and
    the CPU suites' files to ``cpu_data`` when they are not there yet."""
    from featbench.inputs.sources import feature_set_for

    out = []
    real = [("digits", 160, None)] + ([] if quick else [("fashion-mnist", 64, fashion_train)])
    for dataset, size, n in real:
        if dataset.split("-")[0] not in which:
            continue
        fs = feature_set_for(dataset, list(BACKBONES), host=host, device="cpu", preprocess=size, progress=False)
        if n is not None:
            fs = _subset(fs, n)
        label = f"{dataset}@effnet+mnv2" + (f" (n={len(fs.train_y)})" if n is not None else "")
        out.append((label, (_save(os.path.join(work, f"{dataset}.npz"), fs),)))
    if "cpu" not in which:
        return out
    data = cpu_data
    if not os.path.isfile(os.path.join(data, "digits_raw.npz")):
        sys.path.insert(0, HERE)
        import make_cpu_features

        make_cpu_features.main(data)
    for ds in ("digits",) if quick else ("digits", "cancer"):
        out.append((f"{ds} raw (cpu suite)", (os.path.join(data, f"{ds}_raw.npz"),)))
        if not quick:
            out.append(
                (
                    f"{ds} raw+rff (cpu suite)",
                    (os.path.join(data, f"{ds}_raw.npz"), os.path.join(data, f"{ds}_rff.npz")),
                )
            )
    return out


class SearchClock(Listener):
    """A run listener that clocks the search phase: from the start of a cell's first SEARCH job to the start of its
    REFIT job (every search stack's training and validation scoring, halving's state bookkeeping between rungs,
    the store writes and the selection; not the feature loading, the refit or its test scoring, which both
    searches share). For a run of one cell on the local executor."""

    def __init__(self):
        self.start: float | None = None
        self.end: float | None = None

    def job_started(self, job) -> None:
        now = time.perf_counter()
        if job.phase == SEARCH and self.start is None:
            self.start = now
        elif job.phase == REFIT and self.end is None:
            self.end = now

    @property
    def seconds(self) -> float:
        return self.end - self.start


def run_cell(
    files,
    row: str,
    grid: dict,
    search: str,
    host,
    epochs: int,
    threads: int,
    halving: dict | None = None,
    stack_size: int | None = None,
):
    """One cell through the runner, in memory: (CellRecord, search wall seconds, cell wall seconds, refit training
    seconds, rungs, number of configurations, :func:`search_work`). ``stack_size``: the runner's ``--stack-size``
    (default: its own)."""
    from featbench.bench.driver import Runner
    from featbench.bench.spec import RunSpec, check
    from featbench.bench.store import Store

    hp = {
        k.split(".", 1)[1] if k.startswith(f"{row}.") else k: v
        for k, v in grid.items()
        if "." not in k or k.startswith(f"{row}.")
    }
    spec = check(
        RunSpec(
            aug=(row,),
            features=(tuple(files),),
            hp=hp,
            epochs=epochs,
            search=search,
            **(halving or {}),
            threads=threads,
            device="cpu",
            quiet=True,
            **({} if stack_size is None else {"stack_size": stack_size}),
        )
    )
    clock = SearchClock()
    with Store(None) as store:
        runner = Runner(spec, host, store, device="cpu", listener=clock)
        start = time.perf_counter()
        outcome = runner.run()
        seconds = time.perf_counter() - start
        (cell,) = store.cells(list(outcome.cell_keys))
        refit = store.configs([cell.refit_key])[cell.refit_key]
        work = search_work(store, runner.cells[0])
    plan = runner.cells[0]
    return cell, clock.seconds, seconds, refit.seconds, plan.rungs, len(plan.configs), work


def search_work(store, plan) -> tuple[float, float, float]:
    """What a cell's search trained, from its records: (configuration-epochs, stack-epochs, trainer seconds). A
    record's ``stack_size`` is the size of the K-stack it was trained in, so a stack of K heads counts 1 / K per
    head; its ``seconds`` are its stack's trainer time (building the stack, restoring a rung's states, the epochs)
    over K, so they sum to the trainer's time without the bookkeeping between rungs (encoding states, the store,
    the selection)."""
    E = plan.settings.epochs
    spans = [(plan.search_keys, E)] if not plan.rungs else zip(plan.rung_keys, np.diff((0, *plan.rungs)))
    configs = stacks = seconds = 0.0
    for keys, epochs in spans:
        for rec in store.configs(keys).values():
            configs += epochs
            stacks += epochs / rec.stack_size
            seconds += rec.seconds
    return configs, stacks, seconds


#: A search whose first run took less than this many seconds is run ``--repeats`` times in all and timed by its
#: fastest run (as ``timeit`` does): on a sub-second search a disturbance of the machine moves the ratio by tens
#: of percent. The runs are deterministic, so every run records the same numbers.
SHORT_SEARCH_S = 10.0


def timed_cell(files, row, grid, search, host, epochs, threads, halving=None, repeats: int = 3):
    """:func:`run_cell`, repeated when the search is short: the run with the fastest search, and the number of runs."""
    first = run_cell(files, row, grid, search, host, epochs, threads, halving)
    runs = [first]
    if first[1] < SHORT_SEARCH_S:
        runs += [run_cell(files, row, grid, search, host, epochs, threads, halving) for _ in range(repeats - 1)]
    return (*min(runs, key=lambda r: r[1]), len(runs))


def compare(label, files, row, grid, host, epochs, threads, halving: dict | None = None, repeats: int = 3) -> dict:
    from featbench.reporting import significance as sig

    g, g_search, g_s, refit_s, _, n, g_work, g_runs = timed_cell(
        files, row, grid, "grid", host, epochs, threads, repeats=repeats
    )
    h, h_search, h_s, _, rungs, _, h_work, h_runs = timed_cell(
        files, row, grid, "halving", host, epochs, threads, halving, repeats
    )
    sample = sig.PairedSample(h.correct, g.correct, g.test_y, g.metric)
    t = sig.gain_test({0: h.value}, {0: g.value}, [sample])
    return {
        "source": label,
        "row": row,
        "configs": n,
        "rungs": list(rungs),
        "grid_search_s": g_search,
        "halving_search_s": h_search,
        "speedup": g_search / h_search,
        "grid_s": g_s,
        "halving_s": h_s,
        "cell_speedup": g_s / h_s,
        "refit_train_s": refit_s,
        "timed_runs": [g_runs, h_runs],
        "config_epochs_ratio": g_work[0] / h_work[0],
        "stack_epochs_ratio": g_work[1] / h_work[1],
        "grid_trainer_s": g_work[2],
        "halving_trainer_s": h_work[2],
        "trainer_ratio": g_work[2] / h_work[2],
        "same_config": g.hp == h.hp,
        "grid_test": g.value,
        "halving_test": h.value,
        "diff": h.value - g.value,
        "p": t.p,
        "test": t.test,
        "metric": g.metric,
        "grid_hp": dict(g.hp),
        "halving_hp": dict(h.hp),
        "pass": g_search / h_search >= 3.0 and (t.p is None or t.p >= sig.ALPHA),
    }


def _table(rows: list[dict]) -> str:
    from tabulate import tabulate

    body = [
        [
            r["source"],
            r["row"],
            r["configs"],
            ",".join(map(str, r["rungs"])) or "-",
            f"{r['grid_search_s']:.2f}",
            f"{r['halving_search_s']:.2f}",
            f"{r['speedup']:.2f}x",
            f"{r['trainer_ratio']:.2f}x",
            f"{r['grid_s']:.2f}",
            f"{r['halving_s']:.2f}",
            f"{r['cell_speedup']:.2f}x",
            f"{r['refit_train_s']:.2f}",
            f"{r['config_epochs_ratio']:.2f}x",
            f"{r['stack_epochs_ratio']:.2f}x",
            "yes" if r["same_config"] else "no",
            f"{r['grid_test']:.2f}",
            f"{r['halving_test']:.2f}",
            f"{r['diff']:+.2f}",
            "-" if r["p"] is None else f"{r['p']:.3g}",
            "pass" if r["pass"] else "FAIL",
        ]
        for r in rows
    ]
    return tabulate(
        body,
        headers=[
            "source",
            "row",
            "N",
            "rungs",
            "grid search s",
            "halving search s",
            "speed-up",
            "(trainer)",
            "grid cell s",
            "halving cell s",
            "(cell)",
            "refit s",
            "fewer config-epochs",
            "fewer stack-epochs",
            "same config",
            "grid test",
            "halving test",
            "diff",
            "p",
            "accept",
        ],
        tablefmt="github",
        disable_numparse=True,
    )


def per_source(rows: list[dict]) -> str:
    """Every row of a source together, as one ``featbench run --aug none,sea`` searches them: the searches' wall
    seconds and their ratio, and the same for the whole cells."""
    from tabulate import tabulate

    totals: dict[str, list[float]] = {}
    for r in rows:
        t = totals.setdefault(r["source"], [0.0, 0.0, 0.0, 0.0])
        for i, name in enumerate(("grid_search_s", "halving_search_s", "grid_s", "halving_s")):
            t[i] += r[name]
    body = [
        [src, f"{g:.2f}", f"{h:.2f}", f"{g / h:.2f}x", f"{gc:.2f}", f"{hc:.2f}", f"{gc / hc:.2f}x"]
        for src, (g, h, gc, hc) in totals.items()
    ]
    return tabulate(
        body,
        headers=["source (all rows)", "grid search s", "halving search s", "speed-up", "grid cell s",
                 "halving cell s", "(cell)"],
        tablefmt="github",
        disable_numparse=True,
    )


def schedule_work(n: int, epochs: int, rungs, keep: float, stack: int) -> tuple[float, float]:
    """(configuration-epochs, stack-epochs) of a search over ``n`` configurations of one structural group in
    K-stacks of ``stack``: the grid when ``rungs`` is empty, else successive halving (``ceil(keep * alive)`` go on
    at each rung, as :func:`featbench.training.halving.survivors` keeps when none diverges)."""
    if not rungs:
        return n * epochs, math.ceil(n / stack) * epochs
    configs = stacks = 0.0
    alive, prev = n, 0
    for e in rungs:
        configs += alive * (e - prev)
        stacks += math.ceil(alive / stack) * (e - prev)
        alive, prev = max(1, math.ceil(keep * alive - 1e-9)), e
    return configs, stacks


def stack_cost(label, files, grid, host, epochs, threads, sizes=(8, 16, 32, 64), repeats: int = 2) -> dict:
    """The trainer's cost model of the ``none`` row on one source, from its grid search at several K-stack sizes:
    trainer seconds = a * stack-epochs + b * configuration-epochs (least squares), a being what a stack's epoch
    costs whatever its K (the data pass and the step's dispatches) and b what each head adds; and from it the
    trainer-time ratio of the grid to the default halving schedule in the runner's default K-stacks, with free
    bookkeeping."""
    from featbench.bench.spec import RunSpec
    from featbench.training.halving import DEFAULT_KEEP, default_rungs

    n, work = 0, []
    for k in sizes:
        runs = [run_cell(files, "none", grid, "grid", host, epochs, threads, stack_size=k) for _ in range(repeats)]
        n = runs[0][5]
        work.append(min((r[6] for r in runs), key=lambda w: w[2]))
    configs, stacks, seconds = (np.array(v) for v in zip(*work))
    (a, b), *_ = np.linalg.lstsq(np.stack([stacks, configs], 1), seconds, rcond=None)
    rungs = default_rungs(epochs, n, DEFAULT_KEEP)
    stack = RunSpec().stack_size
    g_c, g_s = schedule_work(n, epochs, (), DEFAULT_KEEP, stack)
    h_c, h_s = schedule_work(n, epochs, rungs, DEFAULT_KEEP, stack)
    return {
        "source": label,
        "configs": n,
        "sizes": list(sizes),
        "trainer_s": seconds.tolist(),
        "stack_epochs": stacks.tolist(),
        "config_epochs": configs.tolist(),
        "a_ms": 1e3 * a,
        "b_ms": 1e3 * b,
        "shared_of_64": a / (a + 64 * b),
        "stack": stack,
        "rungs": list(rungs),
        "model_ratio": (a * g_s + b * g_c) / (a * h_s + b * h_c),
        "config_epochs_ratio": g_c / h_c,
        "stack_epochs_ratio": g_s / h_s,
    }


def _stack_cost_table(rows: list[dict]) -> str:
    from tabulate import tabulate

    body = [
        [
            r["source"],
            r["configs"],
            " / ".join(f"{s:.2f}" for s in r["trainer_s"]),
            f"{r['a_ms']:.3f}",
            f"{r['b_ms']:.4f}",
            f"{100 * r['shared_of_64']:.0f}%",
            ",".join(map(str, r["rungs"])),
            f"{r['config_epochs_ratio']:.2f}x",
            f"{r['stack_epochs_ratio']:.2f}x",
            f"{r['model_ratio']:.2f}x",
        ]
        for r in rows
    ]
    sizes = "/".join(map(str, rows[0]["sizes"])) if rows else ""
    return tabulate(
        body,
        headers=[
            "source (none)",
            "N",
            f"grid trainer s at K = {sizes}",
            "a: ms per stack-epoch",
            "b: ms per head-epoch",
            "a's share of a 64-stack",
            "rungs",
            "fewer config-epochs",
            "fewer stack-epochs",
            "halving's trainer speed-up (model)",
        ],
        tablefmt="github",
        disable_numparse=True,
    )


def probe_check(host, wds=(1e-5, 1e-4, 1e-3, 1e-2)) -> str:
    """The L-BFGS probe against scikit-learn's ``LogisticRegression(C = 1 / (n wd), fit_intercept=False)`` on
    the digits@effnet+mnv2 features: test top-1 of each and the largest weight difference, per ``wd``."""
    from sklearn.linear_model import LogisticRegression
    from tabulate import tabulate

    from featbench.inputs.sources import feature_set_for
    from featbench.training import probe

    fs = feature_set_for("digits", list(BACKBONES), host=host, device="cpu", preprocess=160, progress=False)
    x, y = np.asarray(fs.train_x, dtype=np.float32), fs.train_y
    rows = []
    for wd in wds:
        start = time.perf_counter()
        f = probe.fit(x, y, fs.num_classes, wd)
        ours_s = time.perf_counter() - start
        start = time.perf_counter()
        clf = LogisticRegression(C=1.0 / (len(y) * wd), fit_intercept=False, max_iter=10000, tol=1e-8).fit(x, y)
        theirs_s = time.perf_counter() - start
        ours = 100 * float((probe._predict(f.weight, fs.test_x) == fs.test_y).mean())
        theirs = 100 * clf.score(np.asarray(fs.test_x, dtype=np.float32), fs.test_y)
        rel = float(np.abs(f.weight.numpy() - clf.coef_).max() / np.abs(clf.coef_).max())
        rows.append(
            [
                f"{wd:g}",
                f"{1.0 / (len(y) * wd):.4g}",
                f"{ours:.2f}",
                f"{theirs:.2f}",
                f"{ours - theirs:+.2f}",
                f"{rel:.1e}",
                f.iterations,
                f"{ours_s:.2f}",
                f"{theirs_s:.2f}",
            ]
        )
    return tabulate(
        rows,
        headers=[
            "wd",
            "sklearn C",
            "probe top-1",
            "sklearn top-1",
            "diff",
            "max |dW| / max |W|",
            "L-BFGS iters",
            "probe s",
            "sklearn s",
        ],
        tablefmt="github",
        disable_numparse=True,
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="digits cells only, the small grid")
    p.add_argument(
        "--grid", choices=sorted(GRIDS), default=None, help="large (default), medium, or small (default with --quick)"
    )
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", default="none,sea", help="augmenter rows (default: none,sea)")
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        metavar="R",
        help=f"runs of a search shorter than {SHORT_SEARCH_S:g} s; the fastest is reported (default 3)",
    )
    p.add_argument("--halving-rungs", default=None, metavar="E1,E2,...", help="halving's rungs (default: featbench's)")
    p.add_argument("--halving-keep", type=float, default=None, metavar="F", help="halving's keep (default: 1/3)")
    p.add_argument(
        "--fashion-train", type=int, default=12000, metavar="N", help="Fashion-MNIST training rows used (default 12000)"
    )
    p.add_argument("--sources", default=",".join(SOURCES), help="which sources: digits, fashion, cpu (default: all)")
    p.add_argument(
        "--probe-check",
        action="store_true",
        help="only compare the L-BFGS probe with scikit-learn on digits@effnet+mnv2",
    )
    p.add_argument(
        "--cpu-data", default=CPU_DATA, metavar="DIR", help="the CPU suites' feature files (default benchmarks/data)"
    )
    p.add_argument(
        "--stack-cost",
        action="store_true",
        help="only fit the trainer's cost per stack-epoch and per head-epoch (the none row's grid at K = 8, 16, 32, "
        "64) on each source, and the trainer speed-up it predicts for the default halving schedule",
    )
    p.add_argument("--json", default=None, metavar="OUT.json", help="also write every figure as JSON")
    args = p.parse_args(argv)
    import torch

    from featbench.manager import load_plugins

    torch.set_num_threads(args.threads)
    host = load_plugins(entry_points=[])
    if args.probe_check:
        print(probe_check(host))
        return 0
    grid_name = args.grid or ("small" if args.quick else "large")
    grid = GRIDS[grid_name]
    halving = {}
    if args.halving_rungs:
        halving["halving_rungs"] = tuple(int(v) for v in args.halving_rungs.split(","))
    if args.halving_keep is not None:
        halving["halving_keep"] = args.halving_keep
    results = []
    with tempfile.TemporaryDirectory() as work:
        for label, files in sources(work, args.quick, args.fashion_train, host, args.sources.split(","), args.cpu_data):
            if args.stack_cost:
                results.append(stack_cost(label, files, grid, host, args.epochs, args.threads))
                continue
            for row in args.rows.split(","):
                r = compare(label, files, row, grid, host, args.epochs, args.threads, halving, args.repeats)
                results.append(r)
                print(
                    f"{label} / {row}: {r['speedup']:.2f}x, same={r['same_config']}, "
                    f"diff {r['diff']:+.2f} (p={r['p']})",
                    file=sys.stderr,
                    flush=True,
                )
    print(f"torch {torch.__version__}, {args.threads} threads, {args.epochs} epochs, grid {grid_name}")
    if args.stack_cost:
        print(_stack_cost_table(results))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
        return 0
    print(_table(results))
    print()
    print(per_source(results))
    failing = [r for r in results if not r["pass"]]
    print(f"\n{len(results) - len(failing)} of {len(results)} cells pass (>= 3x faster and p >= 0.05)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
