"""Faults: ``kill -9`` during extraction, a full disk under the feature cache, the results store and the
results files, and a configuration that diverges in the middle of a grid.

(``kill -9`` during training is ``test_cli_runner.test_kill_9_halfway_then_rerun_finishes_without_recomputing``.)
"""

from __future__ import annotations

import errno
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from cli_util import assert_clean_error, cache_debris, cli_env, featbench, files_under
from runner_util import make_features

from featbench.bench.store import Store
from featbench.cli import main
from featbench.inputs.cache import FeatureCache

EXTRACT = ["extract", "--backbones", "timm:test_resnet", "--dataset", "digits", "--workers", "0"]


def _main(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(argv), code, out, err)


def _entries(cache_dir: str) -> dict[str, np.ndarray]:
    """key -> features of every complete (verified) cache entry."""
    cache = FeatureCache(cache_dir)
    out = {}
    for meta in glob.glob(os.path.join(cache_dir, "features", "*", "*", "meta.json")):
        key = os.path.basename(os.path.dirname(meta))
        hit = cache.load(key)
        assert hit is not None, f"entry {key} does not verify"
        out[key] = np.array(hit.x)
    return out


def _progress(cache_dir: str) -> list[tuple[str, int]]:
    """(entry, chunks recorded) of every interrupted entry."""
    out = []
    for path in glob.glob(os.path.join(cache_dir, "features", "*", "*", "progress.json")):
        try:
            with open(path) as f:
                out.append((os.path.basename(os.path.dirname(path)), len(json.load(f)["chunks"])))
        except (OSError, ValueError):
            pass  # being replaced right now
    return out


# ---- kill -9 during extraction ------------------------------------------------------------------


def test_kill_9_during_extraction_then_rerun_resumes_and_matches(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FEATBENCH_CACHE_CHUNK_ROWS", "64")  # 15 resumable chunks in the 959 training images
    args = [*EXTRACT, "--image-size", "64", "--extract-batch-size", "16"]
    reference = str(tmp_path / "reference")
    assert _main(capsys, *args, "--quiet", "--cache-dir", reference).returncode == 0
    want = _entries(reference)
    assert len(want) == 3

    killed = str(tmp_path / "killed")
    proc = subprocess.Popen([sys.executable, "-m", "featbench", *args, "--quiet", "--cache-dir", killed],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env(FEATBENCH_CACHE_CHUNK_ROWS="64"))
    deadline = time.time() + 180
    while not any(n >= 2 for _, n in _progress(killed)) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGSTOP)  # freeze it, read what it left, then kill it in that state
    interrupted = _progress(killed)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert interrupted and proc.returncode == -signal.SIGKILL, "the extraction was not killed halfway"
    (key, chunks), = interrupted
    assert FeatureCache(killed).load(key) is None  # no meta.json: never taken for a complete entry
    assert not os.path.exists(os.path.join(killed, "features", key[:2], key, "meta.json"))

    res = _main(capsys, *args, "--cache-dir", killed)
    assert res.returncode == 0, res.stderr
    resumed = [line for line in res.stderr.splitlines() if "resuming at row" in line]
    assert len(resumed) == 1 and int(resumed[0].split("resuming at row ")[1].rstrip(")")) >= 64 * chunks
    got = _entries(killed)
    assert got.keys() == want.keys()
    for k in want:  # bit-identical to the uninterrupted extraction
        assert np.array_equal(got[k], want[k])
    assert cache_debris(killed) == []


# ---- a full disk --------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (grown later with ``grow``); skipped where this process may not mount one."""
    where = tmp_path / "disk"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root); test_full_disk_under_the_cache_simulated covers this path")

    def grow(size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True)

    try:
        yield where, grow
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_extraction_onto_a_really_full_disk_fails_cleanly_and_resumes(tmp_path, capsys, small_disk):
    """Before featbench allocated the memory map up front, this died of SIGBUS (exit 135, no message)."""
    disk, grow = small_disk
    args = [*EXTRACT, "--image-size", "32", "--quiet"]
    reference = str(tmp_path / "reference")
    assert _main(capsys, *args, "--cache-dir", reference).returncode == 0
    cache = str(disk / "cache")
    proc = featbench(*args, "--cache-dir", cache)
    assert_clean_error(proc, ("cannot write the feature cache entry", "No space left on device"), ("free some disk space",))
    done = _entries(cache)
    assert 0 < len(done) < 3 and cache_debris(cache) == []  # the finished splits verify; nothing half-written is left
    grow("4m")
    assert _main(capsys, *args, "--cache-dir", cache).returncode == 0
    want, got = _entries(reference), _entries(cache)
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)


def test_full_disk_under_the_cache_simulated(tmp_path, capsys, monkeypatch):
    """ENOSPC where a full disk reports it (allocating the memory map of a new entry)."""
    args = [*EXTRACT, "--quiet", "--cache-dir", str(tmp_path / "cache")]
    assert _main(capsys, *args, "--image-size", "32").returncode == 0
    before = _entries(str(tmp_path / "cache"))
    real = os.posix_fallocate

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    res = _main(capsys, *args, "--image-size", "40")
    assert_clean_error(res, ("cannot write the feature cache entry", "No space left on device"),
                       ("rerun the same command: everything finished is kept",))
    assert _entries(str(tmp_path / "cache")).keys() == before.keys() and cache_debris(str(tmp_path / "cache")) == []
    assert all(np.array_equal(_entries(str(tmp_path / "cache"))[k], before[k]) for k in before)
    monkeypatch.setattr(os, "posix_fallocate", real)
    assert _main(capsys, *args, "--image-size", "40").returncode == 0
    assert len(_entries(str(tmp_path / "cache"))) == 6


