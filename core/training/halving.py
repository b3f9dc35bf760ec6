"""Successive halving over a cell's grid (``featbench run --search halving``).

Every configuration trains for the first rung of epochs; the best ``keep`` fraction on validation (the
protocol's metric, first on ties, diverged never) continues to the next rung, and so on to the full
epoch count. Rungs are epochs of one full-length run: the learning-rate-free schedules that depend on
the epoch count (ISDA's strength) see ``settings.epochs``, and a survivor goes on from its own
weights, momentum, divergence flag, RNG streams (data order, the augmenter's shared and per-head
streams) and augmenter state (:meth:`FeatureAugmenter.head_state`). So a survivor's weights at the
last rung equal those of a full-length run of its configuration (tested, float64), and its validation
score equals the grid search's.

Default schedule (Hyperband's brackets, eta = 3, with a floor on the first rung): ``keep = 1/3``; with N
configurations and E epochs, m = 1 + floor(log3 min(N, 9)) rungs at epochs E/3^(m-1), ..., E/3, E, so the
first rung is never shorter than E/9 (3 rungs for N >= 9, 2 for N = 3..8). Hyperband's most aggressive
bracket would start at E/3^floor(log3 N) (1 epoch of 30 for N >= 27), but rankings that early are
unreliable at the constant learning rates of the paper's grid: on the 576-configuration SeA grid of
``benchmarks/search_fidelity.py`` a first rung of 1 epoch dropped the grid's choice and lost 1.2 points
(significant), while with a first rung of E/9 no SeA cell differed significantly from the grid. The search
then costs about N E (1/9 + 2/27 + 2/27) = 0.26 N E configuration-epochs (3.9x fewer than the grid) for
N >= 9. Its wall time shrinks less: a K-stack's epoch also has a part its heads share (2.5x fewer stack-epochs
for 144 configurations in stacks of 64), and halving pays fixed costs the grid does not (building each rung's
stacks; encoding, storing and restoring head states between rungs), a few hundredths of a second a search,
which matter only on searches shorter than a second (``benchmarks/search_fidelity.py`` measures all three,
``--stack-cost`` the shared part).

This module holds the schedule, the selection, and the per-head continuation state; the runner
schedules one job per (rung, K-stack) and records each head's state in the results store between rungs.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Sequence

import numpy as np

from .trainer import HeadRun

DEFAULT_KEEP = 1.0 / 3.0


#: The default schedule's first rung is at least E / MIN_FIRST_RUNG_DIVISOR epochs (the module docstring says why).
MIN_FIRST_RUNG_DIVISOR = 9


def default_rungs(epochs: int, n_configs: int, keep: float = DEFAULT_KEEP) -> tuple[int, ...]:
    """Rung epochs ``E / eta^(m-1), ..., E / eta, E`` with ``eta = 1 / keep`` and
    m = 1 + floor(log_eta min(N, MIN_FIRST_RUNG_DIVISOR)), rounded, at least 1 epoch apart (fewer rungs when
    E is too small); so the first rung is at least ``E / MIN_FIRST_RUNG_DIVISOR`` epochs."""
    eta = 1.0 / keep
    reach = min(max(n_configs, 1), MIN_FIRST_RUNG_DIVISOR)
    m = 1 + math.floor(math.log(reach) / math.log(eta) + 1e-9)
    out: list[int] = []
    for j in range(m - 1, -1, -1):
        e = max(1, round(epochs / eta**j))
        if not out or e > out[-1]:
            out.append(e)
    if out[-1] != epochs:
        out.append(epochs)
    return tuple(out)


def check_rungs(rungs: Sequence[int], epochs: int) -> tuple[int, ...]:
    """Explicit rungs: strictly increasing epochs in 1..E; E is appended when missing."""
    from ..errors import ConfigError

    r = tuple(int(v) for v in rungs)
    if any(v < 1 or v > epochs for v in r) or any(b <= a for a, b in itertools.pairwise(r)):
        raise ConfigError(
            f"--halving-rungs {','.join(map(str, r))} must be increasing epochs between 1 and --epochs {epochs}",
            f"e.g. --halving-rungs {max(1, epochs // 9)},{max(1, epochs // 3)},{epochs}",
        )
    return r if r and r[-1] == epochs else (*r, epochs)


def survivors(val_scores: Sequence[float], keep: float) -> list[int]:
    """Indices (ascending) of the best ``ceil(keep * n)`` scores; ties go to the lower index; NaN
    (diverged) never survives, so fewer survive when fewer are finite."""
    n = len(val_scores)
    want = max(1, math.ceil(keep * n - 1e-9))
    finite = [i for i, s in enumerate(val_scores) if s is not None and not np.isnan(s)]
    best = sorted(finite, key=lambda i: (-val_scores[i], i))[:want]
    return sorted(best) if best else [0]


# ---- per-head continuation state ----------------------------------------------------------------


def head_states(run: HeadRun) -> list[dict]:
    """One dict per head (configuration order) that :func:`resume` continues from, exactly."""
    out = []
    for st in run.stacks:
        rng = st.augmenter.run.rng
        for k in range(st.weight.shape[0]):
            extra_x = None if st.pool.extra_x is None else st.pool.extra_x[k].cpu().clone()
            out.append(
                {
                    "epoch": run.epoch,
                    "step": run.step,
                    "unaugmented": run.unaugmented,
                    "order": run.order.get_state(),
                    "weight": st.weight[k].detach().cpu().clone(),
                    "momentum": st.momentum_buf[k].detach().cpu().clone(),
                    "lr": st.lr[k].detach().cpu().clone(),
                    "alive": bool(st.alive[k]),
                    "rng_shared": rng.shared.get_state(),
                    "rng_head": rng.for_head(k).get_state(),
                    "extra_x": extra_x,
                    "extra_y": None if st.pool.extra_y is None else st.pool.extra_y.cpu().clone(),
                    "augmenter": st.augmenter.head_state(k),
                }
            )
    return out


def _same(states: Sequence[dict], name: str):
    import torch

    first = states[0][name]
    for s in states[1:]:
        v = s[name]
        same = (v is None and first is None) or (
            v is not None
            and first is not None
            and (torch.equal(v, first) if isinstance(v, torch.Tensor) else v == first)
        )
        if not same:
            raise RuntimeError(
                f"heads continued in one stack disagree on their shared {name}; "
                "only configurations of one structural group and one seed can share a stack"
            )
    return first


def restore(run: HeadRun, states: Sequence[dict]) -> HeadRun:
    """Make the fresh ``run`` go on from ``states`` (one per configuration of the run, from :func:`head_states`
    of runs with the same data, seed and settings); returns it."""
    import torch

    run.order.set_state(_same(states, "order"))
    run.epoch, run.step, run.unaugmented = (_same(states, n) for n in ("epoch", "step", "unaugmented"))
    start = 0
    with torch.no_grad():
        for st in run.stacks:
            part = states[start : start + st.weight.shape[0]]
            start += len(part)
            rng = st.augmenter.run.rng
            rng.shared.set_state(_same(part, "rng_shared"))
            for k, s in enumerate(part):
                st.weight[k].copy_(s["weight"])
                st.momentum_buf[k].copy_(s["momentum"])
                st.lr[k].copy_(s["lr"])
                st.alive[k] = s["alive"]
                rng.for_head(k).set_state(s["rng_head"])
            extra_y = _same(part, "extra_y")
            if extra_y is not None:
                st.pool.extra_x = torch.stack([s["extra_x"] for s in part]).to(st.pool.device)
                st.pool.extra_y = extra_y.to(st.pool.y.device)
            st.augmenter.load_head_states([s["augmenter"] for s in part])
    return run


def encode(state: dict) -> bytes:
    """A head state as bytes (:mod:`featbench.training.tensor_codec`: no pickle, read back by :func:`decode`)."""
    from . import tensor_codec

    return tensor_codec.dumps(state)


def decode(blob: bytes) -> dict:
    """The state :func:`encode` wrote (or, from a store written before the codec, ``torch.save``'s bytes,
    read with ``weights_only=True``)."""
    from . import tensor_codec

    if tensor_codec.is_encoded(blob):
        return tensor_codec.loads(blob)
    import torch

    return torch.load(io.BytesIO(blob), weights_only=True)
