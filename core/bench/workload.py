"""The size of a run before anything is expanded: configurations counted by multiplication, the time they
take here from a measured cost model, and the ``--max-configs`` limit on their number.

Cost model (``benchmarks/cost_model.py`` measures it and prints these constants): one configuration-epoch
of a K-stack on CPU costs ``GAMMA * ceil(n / b) + n * d * (ALPHA * C + BETA * b)`` seconds, for n training
rows of d features and C classes in batches of b: a fixed cost per step, the head's products (n d C) and
the batch products (n d b). It is one core's CPU time (more threads help large shapes only), and
augmenters cost more than ``none`` (SeA about twice): an estimate of the order of magnitude.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ..errors import ConfigError

#: Measured with ``python benchmarks/cost_model.py`` (process CPU time of one thread, stacks of 64; Intel
#: Xeon Sapphire Rapids KVM guest, torch 2.14.1, 2026-11-28): within 0.88x-1.19x of all six measured shapes.
#: The digits default costs 0.22 ms per configuration-epoch: 2,000,000 configurations x 100 epochs = 12 h.
GAMMA = 5.3e-05  # seconds per step and configuration
ALPHA = 3.5e-11  # seconds per row x feature x class
BETA = 2.2e-13  # seconds per row x feature x batch row

#: The embedded default (scikit-learn digits pixels): rows searched on (80% of 1,198), features, classes.
DIGITS_SHAPE = (958, 64, 10)


def config_epoch_seconds(n: int, d: int, C: int, b: int) -> float:
    """Seconds of one configuration-epoch on n rows x d features, C classes, batch b (the model above)."""
    return GAMMA * math.ceil(n / max(b, 1)) + n * d * (ALPHA * C + BETA * b)


def grid_size(values: Mapping[str, Sequence]) -> tuple[int, str]:
    """``(configurations, "lr 2,000 × wd 1,000")`` of the grid ``values`` spans, without expanding it."""
    n = math.prod(len(v) for v in values.values())
    factors = " × ".join(f"{k} {len(v):,}" for k, v in values.items() if len(v) > 1)
    return n, factors


def duration(seconds: float) -> str:
    """``11 h``, ``25 min``, ``3 days``, ``40 s``."""
    for unit, scale in (("days", 86400 * 2), ("h", 3600), ("min", 60)):
        if seconds >= scale:
            return f"{seconds / (86400 if unit == 'days' else scale):,.0f} {unit}"
    return f"{seconds:.0f} s"


def run_estimate(
    configs: int, epochs: int, shapes: Sequence[tuple[int, int, int] | None], batch_size: int, device: str
) -> str:
    """``2,000,001 configurations × 100 epochs ≈ 11 h here`` (the time only where every source's shape is
    known and the device is this machine's CPU)."""
    text = f"{configs:,} configurations × {epochs:,} epochs"
    if device.startswith("cuda") or not shapes or any(s is None for s in shapes):
        return text
    per_source = sum(config_epoch_seconds(n, d, C, batch_size) for n, d, C in shapes) / len(shapes)
    return f"{text} ≈ {duration(configs * epochs * per_source)} here"


def check_grids(
    grids: Sequence[tuple[str, Mapping[str, Sequence]]],
    max_configs: int,
    sources: int,
    seeds: int,
    epochs: int,
    shapes,
    batch_size: int,
    device: str,
) -> None:
    """Refuse a run that would train more than ``max_configs`` configurations (every row's grid and its refit,
    on every source and seed), counted by multiplication before any grid is expanded.

    ``grids``: (row label, NAME -> values) of every row; ``shapes``: a callable returning each source's
    (rows, features, classes) or None (only called when the run is too large).
    """
    sizes = [(label, *grid_size(values)) for label, values in grids]
    per_source_seed = sum(size + (1 if size > 1 else 0) for _, size, _ in sizes)  # the searches and refits
    total = per_source_seed * sources * seeds
    if total <= max_configs:
        return
    label, n, factors = max(sizes, key=lambda s: s[1])
    largest = f"; row {label} searches {n:,} ({factors})" if factors else ""
    raise ConfigError(
        f"the run would train {total:,} configurations ({len(sizes)} row(s) × {sources:,} source(s) × "
        f"{seeds:,} seed(s){largest}), more than --max-configs {max_configs:,}: "
        f"{run_estimate(total, epochs, shapes(), batch_size, device)}",
        f"search fewer values, or pass --max-configs {total} to run it",
    )
