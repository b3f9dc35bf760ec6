"""The runner: the protocol per cell, resume through the store, executors, and feature sources."""

from __future__ import annotations

import sys
import types
from collections import deque

import attrs
import numpy as np
import pytest
from runner_util import feature_grid, host, make_features, single_thread

from featbench.bench.driver import Runner
from featbench.bench.executors.local import LocalExecutor
from featbench.bench.jobs import execute_job, load_source
from featbench.bench.progress import Listener
from featbench.bench.spec import AugRow, RunSpec, check
from featbench.bench.store import Store
from featbench.errors import UnknownNameError
from featbench.inputs.features import load_features
from featbench.records import REFIT, SEARCH
from featbench.reporting.tables import build, render, to_json_data


@pytest.fixture(scope="module")
def plugin_host():
    undo = single_thread()  # tiny tensors train much faster on one thread of a busy 2-core machine
    yield host()
    undo()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("features")
    return feature_grid(str(d), datasets=("d1", "d2"), backbones=("A", "B"))


def _spec(files, **kw) -> RunSpec:
    base = dict(aug=("none", "sea"), datasets=("d1", "d2"), backbones=("A", "B"), combos=("A", "A+B"),
                feature_files=files, hp={"lr": (0.5, 2.0), "eta": (0.4, 0.8)}, epochs=3, batch_size=32, seeds=2)
    base.update(kw)
    return check(RunSpec(**base))


def _run(spec, plugin_host, directory=None, **kw):
    with Store(directory) as store:
        outcome = Runner(spec, plugin_host, store, device="cpu", **kw).run()
        cells = store.cells(list(outcome.cell_keys))
        n_configs = store.count_configs()
    return outcome, cells, n_configs


def _values(cells):
    return [(c.row, c.dataset, c.backbones, c.seed, c.value, tuple(sorted(c.hp.items()))) for c in cells]


def test_cells_follow_the_protocol(files, plugin_host, tmp_path):
    spec = _spec(files)
    outcome, cells, n_configs = _run(spec, plugin_host, str(tmp_path))
    assert len(cells) == 2 * 2 * 2 * 2 and outcome.cells_finished == 16 and not outcome.interrupted
    # none: grid lr x 1 = 2 search + 1 refit; sea: 2 x 2 = 4 search + 1 refit; per source and seed
    assert n_configs == outcome.configs_trained == 4 * 2 * (3 + 5)
    with Store(str(tmp_path)) as store:
        for cell in cells:
            keys = store.cell_config_keys(cell.key)
            recs = store.configs(keys)
            search = [recs[k] for k in keys[:-1]]
            assert all(r.phase == SEARCH for r in search) and recs[keys[-1]].phase == REFIT
            best = max(search, key=lambda r: r.val)
            assert cell.hp == best.hp and cell.val_value == best.val  # chosen on validation
            assert cell.value == recs[keys[-1]].test  # reported number = the refit's test score
            assert cell.grid_size == len(search)
    assert {c.backbones for c in cells} == {"A", "A+B"}


def test_runner_matches_run_cell(files, plugin_host):
    from reference import run_cell

    from featbench.training.grid import expand_grid, hparams_for
    from featbench.training.trainer import TrainSettings

    spec = _spec(files, aug=("sea",), datasets=("d1",), combos=("A+B",), seeds=1)
    _, (cell,), _ = _run(spec, plugin_host)
    fs = load_features([files["d1"]["A"], files["d1"]["B"]], name="d1")
    cls, loss = plugin_host.get_augmenter("sea"), plugin_host.get_loss("hinge")
    params = hparams_for(loss, cls)
    configs = expand_grid(params, {"lr": [0.5, 2.0], "eta": [0.4, 0.8]})
    ref = run_cell(fs, "sea", cls, "hinge", loss(), params, configs, TrainSettings(epochs=3, batch_size=32, seed=0, device="cpu"))
    assert (cell.value, cell.hp, cell.val_value) == (ref.value, ref.hp, ref.val_value)
    assert np.array_equal(cell.correct, ref.correct)


class _StopAfter(Listener):
    """Interrupts the run (like Ctrl-C) after ``n`` finished jobs."""

    def __init__(self, n):
        self.n = n
        self.jobs = 0

    def job_finished(self, job, new_configs):
        self.jobs += 1
        if self.jobs == self.n:
            raise KeyboardInterrupt


