"""Successive halving through the runner: rung records, survivors scored like the grid, resume at a rung."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def plugin_host():
    from runner_util import host, single_thread

    undo = single_thread()
    yield host()
    undo()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from runner_util import feature_grid

    return feature_grid(str(tmp_path_factory.mktemp("features")), datasets=("d1",), backbones=("A",), val=30)


def _spec(files, **kw):
    from featbench.bench.spec import RunSpec, check

    base = {
        "aug": ("sea",),
        "datasets": ("d1",),
        "backbones": ("A",),
        "feature_files": files,
        "hp": {"lr": (0.5, 1.0, 2.0), "eta": (0.2, 0.4, 0.8)},
        "epochs": 9,
        "batch_size": 32,
        "search": "halving",
    }
    return check(RunSpec(**{**base, **kw}))


def _recorded(directory, cells):
    """Every configuration record the cells chose from, and the continuation states still stored."""
    from featbench.bench.store import Store

    with Store(directory) as store:
        recs = store.configs([k for c in cells for k in store.cell_config_keys(c.key)])
        return recs, store.head_states(list(recs))


def test_halving_records_each_rung_and_its_survivors_score_like_the_grid(files, plugin_host, tmp_path):
    from test_runner import _run

    from featbench.records import REFIT

    _, (cell,), _ = _run(_spec(files), plugin_host, str(tmp_path / "h"))
    recs, states = _recorded(str(tmp_path / "h"), [cell])
    _, grid_cells, _ = _run(_spec(files, search="grid"), plugin_host, str(tmp_path / "g"))
    grid_recs, _ = _recorded(str(tmp_path / "g"), grid_cells)
    rungs = {}
    for r in recs.values():
        if r.phase != REFIT:
            rungs.setdefault(r.rung_epoch, []).append(r)
    assert {e: len(v) for e, v in rungs.items()} == {1: 9, 3: 3, 9: 1}  # 9 configurations, keep 1/3
    survivors_3 = sorted(rungs[1], key=lambda r: -r.val)[:3]  # no ties among the first rung's scores here
    assert sorted(map(str, (r.hp for r in survivors_3))) == sorted(map(str, (r.hp for r in rungs[3])))
    by_hp = {str(r.hp): r for r in grid_recs.values() if r.phase != REFIT}
    (last,) = rungs[9]
    assert (last.val, last.test) == (by_hp[str(last.hp)].val, by_hp[str(last.hp)].test)  # a full-length run
    assert cell.hp == last.hp and cell.val_value == last.val and cell.grid_size == 9
    assert all(np.isnan(r.test) and np.isfinite(r.val) for e in (1, 3) for r in rungs[e])  # test only at the end
    assert states == {}  # continuation states are dropped once the cell is finished
    from featbench.reporting.plot import _search, fully_trained

    search = _search(cell, {cell.key: list(recs)}, recs)
    assert len(search) == 9 + 3 + 1 and fully_trained(search) == [last]  # plots show test of full-length runs


def test_an_interrupted_halving_run_resumes_at_the_rung(files, plugin_host, tmp_path):
    from test_runner import _run, _StopAfter

    from featbench.bench.store import Store

    spec = _spec(files, stack_size=3)  # 3 stacks in the first rung, 1 in the second
    _, (full,), _ = _run(spec, plugin_host, str(tmp_path / "full"))
    full_recs, _ = _recorded(str(tmp_path / "full"), [full])
    d = str(tmp_path / "run")
    first, cells, after = _run(spec, plugin_host, d, listener=_StopAfter(4))  # the first rung's 3 stacks + the second's
    rung2 = [k for k in full_recs if full_recs[k].rung_epoch == 3]
    with Store(d) as store:
        assert set(store.head_states(rung2)) == set(rung2)  # the survivors' states wait for the next rung
    assert first.interrupted and not cells and after == 9 + 3
    second, (cell,), _ = _run(spec, plugin_host, d)
    recs, states = _recorded(d, [cell])
    assert second.configs_trained == 1 + 1  # the last rung and the refit only
    assert (cell.value, cell.hp, cell.val_value) == (full.value, full.hp, full.val_value)
    assert np.array_equal(cell.correct, full.correct) and set(recs) == set(full_recs) and states == {}


def test_a_schema_1_store_gains_the_rung_column_and_reads_read_only(tmp_path):
    """Stores written before successive halving (schema 1, no rung_epoch) are read, and upgraded on write."""
    import sqlite3

    from featbench.bench.store import Store

    d = str(tmp_path / "old")
    with Store(d):
        pass
    conn = sqlite3.connect(f"{d}/featbench.sqlite")
    conn.execute("DROP TABLE head_states")
    conn.execute("ALTER TABLE configs DROP COLUMN rung_epoch")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with Store(d, read_only=True) as store:
        assert store.configs(["nothing"]) == {}
    with Store(d) as store:
        assert "rung_epoch" in store._config_columns() and store.head_states(["nothing"]) == {}
