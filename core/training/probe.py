"""The L-BFGS linear probe (``featbench run --probe lbfgs``): the practitioners' baseline.

Multinomial logistic regression without bias (like the protocol's heads), on the same unit-normalised
features and splits, minimising ``mean_i CE(x_i W^T, y_i) + wd/2 ||W||^2`` (the trainer's weight-decay
convention) with torch's full-batch L-BFGS (strong-Wolfe line search) from ``W = 0``. The problem is
strictly convex for ``wd > 0``, so the result depends on no seed. In scikit-learn's terms
(``C * sum_i CE_i + 1/2 ||W||^2``, ``fit_intercept=False``) this is ``C = 1 / (n wd)``.

Weight decay is chosen as in CLIP's linear-probe protocol: a coarse sweep over decades
(:data:`COARSE`, 1e-7 .. 10), then a refinement at quarter decades between the best value's neighbours;
the best on validation (the source's metric; the smaller ``wd`` on ties) is refit on train+val and
scored on test.

Not batched over weight decays: torch's L-BFGS keeps one curvature history and one line search for all
its parameters, so K problems stacked in one parameter tensor would share step lengths and curvature
pairs and no longer be K independent solutions. Every ``wd`` is its own L-BFGS run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import attrs
import numpy as np

from ..inputs.features import FeatureSet
from ..records import PROBE_ROW, REFIT, SEARCH
from . import metrics
from .protocol import ConfigOutcome, fit_split, search_split

NAME = PROBE_ROW
COARSE = tuple(10.0**k for k in range(-7, 2))
REFINE_PER_DECADE = 4
MAX_ITER = 500
TOLERANCE_GRAD = 1e-6  # on the largest gradient entry of the mean objective
TOLERANCE_CHANGE = 1e-10


@attrs.frozen
class ProbeFit:
    weight: object  # torch.Tensor (C, d) on the CPU
    iterations: int
    seconds: float


def fit(
    x, y, num_classes: int, wd: float, device: str = "cpu", dtype: str = "float32", max_iter: int = MAX_ITER
) -> ProbeFit:
    """The L-BFGS solution of the probe's objective for one weight decay ``wd``."""
    import torch

    from ..device import resolve_device
    from .trainer import math_dtype

    start = time.perf_counter()
    dev = torch.device(resolve_device(device))
    dt = math_dtype(dtype)
    xt = torch.as_tensor(np.asarray(x), device=dev).to(dt)
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64), device=dev)
    w = torch.zeros(num_classes, xt.shape[1], dtype=dt, device=dev, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w],
        lr=1.0,
        max_iter=max_iter,
        max_eval=2 * max_iter,
        history_size=20,
        tolerance_grad=TOLERANCE_GRAD,
        tolerance_change=TOLERANCE_CHANGE,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w.T, yt) + 0.5 * wd * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    iterations = opt.state[w].get("n_iter", 0)
    return ProbeFit(w.detach().cpu(), int(iterations), time.perf_counter() - start)


def refine(best: float) -> list[float]:
    """Quarter-decade values between the coarse neighbours of ``best`` (excluding the coarse ones)."""
    k = round(math.log10(best))
    steps = range(-REFINE_PER_DECADE + 1, REFINE_PER_DECADE)
    return [10.0 ** (k + j / REFINE_PER_DECADE) for j in steps if j != 0]


def candidates() -> list[float]:
    """Every weight decay the sweep can try (the coarse grid and every refinement of it)."""
    return sorted({*COARSE, *(v for c in COARSE for v in refine(c))})


def identity() -> dict:
    """What makes the probe's numbers what they are (part of its cells' keys)."""
    return {
        "name": NAME,
        "coarse": list(COARSE),
        "refine_per_decade": REFINE_PER_DECADE,
        "max_iter": MAX_ITER,
        "tolerance_grad": TOLERANCE_GRAD,
        "tolerance_change": TOLERANCE_CHANGE,
        "init": "zeros",
        "history": 20,
    }


def _predict(weight, x) -> np.ndarray:
    from .trainer import predict

    return predict(weight.unsqueeze(0).float(), x)[0]


def run(
    fs: FeatureSet,
    seed: int,
    val_fraction: float = 0.2,
    device: str = "cpu",
    dtype: str = "float32",
    coarse: Sequence[float] = COARSE,
) -> list[ConfigOutcome]:
    """The whole probe on one feature set: the sweep on validation (one SEARCH outcome per ``wd``,
    in the order tried) and the refit (the last outcome, REFIT, with per-example correctness)."""
    x, y, vx, vy = search_split(fs, val_fraction, seed)
    out: list[ConfigOutcome] = []

    def sweep(values):
        for wd in values:
            f = fit(x, y, fs.num_classes, wd, device, dtype)
            out.append(_outcome(fs, f, {"wd": wd}, SEARCH, _predict(f.weight, vx), vy))

    def best() -> float:
        finite = [o for o in out if not math.isnan(o.val)]
        return max(finite, key=lambda o: (o.val, -o.hp["wd"])).hp["wd"]

    sweep(coarse)
    sweep(refine(best()))
    chosen = best()
    fx, fy = fit_split(fs)
    f = fit(fx, fy, fs.num_classes, chosen, device, dtype)
    out.append(_outcome(fs, f, {"wd": chosen}, REFIT, None, None))
    return out


def _outcome(fs: FeatureSet, f: ProbeFit, hp: dict, phase: str, val_pred, vy) -> ConfigOutcome:
    pred = _predict(f.weight, fs.test_x)
    t1 = float(metrics.top1(pred[None], fs.test_y)[0])
    mpc = float(metrics.mean_per_class(pred[None], fs.test_y, fs.num_classes)[0])
    diverged = not bool(np.isfinite(f.weight.numpy()).all())
    val = None if phase == REFIT else float(metrics.score(fs.metric, val_pred[None], vy, fs.num_classes)[0])
    nan = float("nan")
    return ConfigOutcome(
        hp=dict(hp),
        val=nan if diverged and val is not None else val,
        test=nan if diverged else (t1 if fs.metric == "top1" else mpc),
        top1=t1,
        mean_per_class=mpc,
        diverged=diverged,
        seconds=f.seconds,
        stack_size=1,
        unaugmented_batches=0,
        correct=pred == fs.test_y if phase == REFIT else None,
    )