def test_interrupted_run_resumes_without_recomputing(files, plugin_host, tmp_path):
    spec = _spec(files, datasets=("d1",))
    _, full_cells, total = _run(spec, plugin_host)  # uninterrupted, in memory
    d = str(tmp_path)
    first, _, recorded = _run(spec, plugin_host, d, listener=_StopAfter(5))
    assert first.interrupted and 0 < recorded < total
    second, cells, n = _run(spec, plugin_host, d)
    assert not second.interrupted
    assert second.configs_trained == total - recorded  # nothing recorded was trained again
    assert n == total
    assert _values(cells) == _values(full_cells)
    assert all(np.array_equal(a.correct, b.correct) for a, b in zip(cells, full_cells))
    for fmt in ("table", "csv", "latex"):
        assert render(build(cells), fmt) == render(build(full_cells), fmt)
    strip = lambda data: [{k: v for k, v in r.items() if k != "seconds"} for r in data["results"]]  # noqa: E731
    assert strip(to_json_data(build(cells))) == strip(to_json_data(build(full_cells)))
    third, _, _ = _run(spec, plugin_host, d)
    assert third.configs_trained == 0 and third.cells_skipped == len(cells)


class _ReversedExecutor:
    """Another executor: collects every job, then runs them newest first (as a pool might)."""

    def __init__(self, plugin_host):
        self.host = plugin_host
        self.jobs = deque()
        self.ran = 0

    def submit(self, job):
        self.jobs.append(job)

    def completed(self):
        while self.jobs:
            job = self.jobs.pop()
            self.ran += 1
            yield execute_job(job, load_source(job.source, self.host, None), self.host)


def test_results_do_not_depend_on_the_executor(files, plugin_host):
    spec = _spec(files, datasets=("d1",), seeds=1)
    _, local, _ = _run(spec, plugin_host)
    ex = _ReversedExecutor(plugin_host)
    _, other, _ = _run(spec, plugin_host, executor=ex)
    assert ex.ran > 0
    assert _values(other) == _values(local)


def test_stacks_respect_stack_size(files, plugin_host):
    spec = _spec(files, aug=("sea",), datasets=("d1",), combos=("A",), seeds=1, stack_size=3)
    jobs = []

    class Count(Listener):
        def job_started(self, job):
            jobs.append((job.phase, len(job.configs)))

    with Store(None) as store:
        runner = Runner(spec, plugin_host, store, device="cpu", listener=Count())
        runner.executor = LocalExecutor(plugin_host, runner.load, runner.listener)
        runner.run()
    assert jobs == [(SEARCH, 3), (SEARCH, 1), (REFIT, 1)]


def test_rows_variants_and_scoped_hp(files, plugin_host):
    spec = _spec(files, aug=("none", "sea", AugRow("sea-one", "sea", {"alpha": (0.0,)})), datasets=("d1",), combos=("A",),
                 seeds=1, hp={"lr": (0.5,), "eta": (0.4, 0.8), "sea-one.eta": (0.8,)})
    _, cells, _ = _run(spec, plugin_host)
    by_row = {c.row: c for c in cells}
    assert by_row["none"].grid_size == 1 and by_row["sea"].grid_size == 2 and by_row["sea-one"].grid_size == 1
    assert by_row["sea-one"].hp["alpha"] == 0.0 and by_row["sea-one"].hp["eta"] == 0.8
    with pytest.raises(UnknownNameError, match="unknown augmenter row in --hp 'sae'"):
        _run(_spec(files, hp={"sae.eta": (0.4,)}), plugin_host)
    with pytest.raises(UnknownNameError, match="unknown hyper-parameter 'etta'"):
        _run(_spec(files, hp={"etta": (0.4,)}), plugin_host)


def test_log_every_records_epochs(files, plugin_host, tmp_path):
    spec = _spec(files, aug=("sea",), datasets=("d1",), combos=("A",), seeds=1, epochs=5, log_every=2)
    _, (cell,), _ = _run(spec, plugin_host, str(tmp_path))
    with Store(str(tmp_path)) as store:
        recs = store.configs(store.cell_config_keys(cell.key), with_epochs=True)
    for r in recs.values():
        assert [e.epoch for e in r.epochs] == [1, 3, 4]
        assert r.epochs[-1].test == pytest.approx(r.test)  # the last logged epoch is the final head


def _fake_sources(monkeypatch, calls, files):
    mod = types.ModuleType("featbench.inputs.sources")

    def feature_set_for(dataset, backbones, *, host, cache_dir=None, device="auto", weights=None, progress=True, **image_options):
        calls.append({"dataset": dataset, "backbones": list(backbones), "host": host, "cache_dir": cache_dir,
                      "device": device, "weights": weights, "progress": progress})
        fs = load_features([files[dataset][b] for b in backbones], name=dataset)
        return attrs.evolve(fs, cache_keys=tuple(f"{dataset}:{b}" for b in backbones))

    mod.feature_set_for = feature_set_for
    monkeypatch.setitem(sys.modules, "featbench.inputs.sources", mod)
    import featbench.inputs

    monkeypatch.setattr(featbench.inputs, "sources", mod, raising=False)


