"""featbench.bench.workload: the size of a grid by multiplication equals the expanded grid's, and the run
total that --max-configs limits equals the number of configurations the planned cells hold."""

from __future__ import annotations

import pytest

from featbench.bench.workload import config_epoch_seconds, duration, grid_size
from featbench.errors import ConfigError


@pytest.mark.parametrize(
    "values", [{}, {"lr": [0.5, 1.0, 2.0]}, {"lr": [1.0, 2.0], "wd": [0.0, 1e-5, 1e-4], "eta": [0.0, 0.4]}]
)
def test_grid_size_by_multiplication_equals_the_expanded_grid(values):
    from featbench.plugins.losses import SmoothedHinge
    from featbench.plugins.sea import SeA
    from featbench.training.grid import expand_grid, hparams_for

    n, _ = grid_size(values)
    assert n == len(expand_grid(hparams_for(SmoothedHinge, SeA), values))


def test_the_limit_counts_exactly_the_configurations_the_cells_hold(tmp_path):
    from runner_util import make_features

    from featbench.bench.plan import make_plan, plan_cells, plan_rows
    from featbench.manager import load_plugins
    from featbench.run import build_spec

    feats = [make_features(str(tmp_path / f"{i}.npz"), seed=i) for i in range(2)]
    flags = {"features": feats, "aug": "none,sea", "hp": ["lr=0.5,1", "eta=0,0.4,0.8"], "seeds": 3}
    host = load_plugins(entry_points=[])
    spec = build_spec(flags)
    cells = plan_cells(spec, make_plan(spec, host), "cpu", {})
    total = sum(len(c.configs) + (1 if len(c.configs) > 1 else 0) for c in cells)  # each cell's search and refit
    assert total == 2 * 3 * ((2 + 1) + (6 + 1))
    plan_rows(build_spec({**flags, "max_configs": total}), host)  # exactly at the limit: accepted
    with pytest.raises(ConfigError, match=f"would train {total} configurations .* more than --max-configs {total - 1}"):
        plan_rows(build_spec({**flags, "max_configs": total - 1}), host)


def test_cost_model_and_durations():
    assert config_epoch_seconds(958, 64, 10, 256) == pytest.approx(0.22e-3, rel=0.2)  # benchmarks/README.md
    assert [duration(s) for s in (40, 1500, 40_000, 400_000)] == ["40 s", "25 min", "11 h", "5 days"]
