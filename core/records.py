"""The typed values that flow from the runner through the results store into reports and plots.

``ConfigRecord``: one trained configuration (a grid point of the search, or the refit of the chosen one).
``CellRecord``: one finished cell (source × augmenter row × seed) with its reported test number.
``RunRecord``: one invocation of ``featbench run`` on an output directory.
``EpochLog``: per-epoch train/test accuracy of one configuration (``--log-every``).

These classes carry no behaviour beyond small conveniences; only :mod:`featbench.bench.store` knows how they
are written to SQL. With :func:`select_best` (the rule that picks a cell's configuration) they are the
vocabulary training, the bench and reporting share, so this module imports none of them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

import attrs
import numpy as np

SEARCH = "search"
REFIT = "refit"
PROBE = "probe"  # a job that runs the whole L-BFGS probe of a cell (featbench.training.probe): its sweep and its refit
PROBE_ROW = "lbfgs"  # the probe's row label in tables


def stable_hash(obj: object) -> str:
    """A hex SHA-256 of the canonical JSON of ``obj`` (sorted keys, floats as ``repr``): identity of a spec."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@attrs.frozen
class EpochLog:
    """Accuracy (percent) after ``epoch`` (0-based) of one configuration; ``train`` is on the rows it trains on."""

    epoch: int
    train: float
    test: float


@attrs.frozen
class ConfigRecord:
    """One trained configuration: where, what, and how it scored."""

    key: str  # stable identity (see runner.config_key); a rerun with the same key is skipped
    source_id: str
    augmenter: str  # the plugin name
    loss: str
    seed: int
    phase: str  # SEARCH (trained on the search split, scored on val and test) or REFIT (train+val, test)
    hp: Mapping[str, float]
    val: float | None  # the source's metric on the validation split (SEARCH only; NaN if diverged)
    test: float  # the source's metric on test (NaN for a halving rung before the last: not scored there)
    top1: float
    mean_per_class: float
    diverged: bool
    seconds: float  # wall time of its K-stack divided by the stack size
    stack_size: int
    device: str
    unaugmented_batches: int = 0
    correct: np.ndarray | None = attrs.field(default=None, eq=False, repr=False)  # per test example (REFIT only)
    epochs: tuple[EpochLog, ...] = ()
    rung_epoch: int | None = None  # successive halving: the epoch of the rung this record scores (None: full length)
    state: bytes | None = attrs.field(default=None, eq=False, repr=False)  # halving: the heads' continuation state


@attrs.frozen
class CellRecord:
    """A finished cell: the refit of the configuration chosen on validation, scored on test."""

    key: str
    source_id: str
    dataset: str  # the table column
    backbones: str  # the backbone-set label, e.g. "S+M" (Table 4 row); "" for plain feature files
    row: str  # the augmenter row label (the plugin name unless a suite names a variant)
    augmenter: str
    loss: str
    seed: int
    metric: str
    value: float  # test metric (percent) of the refit; NaN if it diverged
    top1: float
    mean_per_class: float
    hp: Mapping[str, float]  # the chosen configuration
    val_value: float | None  # its validation score (None without a search)
    grid_size: int
    diverged_configs: int
    seconds: float  # wall time of all its configurations (search share + refit)
    refit_key: str
    cache_keys: tuple[str, ...] = ()
    correct: np.ndarray | None = attrs.field(default=None, eq=False, repr=False)
    test_y: np.ndarray | None = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen
class RunRecord:
    """One ``featbench run`` invocation on an output directory."""

    id: int
    started: float
    finished: float | None
    status: str  # running | finished | interrupted | failed (the driver stopped on an error, or cells failed)
    spec: Mapping[str, object]
    versions: Mapping[str, object]
    cells_planned: int


def select_best(val_scores: Sequence[float]) -> int:
    """Index of the best validation score (the first on ties; NaN = diverged never wins unless all are)."""
    finite = [i for i, s in enumerate(val_scores) if s is not None and not np.isnan(s)]
    return max(finite, key=lambda i: (val_scores[i], -i)) if finite else 0
