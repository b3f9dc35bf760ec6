"""``--executor ray`` on a real Ray cluster started on this machine: the same numbers as the local
executor, a worker killed mid-run loses and duplicates nothing, failures are bounded and reported, and
the CLI reaches a cluster by ``--ray-address`` (or says in one line that it cannot).

One cluster serves the whole module: ``ray.init(num_cpus=2)`` in this process (the driver of the
in-process runs); CLI subprocesses join it as further drivers through its GCS address. (Ray 2.60 binds
its servers to the node's own IP even when asked for 127.0.0.1, and turns on token authentication; the
token it writes to ~/.ray is what the subprocesses use.)
"""

from __future__ import annotations

import glob
import logging
import os
import subprocess
import sys

import attrs
import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray executor's tests need Ray: pip install 'featbench[ray]'")

from runner_util import feature_grid, single_thread  # noqa: E402

from featbench.bench.driver import Runner  # noqa: E402
from featbench.bench.progress import Listener  # noqa: E402
from featbench.bench.spec import RunSpec, check  # noqa: E402
from featbench.bench.store import Store  # noqa: E402
from featbench.cli import main  # noqa: E402
from featbench.manager import load_plugins  # noqa: E402
from featbench.reporting.tables import build, render  # noqa: E402

PLUGIN = '''"""Test augmenters: the clean baseline, except that building one may kill its process or raise."""
import os
import signal

from featbench import hookimpl
from featbench.plugins.baseline import NoAugmentation

ARMED = {armed!r}  # while this file exists, the first process to take it (remove it) dies
CRASH_LOG = {crash_log!r}
BROKEN_LOG = {broken_log!r}
DOOMED_LOG = {doomed_log!r}


def _log(path):
    with open(path, "a") as f:
        f.write(f"{{os.getpid()}}\\n")


class Crashy(NoAugmentation):
    def __init__(self, run):
        super().__init__(run)
        try:
            os.remove(ARMED)  # atomic: exactly one process wins
        except FileNotFoundError:
            return
        _log(CRASH_LOG)
        os.kill(os.getpid(), signal.SIGKILL)


class Broken(NoAugmentation):
    def __init__(self, run):
        _log(BROKEN_LOG)
        raise RuntimeError("broken augmenter (a deterministic test failure)")


class Doomed(NoAugmentation):
    def __init__(self, run):
        _log(DOOMED_LOG)
        os.kill(os.getpid(), signal.SIGKILL)


@hookimpl
def register_augmenters(registry):
    registry.add("crashy", Crashy)
    registry.add("broken", Broken)
    registry.add("doomed", Doomed)
'''


@pytest.fixture(scope="module")
def cluster():
    """A 2-CPU Ray cluster for the module; yields its address for ``--ray-address``."""
    undo = single_thread()  # the local reference runs (the ray ones set their threads per task)
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 << 20, logging_level=logging.WARNING)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    undo()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("ray")
    files = feature_grid(str(d), datasets=("d1", "d2"), backbones=("A", "B"), n_train=120, n_test=80, dim=8)
    paths = {k: str(d / f"{k}.txt") for k in ("armed", "crash_log", "broken_log", "doomed_log")}
    plugin = d / "ray_test_plugin.py"
    plugin.write_text(PLUGIN.format(**paths))
    host = load_plugins(entry_points=[], local_modules=[str(plugin)], strict=True)
    return {"dir": d, "files": files, "plugin": str(plugin), "host": host, **paths}


def _spec(env, **kw) -> RunSpec:
    base = dict(aug=("none", "sea"), datasets=("d1", "d2"), backbones=("A", "B"), combos=("A+B",), feature_files=env["files"],
                hp={"lr": (0.5, 2.0), "eta": (0.4, 0.8)}, epochs=3, batch_size=32, seeds=2, stack_size=2, threads=1)
    base.update(kw)
    return check(RunSpec(**base))


def _run(env, directory, listener=None, **kw):
    spec = _spec(env, **kw)
    with Store(str(directory)) as store:
        outcome = Runner(spec, env["host"], store, device="cpu", listener=listener).run()
    return outcome


def _contents(directory):
    """Everything a run directory's store says about results: its tables, and every configuration."""
    with Store(str(directory)) as store:
        run = store.run()
        cells = store.cells(store.planned_cells(run.id))
        tables = {fmt: render(build(cells, layout="both"), fmt) for fmt in ("table", "csv", "latex")}
        keys = [r[0] for r in store.conn.execute("SELECT key FROM configs ORDER BY key")]
        recs = store.configs(keys, with_epochs=True)
        configs = {k: (r.phase, r.seed, r.augmenter, tuple(sorted(r.hp.items())), r.val, r.test, r.top1, r.mean_per_class,
                       r.diverged, r.stack_size, None if r.correct is None else r.correct.tobytes())
                   for k, r in recs.items()}
        rows = store.conn.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM configs").fetchone()
        cell_rows = store.conn.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM cells").fetchone()
    return {"tables": tables, "configs": configs, "rows": rows, "cells": cell_rows, "status": run.status,
            "versions": run.versions, "values": [(c.row, c.dataset, c.seed, c.value, c.hp) for c in cells]}


