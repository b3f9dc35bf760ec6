"""Reference implementations the tests compare featbench's fast or cached paths against: the straightforward
forms, kept here because nothing in featbench runs them."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import attrs
import numpy as np

from featbench.api import FeatureAugmenter, HParam, Loss
from featbench.errors import DataError
from featbench.inputs.extract import ExtractSettings, iter_features
from featbench.inputs.features import FeatureSet, l2_normalize
from featbench.records import REFIT, SEARCH, select_best
from featbench.training.protocol import ConfigOutcome, heads_within_budget, stacks, train_configs
from featbench.training.trainer import TrainSettings


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
    start = time.perf_counter()
    val_scores: tuple = ()
    val_value = None
    diverged: tuple = ()
    if len(configs) > 1:
        search: list[ConfigOutcome | None] = [None] * len(configs)
        for idx in stacks(params, configs, heads_within_budget(fs.num_classes, fs.dim)):
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


def ensemble(sets: Sequence[FeatureSet], name: str | None = None) -> FeatureSet:
    """Combine feature sets of the same images (normalise each block, concatenate, normalise)."""
    if len(sets) == 1:
        return sets[0]
    first = sets[0]
    for s in sets[1:]:
        if not (np.array_equal(s.train_y, first.train_y) and np.array_equal(s.test_y, first.test_y)):
            raise DataError(f"cannot ensemble {first.name} and {s.name}: labels differ", "use features of the same images in the same order")

    def cat(arrs):
        return l2_normalize(np.concatenate([l2_normalize(a) for a in arrs], axis=1))

    val_x = cat([s.val_x for s in sets]) if first.has_val else None
    return attrs.evolve(first, name=name or "+".join(s.name for s in sets), train_x=cat([s.train_x for s in sets]),
                        test_x=cat([s.test_x for s in sets]), val_x=val_x,
                        sources=tuple(p for s in sets for p in s.sources), cache_keys=tuple(k for s in sets for k in s.cache_keys))


def extract_array(model, source, transform: Callable, settings: ExtractSettings) -> np.ndarray:
    """All features of ``source`` as one float32 array (no cache): the straightforward path."""
    parts = list(iter_features(model, source, transform, settings))
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
