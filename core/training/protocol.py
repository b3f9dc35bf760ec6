"""The evaluation protocol of one cell: select hyper-parameters on validation, refit, score test.

The pieces are separate so that a scheduler can record (and resume) every K-stack on its own:
:func:`train_configs` trains one stack in the SEARCH or REFIT phase, :func:`select_best` chooses, and
:func:`run_cell` composes them for a single process.

With several configurations: train them all (one K-stack per structural group) on the training split,
score the validation split (``val_x`` if the feature set has one, else a seeded stratified hold-out of the
training set), pick the best (first on ties), refit it on train+val and score test. With one
configuration: train it on train+val and score test. (BYOL / Kornblith linear-evaluation protocol.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import attrs
import numpy as np

from . import metrics
from ..api import FeatureAugmenter, HParam, Loss
from ..inputs.features import FeatureSet
from .grid import structural_groups
from ..bench.records import REFIT, SEARCH, EpochLog
from .trainer import HeadRun, TrainSettings, predict, train_heads


@attrs.frozen
class CellResult:
    """The outcome of one (feature set, augmenter, seed) cell."""

    augmenter: str
    loss: str
    features: str
    metric: str
    value: float  # the feature set's metric on test, percent
    top1: float
    mean_per_class: float
    hp: dict  # the chosen configuration
    seed: int
    seconds: float
    grid_size: int
    val_value: float | None  # the chosen configuration's validation score (None without a search)
    val_scores: tuple  # validation score per configuration, grid order (NaN for diverged)
    diverged: tuple  # configurations whose training diverged
    correct: np.ndarray = attrs.field(eq=False, repr=False)  # per-test-example correctness of the final head
    unaugmented_batches: int = 0


def stratified_holdout(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) with about ``fraction`` of every class held out (at least one row per class
    with >= 2 rows stays in each part)."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        k = int(round(fraction * len(idx)))
        k = min(max(k, 1 if len(idx) >= 2 else 0), len(idx) - 1)
        val_idx.append(idx[:k])
        train_idx.append(idx[k:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


@attrs.frozen
class ConfigOutcome:
    """What training one configuration produced (the runner adds its identity to make a ConfigRecord)."""

    hp: dict
    val: float | None  # the metric on the validation split (SEARCH; NaN if diverged), None for REFIT
    test: float  # the metric on test (NaN if diverged)
    top1: float
    mean_per_class: float
    diverged: bool
    seconds: float  # the wall time of its K-stack / K
    stack_size: int
    unaugmented_batches: int
    correct: np.ndarray | None = attrs.field(default=None, eq=False, repr=False)  # per test example (REFIT)
    epochs: tuple[EpochLog, ...] = ()
    rung_epoch: int | None = None  # trained to this epoch of ``settings.epochs`` (successive halving), else None
    state: bytes | None = attrs.field(default=None, eq=False, repr=False)  # continuation state at ``rung_epoch``


def search_split(fs: FeatureSet, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_x, train_y, val_x, val_y) for the search: the provided val split, else a seeded stratified hold-out."""
    if fs.has_val:
        return fs.train_x, fs.train_y, fs.val_x, fs.val_y
    tr, va = stratified_holdout(fs.train_y, val_fraction, seed)
    return fs.train_x[tr], fs.train_y[tr], fs.train_x[va], fs.train_y[va]


def fit_split(fs: FeatureSet) -> tuple[np.ndarray, np.ndarray]:
    """The rows a refit trains on: train+val when there is a val split, else train."""
    if fs.has_val:
        return np.concatenate([fs.train_x, fs.val_x]), np.concatenate([fs.train_y, fs.val_y])
    return fs.train_x, fs.train_y