def test_ray_gives_the_local_executor_numbers(cluster, env, tmp_path):
    """2 sources x 2 rows x 2 seeds, with grid chunks (stack_size 2) and refits after them."""
    local = _run(env, tmp_path / "local")
    remote = _run(env, tmp_path / "ray", executor="ray")
    assert not local.failures and not remote.failures
    assert local.cells_finished == remote.cells_finished == 8
    # none: 2 lr values in one chunk + refit; sea: 2 x 2 in two chunks + refit; per source and seed
    assert local.configs_trained == remote.configs_trained == 4 * (3 + 5)
    a, b = _contents(tmp_path / "local"), _contents(tmp_path / "ray")
    assert a["tables"] == b["tables"]
    assert a["configs"] == b["configs"]  # every metric of every configuration, bit for bit
    assert a["values"] == b["values"]
    assert b["rows"] == (32, 32) and b["cells"] == (8, 8)
    assert b["status"] == "finished" and b["versions"]["executor"] == "ray" and b["versions"]["threads"] == 1


class _ArmAfter(Listener):
    """Arms the crash (creates the file the first Crashy to be built removes, then dies) after ``n`` results."""

    def __init__(self, path, n):
        self.path, self.n, self.done = path, n, 0

    def job_finished(self, job, new_configs):
        self.done += 1
        if self.done == self.n:
            open(self.path, "w").close()


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(cluster, env, tmp_path):
    kw = dict(aug=("none", "crashy"), hp={"lr": (0.5, 2.0)})
    local = _run(env, tmp_path / "local", **kw)  # never armed: nothing dies
    listener = _ArmAfter(env["armed"], 3)
    remote = _run(env, tmp_path / "ray", listener=listener, executor="ray", ray_retries=2, **kw)
    with open(env["crash_log"]) as f:
        (pid,) = [int(line) for line in f]  # exactly one worker died, after 3 results were recorded
    assert pid != os.getpid() and not os.path.exists(env["armed"])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # and it is gone
    assert not remote.failures and remote.cells_finished == local.cells_finished == 8
    a, b = _contents(tmp_path / "local"), _contents(tmp_path / "ray")
    assert a["configs"] == b["configs"] and a["tables"] == b["tables"]
    assert b["rows"] == a["rows"] == (24, 24) and b["cells"] == (8, 8)  # each configuration recorded once
    assert b["status"] == "finished"


def _lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().split()


def test_failing_jobs_are_bounded_reported_and_the_rest_recorded(cluster, env, tmp_path):
    kw = dict(aug=("none", "broken", "doomed"), datasets=("d1",), seeds=1, hp={"lr": (0.5, 2.0)}, executor="ray", ray_retries=1)
    out = tmp_path / "ray"
    outcome = _run(env, out, **kw)
    assert len(_lines(env["broken_log"])) == 1  # an exception: deterministic, not retried
    assert len(_lines(env["doomed_log"])) == 2  # a dead worker: retried once (--ray-retries 1), then failed
    assert outcome.cells_finished == 1 and outcome.cells_failed == 2
    errors = sorted(f.error for f in outcome.failures.values())
    assert errors[0] == "RuntimeError: broken augmenter (a deterministic test failure)"
    assert errors[1].startswith(("WorkerCrashedError", "ActorDiedError", "NodeDiedError")), errors[1]
    assert not any(f.user_error for f in outcome.failures.values())
    got = _contents(out)
    assert got["status"] == "failed" and got["rows"] == (3, 3) and got["cells"] == (1, 1)  # the none cell, kept
    assert [v[0] for v in got["values"]] == ["none"]
    again = _run(env, out, **{**kw, "aug": ("none", "broken")})  # resumes: only the failed cell is tried again
    assert again.cells_skipped == 1 and again.configs_trained == 0 and again.cells_failed == 1
    assert len(_lines(env["broken_log"])) == 2


SUITE = """
aug: [none, sea]
datasets: [d1, d2]
backbones: [A, B]
combos: [A+B]
feature_files:
  d1: {{A: {d1A}, B: {d1B}}}
  d2: {{A: {d2A}, B: {d2B}}}
hp: {{lr: [0.5, 2], eta: [0.4, 0.8]}}
epochs: 3
batch_size: 32
seeds: 2
threads: 1
"""


