"""The SQLite results store: round trips, idempotent inserts, crashes and concurrent writers."""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from featbench.bench.store import DB_NAME, Store
from featbench.errors import ConfigError, DataError
from featbench.records import REFIT, SEARCH, CellRecord, ConfigRecord, EpochLog


def _config(key: str, phase: str = SEARCH, val: float | None = 80.0, correct=None, epochs=()) -> ConfigRecord:
    return ConfigRecord(key=key, source_id="src", augmenter="sea", loss="hinge", seed=0, phase=phase,
                        hp={"lr": 0.5, "eta": 0.4}, val=val if phase == SEARCH else None, test=75.5, top1=75.5,
                        mean_per_class=74.0, diverged=False, seconds=0.25, stack_size=4, device="cpu",
                        correct=correct, epochs=tuple(epochs))


def _store_with_source(directory) -> Store:
    store = Store(str(directory))
    store.record_source("src", "digits", "S+M", "top1", 3, np.array([0, 1, 2, 1, 0]), ["k1", "k2"], ["a.npz"])
    return store


def test_config_round_trip_keeps_nan_bits_and_epochs(tmp_path):
    with _store_with_source(tmp_path) as store:
        run = store.begin_run({"aug": ["sea"]}, {"featbench": "x"}, ["c1"])
        correct = np.array([True, False, True, True, False])
        recs = [_config("a", val=float("nan"), epochs=[EpochLog(0, 50.0, 40.0), EpochLog(1, 60.0, float("nan"))]),
                _config("b", phase=REFIT, correct=correct)]
        assert store.record_configs(run, recs) == 2
        got = store.configs(["a", "b", "missing"], with_epochs=True)
    assert set(got) == {"a", "b"}
    assert math.isnan(got["a"].val) and got["a"].test == 75.5 and got["a"].hp == {"lr": 0.5, "eta": 0.4}
    assert got["a"].epochs[0] == EpochLog(0, 50.0, 40.0) and math.isnan(got["a"].epochs[1].test)
    assert got["b"].val is None and got["b"].correct.tolist() == correct.tolist()


def test_insert_is_idempotent_and_reopen_sees_everything(tmp_path):
    with _store_with_source(tmp_path) as store:
        run = store.begin_run({}, {}, [])
        assert store.record_configs(run, [_config("a"), _config("b")]) == 2
        assert store.record_configs(run, [_config("a"), _config("c")]) == 1
    with Store(str(tmp_path), create=False) as store:
        assert store.count_configs() == 3
        assert store.integrity_ok()


def test_cell_round_trip_and_run_plan(tmp_path):
    with _store_with_source(tmp_path) as store:
        run = store.begin_run({"seeds": 1}, {"torch": "t"}, ["c2", "c1"])
        store.record_configs(run, [_config("s1"), _config("r", phase=REFIT, correct=np.array([1, 1, 0, 0, 1], bool))])
        cell = CellRecord(key="c1", source_id="src", dataset="digits", backbones="S+M", row="sea", augmenter="sea",
                          loss="hinge", seed=0, metric="top1", value=75.5, top1=75.5, mean_per_class=74.0,
                          hp={"lr": 0.5}, val_value=80.0, grid_size=1, diverged_configs=0, seconds=0.5, refit_key="r")
        assert store.record_cell(run, cell, ["s1", "r"])
        assert not store.record_cell(run, cell, ["s1", "r"])
        store.finish_run(run, "finished")
        assert store.planned_cells(run) == ["c2", "c1"]
        (got,) = store.cells(store.planned_cells(run))
        assert store.done_cells(["c1", "c2"]) == {"c1"}
        assert store.cell_config_keys("c1") == ["s1", "r"]
        rec = store.run()
    assert got.key == "c1" and got.test_y.tolist() == [0, 1, 2, 1, 0] and got.correct.tolist() == [1, 1, 0, 0, 1]
    assert got.cache_keys == ("k1", "k2") and got.hp == {"lr": 0.5}
    assert rec.status == "finished" and rec.spec == {"seeds": 1} and rec.cells_planned == 2


def test_in_memory_store_needs_no_directory():
    with Store(None) as store:
        store.record_source("src", "d", "", "top1", 2, np.array([0, 1]), [], [])
        run = store.begin_run({}, {}, [])
        assert store.record_configs(run, [_config("a")]) == 1


def test_missing_or_foreign_or_newer_store_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no featbench results store"):
        Store(str(tmp_path), create=False)
    (tmp_path / DB_NAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DataError, match="not a readable featbench results store"):
        Store(str(tmp_path))
    other = tmp_path / "newer"
    other.mkdir()
    conn = sqlite3.connect(str(other / DB_NAME))
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ConfigError, match="newer featbench"):
        Store(str(other))


def _writer(directory: str, prefix: str, n: int) -> None:
    with Store(directory) as store:
        run = store.begin_run({"who": prefix}, {}, [])
        for i in range(n):
            store.record_configs(run, [_config(f"{prefix}{i}-{j}") for j in range(3)])


def test_two_processes_writing_the_same_directory(tmp_path):
    _store_with_source(tmp_path).close()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), p, 60)) for p in ("x", "y")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with Store(str(tmp_path)) as store:
        assert store.integrity_ok()
        assert store.count_configs() == 2 * 60 * 3
        assert len(store.runs()) == 2


def test_kill_9_mid_write_keeps_every_committed_transaction(tmp_path):
    _store_with_source(tmp_path).close()
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_store import _config
        from featbench.bench.store import Store
        store = Store({str(tmp_path)!r})
        run = store.begin_run({{}}, {{}}, [])
        i = 0
        while True:
            store.record_configs(run, [_config(f"k{{i}}-{{j}}") for j in range(5)])
            i += 1
            if i == 3:
                print("ready", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    with Store(str(tmp_path)) as store:
        assert store.integrity_ok()
        n = store.count_configs()
        assert n >= 15 and n % 5 == 0  # whole transactions only
        keys = {f"k{i}-{j}" for i in range(n // 5) for j in range(5)}
        assert set(store.configs(keys)) == keys
