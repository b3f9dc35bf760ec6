"""Successive halving: the schedule, the selection, and survivors that continue exactly like full runs."""

from __future__ import annotations

import pytest
import torch
from method_utils import VARIATIONS, configs_for, unit_blobs

from featbench.errors import ConfigError
from featbench.plugins.losses import SmoothedHinge
from featbench.training import halving
from featbench.training.trainer import TrainSettings, train_heads


def test_default_rungs_follow_powers_of_three_from_a_ninth_of_the_run():
    assert halving.default_rungs(90, 9) == (10, 30, 90)
    assert halving.default_rungs(90, 26) == (10, 30, 90)
    assert halving.default_rungs(30, 72) == (3, 10, 30)  # Hyperband's bracket would start at 1 epoch
    assert halving.default_rungs(100, 1728) == (11, 33, 100)  # the paper's grid and epochs
    assert halving.default_rungs(30, 5) == (10, 30)
    assert halving.default_rungs(30, 2) == (30,)  # too few configurations to halve: the grid
    assert halving.default_rungs(32, 576, keep=0.5) == (4, 8, 16, 32)  # eta = 2: the first rung is E/8 >= E/9
    assert halving.default_rungs(2, 81) == (1, 2)  # at least one epoch between rungs


def test_explicit_rungs_are_checked():
    assert halving.check_rungs([3, 10], 30) == (3, 10, 30)
    assert halving.check_rungs([3, 30], 30) == (3, 30)
    for bad in ([0, 10], [10, 3], [3, 40], [5, 5]):
        with pytest.raises(ConfigError):
            halving.check_rungs(bad, 30)


def test_survivors_keep_the_best_fraction_first_on_ties_and_never_nan():
    nan = float("nan")
    assert halving.survivors([50, 90, 70, 90, 10, 60], 1 / 3) == [1, 3]
    assert halving.survivors([50, 80, 80, 10], 1 / 3) == [1, 2]  # ceil(4/3) = 2
    assert halving.survivors([nan, 80, nan, nan, nan, nan], 1 / 2) == [1]
    assert halving.survivors([nan, nan], 1 / 2) == [0]


@pytest.mark.parametrize("name", sorted(VARIATIONS))
def test_a_survivor_continued_from_its_rung_equals_its_full_length_run(name):
    """Every built-in augmenter, float64: train 3 configurations to a rung (epoch 1 of 4), keep heads 0 and 2 (through
    the serialised state, in a new stack of 2), go on to the end: equal to the full 3-stack's heads."""
    from featbench.manager import load_plugins

    host = load_plugins(entry_points=[], local_modules=(), disabled=())
    aug = {e.name: e.obj for e in host.augmenters}[name]
    x, y = unit_blobs(n=70, d=12, C=3, seed=1)  # 70 = 2 * 32 + 6: a short last batch
    a, b = VARIATIONS[name]
    configs = configs_for(aug, None, {**a, "lr": 1.0}, {**b, "lr": 0.5}, {**b, "lr": 2.0, "wd": 1e-4})
    settings = TrainSettings(epochs=4, batch_size=32, seed=3, dtype="float64")
    loss = SmoothedHinge()
    full = train_heads(x, y, 3, aug, loss, configs, settings).weight
    run = halving.HeadRun(x, y, 3, aug, loss, configs, settings)
    run.advance(1)  # ME-ADA (every=1, 2 phases) then holds its generated rows for the second phase
    states = [halving.decode(halving.encode(s)) for s in halving.head_states(run)]
    keep = [0, 2]
    rest = halving.HeadRun(x, y, 3, aug, loss, [configs[k] for k in keep], settings)
    halving.restore(rest, [states[k] for k in keep])
    rest.advance(settings.epochs)
    got = rest.result()
    assert rest.epoch == 4
    for i, k in enumerate(keep):
        assert torch.allclose(got.weight[i], full[k], atol=1e-12, rtol=0), (
            name,
            k,
            float((got.weight[i] - full[k]).abs().max()),
        )


def test_resumed_stacks_must_share_their_streams():
    x, y = unit_blobs(n=40, d=8, C=3, seed=0)
    from featbench.plugins.baseline import NoAugmentation

    cfg = configs_for(NoAugmentation, None, {"lr": 1.0})
    runs = []
    for seed in (0, 1):
        r = halving.HeadRun(
            x, y, 3, NoAugmentation, SmoothedHinge(), cfg, TrainSettings(epochs=2, batch_size=16, seed=seed)
        )
        r.advance(1)
        runs.append(halving.head_states(r)[0])
    with pytest.raises(RuntimeError, match="disagree"):
        fresh = halving.HeadRun(x, y, 3, NoAugmentation, SmoothedHinge(), cfg * 2, TrainSettings(epochs=2, batch_size=16))
        halving.restore(fresh, runs)