def test_dataset_backbone_cells_resolve_through_sources(files, plugin_host, monkeypatch, tmp_path):
    calls = []
    _fake_sources(monkeypatch, calls, files)
    weights = tmp_path / "a.pth"
    weights.write_bytes(b"w")
    spec = check(RunSpec(aug=("none",), datasets=("d1",), backbones=("A", "B"), combos=("all",), epochs=2, batch_size=32,
                         cache_dir=str(tmp_path / "cache"), weights={"A": str(weights)}))
    _, cells, _ = _run(spec, plugin_host, str(tmp_path / "run"))
    assert [c["backbones"] for c in calls] == [["A"], ["B"], ["A", "B"]]
    for c in calls:
        assert c["dataset"] == "d1" and c["host"] is plugin_host and c["cache_dir"] == str(tmp_path / "cache")
        assert c["device"] == "cpu" and c["weights"] == {"A": str(weights)} and c["progress"] is False
    assert [c.backbones for c in cells] == ["A", "B", "A+B"]
    assert cells[2].cache_keys == ("d1:A", "d1:B")
    # resolved lazily: a rerun with everything recorded loads no features at all
    calls.clear()
    outcome, _, _ = _run(spec, plugin_host, str(tmp_path / "run"))
    assert calls == [] and outcome.configs_trained == 0


def test_source_identity_follows_file_contents(files, plugin_host, tmp_path):
    path = make_features(str(tmp_path / "x.npz"), seed=5)
    spec = check(RunSpec(aug=("none",), features=((path,),), epochs=2, batch_size=32))
    d = str(tmp_path / "run")
    first, _, _ = _run(spec, plugin_host, d)
    make_features(path, seed=6)  # new numbers under the same name
    second, _, _ = _run(spec, plugin_host, d)
    assert first.configs_trained == second.configs_trained == 1


BROKEN_PLUGIN = '''
from featbench import hookimpl
from featbench.plugins.baseline import NoAugmentation


class Broken(NoAugmentation):
    def __init__(self, run):
        raise RuntimeError("broken augmenter")


@hookimpl
def register_augmenters(registry):
    registry.add("broken", Broken)
'''


def test_a_failing_job_fails_its_cells_and_the_rest_goes_on(files, tmp_path):
    from featbench.manager import load_plugins

    plugin = tmp_path / "broken_plugin.py"
    plugin.write_text(BROKEN_PLUGIN)
    h = load_plugins(entry_points=[], local_modules=[str(plugin)], strict=True)
    spec = _spec(files, aug=("none", "broken", "sea"), datasets=("d1",), combos=("A",), seeds=1)
    d = str(tmp_path / "run")
    outcome, cells, n = _run(spec, h, d)
    assert [c.row for c in cells] == ["none", "sea"] and outcome.cells_finished == 2
    assert outcome.cells_failed == 1 and n == 3 + 5  # none and sea recorded in full
    (failure,) = outcome.failures.values()
    assert failure.error == "RuntimeError: broken augmenter" and not failure.user_error
    assert failure.job.augmenter == "broken" and "Traceback" in failure.detail
    with Store(d) as store:
        assert store.run().status == "failed"
    again, cells2, _ = _run(spec, h, d)  # a rerun tries only the failed cell again
    assert again.cells_skipped == 2 and again.configs_trained == 0 and again.cells_failed == 1
    assert _values(cells2) == _values(cells)


def test_a_source_that_fails_to_load_fails_its_cells_once(files, plugin_host, monkeypatch, tmp_path):
    from featbench.errors import DataError

    calls = []
    _fake_sources(monkeypatch, calls, files)
    import featbench

    real = featbench.inputs.sources.feature_set_for

    def feature_set_for(dataset, backbones, **kw):
        if dataset == "d2":
            calls.append(dataset)
            raise DataError("d2 is missing", "download it")
        return real(dataset, backbones, **kw)

    monkeypatch.setattr(featbench.inputs.sources, "feature_set_for", feature_set_for)
    spec = check(RunSpec(aug=("none", "sea"), datasets=("d1", "d2"), backbones=("A",), hp={"lr": (0.5, 2.0)}, epochs=2,
                         batch_size=32, cache_dir=str(tmp_path / "cache")))
    outcome, cells, _ = _run(spec, plugin_host)
    assert [(c.dataset, c.row) for c in cells] == [("d1", "none"), ("d1", "sea")]
    assert outcome.cells_failed == 2 and calls.count("d2") == 1  # loaded once, not once per job
    assert {f.error for f in outcome.failures.values()} == {"d2 is missing (download it)"}
    assert all(f.user_error for f in outcome.failures.values())


def test_jobs_train_with_their_thread_count(files, plugin_host):
    import torch

    seen = []

    class Threads(Listener):
        def epoch(self, job, epoch):
            seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    spec = _spec(files, aug=("none",), datasets=("d1",), combos=("A",), seeds=1, threads=before + 1, hp={"lr": (0.5,)})
    with Store(None) as store:
        Runner(spec, plugin_host, store, device="cpu", listener=Threads()).run()
    assert seen and set(seen) == {before + 1}
    assert torch.get_num_threads() == before  # restored