def _rows(out_dir: str) -> list[tuple]:
    with Store(out_dir, create=False) as store:
        assert store.integrity_ok()
        return store.conn.execute("SELECT key, hp, val, test, diverged, correct FROM configs ORDER BY key").fetchall()


def test_full_disk_under_the_results_store(tmp_path, capsys, monkeypatch):
    """SQLITE_FULL (what SQLite reports on a full disk), injected by capping the database at 2 more pages."""
    feats = make_features(str(tmp_path / "f.npz"), seed=0, n_train=120, n_test=60, dim=8)
    out = str(tmp_path / "run")
    base = ["run", "--features", feats, "--epochs", "3", "--quiet", "--stack-size", "1"]
    assert _main(capsys, *base, "--aug", "none", "--out", out).returncode == 0
    first = _rows(out)
    grid = [*base, "--aug", "none,sea", "--hp", "lr=0.5,1,2,4", "--hp", "wd=0,1e-5,1e-4", "--log-every", "1"]
    capped = Store._init_schema

    def init_capped(self):
        capped(self)
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        self.conn.execute(f"PRAGMA max_page_count = {pages + 2}")

    reference = str(tmp_path / "reference")
    assert _main(capsys, *grid, "--out", reference).returncode == 0  # the same grid, never interrupted
    total = len(_rows(reference))
    monkeypatch.setattr(Store, "_init_schema", init_capped)
    res = _main(capsys, *grid, "--out", out)
    assert_clean_error(res, ("cannot write the results store", "database or disk is full"), ("everything finished is kept",))
    monkeypatch.setattr(Store, "_init_schema", capped)
    after = _rows(out)
    assert 0 < len(after) - len(first) < total  # some of the new configurations were recorded, not all
    assert set(first) <= set(after)  # what was there is untouched
    done = _main(capsys, *grid, "--out", out)
    assert done.returncode == 0
    assert f"trained {len(first) + total - len(after)} configuration(s)" in done.stderr or "--quiet" in grid
    assert _main(capsys, "report", out, "--format", "csv").stdout == _main(capsys, "report", reference, "--format", "csv").stdout
    assert len(_rows(out)) == len(first) + total  # every configuration once: nothing recorded twice, nothing lost


def test_full_disk_when_writing_the_results_files(tmp_path, capsys, monkeypatch):
    feats = make_features(str(tmp_path / "f.npz"), seed=0, n_train=120, n_test=60, dim=8)
    out = str(tmp_path / "run")
    argv = ["run", "--features", feats, "--aug", "none", "--epochs", "2", "--quiet", "--out", out]
    assert _main(capsys, *argv).returncode == 0
    before = {n: open(os.path.join(out, n), "rb").read() for n in ("results.json", "table.txt")}
    real_open = open

    def open_on_full_disk(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if ".tmp" in str(file) and "w" in mode:
            def write(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            f.write = write
        return f

    monkeypatch.setattr("builtins.open", open_on_full_disk)
    res = _main(capsys, *argv, "--hp", "lr=0.5")
    monkeypatch.undo()
    assert_clean_error(res, ("cannot write results.json", "No space left on device"), ("free some disk space",))
    assert {n: open(os.path.join(out, n), "rb").read() for n in before} == before  # the old files, whole
    assert sorted(os.listdir(out)) == ["featbench.sqlite", "results.json", "table.txt"]  # no temporary file left


# ---- a configuration that diverges --------------------------------------------------------------


def test_a_diverging_configuration_is_reported_and_the_grid_goes_on(tmp_path):
    feats = make_features(str(tmp_path / "f.npz"), seed=0, n_train=120, n_test=60, dim=8)
    out = str(tmp_path / "run")
    proc = featbench("run", "--features", feats, "--aug", "none,sea", "--hp", "none.lr=0.5,1e30", "--hp", "sea.lr=1e30",
                     "--epochs", "5", "--quiet", "--out", out, "--format", "json")
    assert proc.returncode == 0, proc.stderr  # divergence is a result, not an error
    warnings = proc.stderr.strip().splitlines()
    assert warnings == [
        "featbench: warning: none on f (seed 0): 1 of 2 configuration(s) diverged (weights became NaN/Inf with lr=1e+30); "
        "they were left out of the selection (lower the learning rate)",
        "featbench: warning: sea on f (seed 0): training diverged (weights became NaN/Inf with lr=1e+30), so the cell has no "
        "result (lower the learning rate)"]
    data = json.loads(proc.stdout)  # strict JSON: a diverged value is null, not NaN
    rows = {r["augmenter"]: r for r in data["results"]}
    assert rows["none"]["value"] > 50 and rows["none"]["hp"]["lr"] == 0.5 and rows["none"]["diverged_configs"] == 1
    assert rows["sea"]["value"] is None and rows["sea"]["diverged_configs"] == 1
    assert [(d["augmenter"], d["phase"], d["hp"]["lr"]) for d in data["diverged"]] == [("none", "search", 1e30), ("sea", "refit", 1e30)]
    table = featbench("report", out).stdout
    assert "diverged" in table.splitlines()[3] and "2 configuration(s) diverged" in table
    with Store(out, create=False) as store:
        flags = sorted((json.loads(hp)["lr"], bool(d)) for hp, d in store.conn.execute("SELECT hp, diverged FROM configs"))
    assert flags == [(0.5, False), (0.5, False), (1e30, True), (1e30, True)]
    assert files_under(out) == ["featbench.sqlite", "results.json", "table.json"]