def test_cli_runs_a_suite_on_a_cluster_by_address(cluster, env, tmp_path, capsys):
    f = env["files"]
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE.format(d1A=f["d1"]["A"], d1B=f["d1"]["B"], d2A=f["d2"]["A"], d2B=f["d2"]["B"]))
    argv = ["run", "--config", str(suite), "-p", env["plugin"], "--aug", "none,sea,broken", "--quiet"]
    code = main([*argv, "--out", str(tmp_path / "local")])
    local_out, local_err = capsys.readouterr()
    assert code == 1 and "featbench: error: 4 cell(s) failed: RuntimeError: broken augmenter" in local_err
    proc = subprocess.run([sys.executable, "-m", "featbench", *argv, "--out", str(tmp_path / "ray"), "--executor", "ray",
                           "--ray-address", cluster], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == local_out  # the same tables, printed by a driver in another process
    errors = [line for line in proc.stderr.splitlines() if line.startswith("featbench: error:")]
    assert errors == [line for line in local_err.splitlines() if line.startswith("featbench: error:")]
    assert "Traceback" not in proc.stderr
    a, b = _contents(tmp_path / "local"), _contents(tmp_path / "ray")
    assert a["configs"] == b["configs"] and b["rows"] == (32, 32)


def test_cli_names_an_unreachable_address_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "featbench", "run", "--aug", "none", "--executor", "ray",
                           "--ray-address", "127.0.0.1:1", "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("featbench: error: no Ray cluster reachable at 127.0.0.1:1")
    assert "ray start --head" in proc.stderr


def test_tasks_no_node_can_hold_are_refused(cluster, env):
    from featbench.bench.executors.ray import RayConfig, RayExecutor
    from featbench.bench.jobs import LoadOptions
    from featbench.errors import ConfigError

    with pytest.raises(ConfigError, match="--threads 3: no node of the Ray cluster has that many CPUs \\(largest: 2\\)"):
        RayExecutor(env["host"], LoadOptions(device="cpu"), RayConfig(cpus=3))


def test_results_travel_as_plain_picklable_values(env):
    """What crosses the process boundary: jobs and feature sets to workers, results and plugin recipes back."""
    import pickle

    from featbench.bench.jobs import execute_job, load_source

    with Store(None) as store:
        runner = Runner(_spec(env, datasets=("d1",), seeds=1), env["host"], store, device="cpu")
    cell = runner.cells[-1]
    job = runner._job(cell, "search", [cell.configs[0]], [cell.search_keys[0]])
    fs = pickle.loads(pickle.dumps(load_source(job.source, env["host"], runner.load)))
    result = execute_job(job, fs, env["host"])
    back = pickle.loads(pickle.dumps(result))
    assert back.job == job and back.outcomes == result.outcomes and back.source == result.source
    assert np.array_equal(back.source.test_y, fs.test_y)
    assert pickle.loads(pickle.dumps(env["host"].recipe)).load().list_augmenters() == env["host"].list_augmenters()


DATASET_PLUGIN = '''"""digits, logging how many feature-cache entries are complete each time a process loads it."""
import glob
import os

from featbench import hookimpl
from featbench.api import DatasetSpec
from featbench.config import load_registry
from featbench.plugins.datasets import catalog_entries, load_digits

CACHE = {cache!r}
LOG = {log!r}


def _load(root):
    done = len(glob.glob(os.path.join(CACHE, "features", "*", "*", "meta.json")))
    with open(LOG, "a") as f:
        f.write(f"{{done}}\\n")
    return load_digits(next(e for e in catalog_entries(load_registry()) if e.name == "digits"), root)


@hookimpl
def register_datasets(registry):
    registry.add("logged-digits", DatasetSpec(load=_load))
'''


def test_image_sources_are_extracted_once_per_backbone_and_shared(cluster, tmp_path):
    """Data set x backbone sources: A, B and A+B share (data set, backbone) pairs, so A+B is loaded only
    once A and B are in the cache (even with room to load all three at once); same numbers as local."""
    from featbench.bench.executors.ray import RayConfig, RayExecutor
    from featbench.bench.jobs import LoadOptions

    cache, log = tmp_path / "cache", tmp_path / "loads.txt"
    plugin = tmp_path / "logged_digits.py"
    plugin.write_text(DATASET_PLUGIN.format(cache=str(cache), log=str(log)))
    host = load_plugins(entry_points=[], local_modules=[str(plugin)], strict=True)
    spec = check(RunSpec(aug=("none", "sea"), datasets=("logged-digits",), backbones=("timm:test_resnet", "timm:test_efficientnet"),
                         combos=("all",), image_size=32, hp={"lr": (0.5,), "eta": (0.4,)}, epochs=2, threads=1,
                         cache_dir=str(cache), executor="ray"))
    load = LoadOptions(cache_dir=str(cache), device="cpu", image_size=32)
    executor = RayExecutor(host, load, RayConfig(max_open_sources=3))
    with Store(str(tmp_path / "ray")) as store:
        remote = Runner(spec, host, store, device="cpu", load=load, executor=executor).run()
    assert not remote.failures and remote.cells_finished == 3 * 2
    seen = [int(x) for x in _lines(log)]
    assert len(seen) == 3 and seen[-1] == 2 * 3  # the pair load came last, with both backbones' 3 splits cached
    assert len(glob.glob(str(cache / "features" / "*" / "*" / "meta.json"))) == 6
    with Store(str(tmp_path / "local")) as store:
        local = Runner(attrs.evolve(spec, executor="local"), host, store, device="cpu", load=load).run()
    assert local.cells_finished == 6 and len(_lines(log)) == 6 and set(_lines(log)[3:]) == {"6"}  # all from the cache
    a, b = _contents(tmp_path / "local"), _contents(tmp_path / "ray")
    assert a["configs"] == b["configs"] and a["tables"] == b["tables"]
