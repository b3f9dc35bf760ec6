"""The evaluation protocol of one cell: select hyper-parameters on validation, refit, score test.

The pieces are separate so that a scheduler can record (and resume) every K-stack on its own:
:func:`train_configs` trains one stack in the SEARCH or REFIT phase and
:func:`featbench.records.select_best` chooses; the driver (:mod:`featbench.bench.driver`) composes them
(tests/reference.py holds the single-process composition the driver is tested against).

With several configurations: train them all (one K-stack per structural group) on the training split,
score the validation split (``val_x`` if the feature set has one, else a seeded stratified hold-out of the
training set), pick the best (first on ties), refit it on train+val and score test. With one
configuration: train it on train+val and score test. (BYOL / Kornblith linear-evaluation protocol.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import attrs
import numpy as np

from ..api import FeatureAugmenter, HParam, Loss
from ..inputs.datasets import stratified_holdout
from ..inputs.features import FeatureSet
from ..records import REFIT, SEARCH, EpochLog
from . import metrics
from .grid import structural_groups
from .trainer import HeadRun, TrainSettings, predict, train_heads


@attrs.frozen
class ConfigOutcome:
    """What training one configuration produced (the runner adds its identity to make a ConfigRecord)."""

    hp: dict
    val: float | None  # the metric on the validation split (SEARCH; NaN if diverged), None for REFIT
    test: float  # the metric on test (NaN if diverged, or at a halving rung before the last)
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


def search_split(
    fs: FeatureSet, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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


def heads_within_budget(num_classes: int, dim: int, budget_bytes: int = 1 << 30) -> int:
    """Heads trained by one call of the trainer so that their weights, momentum and gradients (about 4 copies)
    fit the budget (a job of more configurations is trained in several such calls)."""
    return max(1, budget_bytes // (4 * 4 * num_classes * dim))


def stacks(params: Mapping[str, HParam], configs: Sequence[Mapping[str, float]], stack_size: int) -> list[list[int]]:
    """Indices of ``configs`` grouped into K-stacks: structural groups, each cut into chunks of ``stack_size``."""
    out = []
    for group in structural_groups(params, configs):
        out.extend(group[i : i + stack_size] for i in range(0, len(group), stack_size))
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
    A rung of successive halving (featbench.training.halving) passes ``stop``: train up to that epoch of
    the ``settings.epochs``-epoch run, from the heads' ``states`` (None: from the start). A rung before the
    last returns each head's continuation state and scores validation only (test is NaN: only heads trained
    for all epochs are scored on test); the last rung scores like the grid search and keeps no state.
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

        run = HeadRun(x, y, fs.num_classes, aug_cls, loss, configs, settings)
        if states:
            halving.restore(run, states)
        run.advance(stop, epoch_end)
        res = run.result()
        if stop < settings.epochs:
            blobs = [halving.encode(s) for s in halving.head_states(run)]
    pred = None
    if stop is None or stop >= settings.epochs:
        pred = predict(res.weight, fs.test_x, settings.device)
        t1 = metrics.top1(pred, fs.test_y)
        mpc = metrics.mean_per_class(pred, fs.test_y, fs.num_classes)
    else:
        t1 = mpc = np.full(K, np.nan)
    test = t1 if fs.metric == "top1" else mpc
    val = _scores(fs, predict(res.weight, vx, settings.device), vy) if phase == SEARCH else None
    nan = float("nan")
    out = []
    for k, cfg in enumerate(configs):
        dv = res.diverged[k]
        out.append(
            ConfigOutcome(
                hp=dict(cfg),
                val=None if val is None else (nan if dv else float(val[k])),
                test=nan if dv else float(test[k]),
                top1=float(t1[k]),
                mean_per_class=float(mpc[k]),
                diverged=dv,
                seconds=res.seconds / K,
                stack_size=K,
                unaugmented_batches=res.unaugmented_batches,
                correct=pred[k] == fs.test_y if phase == REFIT and pred is not None else None,
                epochs=tuple(logs[k]),
                rung_epoch=stop,
                state=blobs[k],
            )
        )
    return out