def default_max_heads(num_classes: int, dim: int, budget_bytes: int = 1 << 30) -> int:
    """Heads per K-stack so that the stack's weights, momentum and gradients (about 4 copies) fit the budget."""
    return max(1, budget_bytes // (4 * 4 * num_classes * dim))


def stacks(params: Mapping[str, HParam], configs: Sequence[Mapping[str, float]], max_heads: int) -> list[list[int]]:
    """Indices of ``configs`` grouped into K-stacks: structural groups, each cut into chunks of ``max_heads``."""
    out = []
    for group in structural_groups(params, configs):
        out.extend(group[i:i + max_heads] for i in range(0, len(group), max_heads))
    return out


def _scores(fs: FeatureSet, pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    return metrics.score(fs.metric, pred, y, fs.num_classes)


def train_configs(
    fs: FeatureSet,
    aug_cls: type[FeatureAugmenter],
    loss: Loss,
    configs: Sequence[Mapping[str, float]],
    settings: TrainSettings,
    phase: str,
    val_fraction: float = 0.2,
    log_every: int = 0,
    on_epoch: Callable[[int], None] | None = None,
    stop: int | None = None,
    states: Sequence[dict] | None = None,
) -> list[ConfigOutcome]:
    """Train ``configs`` together as one K-stack and score them.

    ``phase`` SEARCH trains on the search split and scores validation and test; REFIT trains on
    train+val and scores test, keeping the per-example correctness. ``log_every`` > 0 records train and
    test accuracy every that many epochs (and after the last). ``on_epoch(epoch)`` reports progress.
    A rung of successive halving (featbench.training.halving) passes ``stop``: train up to that epoch of the
    ``settings.epochs``-epoch run, from the heads' ``states`` (None: from the start), and return each
    head's continuation state with its scores.
    """
    if phase == SEARCH:
        x, y, vx, vy = search_split(fs, val_fraction, settings.seed)
    elif phase == REFIT:
        (x, y), vx, vy = fit_split(fs), None, None
    else:
        raise ValueError(f"unknown phase {phase!r}")
    K = len(configs)
    logs: list[list[EpochLog]] = [[] for _ in range(K)]

    def epoch_end(epoch: int, weight) -> None:
        if log_every and ((epoch + 1) % log_every == 0 or epoch + 1 == settings.epochs):
            tr = _scores(fs, predict(weight, x, settings.device), y)
            te = _scores(fs, predict(weight, fs.test_x, settings.device), fs.test_y)
            for k in range(K):
                logs[k].append(EpochLog(epoch, float(tr[k]), float(te[k])))
        if on_epoch is not None:
            on_epoch(epoch)

    blobs: list[bytes | None] = [None] * K
    if stop is None:
        res = train_heads(x, y, fs.num_classes, aug_cls, loss, configs, settings, on_epoch_end=epoch_end)
    else:
        from . import halving

        run = (halving.resume(x, y, fs.num_classes, aug_cls, loss, configs, settings, states) if states
               else HeadRun(x, y, fs.num_classes, aug_cls, loss, configs, settings))
        run.advance(stop, epoch_end)
        res = run.result()
        blobs = [halving.encode(s) for s in halving.head_states(run)]
    pred = predict(res.weight, fs.test_x, settings.device)
    t1 = metrics.top1(pred, fs.test_y)
    mpc = metrics.mean_per_class(pred, fs.test_y, fs.num_classes)
    test = t1 if fs.metric == "top1" else mpc
    val = _scores(fs, predict(res.weight, vx, settings.device), vy) if phase == SEARCH else None
    nan = float("nan")
    out = []
    for k, cfg in enumerate(configs):
        dv = res.diverged[k]
        out.append(ConfigOutcome(
            hp=dict(cfg), val=None if val is None else (nan if dv else float(val[k])), test=nan if dv else float(test[k]),
            top1=float(t1[k]), mean_per_class=float(mpc[k]), diverged=dv, seconds=res.seconds / K, stack_size=K,
            unaugmented_batches=res.unaugmented_batches, correct=pred[k] == fs.test_y if phase == REFIT else None,
            epochs=tuple(logs[k]), rung_epoch=stop, state=blobs[k]))
    return out


def select_best(val_scores: Sequence[float]) -> int:
    """Index of the best validation score (the first on ties; NaN = diverged never wins unless all are)."""
    finite = [i for i, s in enumerate(val_scores) if s is not None and not np.isnan(s)]
    return max(finite, key=lambda i: (val_scores[i], -i)) if finite else 0


def run_cell(
    fs: FeatureSet,
    aug_name: str,
    aug_cls: type[FeatureAugmenter],
    loss_name: str,
    loss: Loss,
    params: Mapping[str, HParam],
    configs: Sequence[Mapping[str, float]],
    settings: TrainSettings,
    val_fraction: float = 0.2,
) -> CellResult:
    """One whole cell in this process: search (if several configurations), select, refit, test."""
    import time

    start = time.perf_counter()
    val_scores: tuple = ()
    val_value = None
    diverged: tuple = ()
    if len(configs) > 1:
        search: list[ConfigOutcome | None] = [None] * len(configs)
        for idx in stacks(params, configs, default_max_heads(fs.num_classes, fs.dim)):
            for i, o in zip(idx, train_configs(fs, aug_cls, loss, [configs[i] for i in idx], settings, SEARCH, val_fraction)):
                search[i] = o
        val_scores = tuple(o.val for o in search)
        diverged = tuple(o.diverged for o in search)
        best = select_best(val_scores)
        val_value = val_scores[best]
        chosen = dict(configs[best])
    else:
        chosen = dict(configs[0])
    (final,) = train_configs(fs, aug_cls, loss, [chosen], settings, REFIT)
    return CellResult(augmenter=aug_name, loss=loss_name, features=fs.name, metric=fs.metric, value=final.test,
                      top1=final.top1, mean_per_class=final.mean_per_class, hp=chosen, seed=settings.seed,
                      seconds=time.perf_counter() - start, grid_size=len(configs), val_value=val_value,
                      val_scores=val_scores, diverged=diverged or (final.diverged,), correct=final.correct,
                      unaugmented_batches=final.unaugmented_batches)
