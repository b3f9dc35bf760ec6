"""featbench.run: one run's lifecycle (plan once, session, store, results files) without the command line."""

from __future__ import annotations

import json
import os

import pytest
from runner_util import make_features, single_thread

from featbench.bench import executors, plan
from featbench.bench.spec import RunSpec, check
from featbench.errors import UnknownNameError
from featbench.manager import load_plugins
from featbench.run import RunResult, run


@pytest.fixture(scope="module")
def host():
    undo = single_thread()
    yield load_plugins(entry_points=[])
    undo()


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("f") / "f.npz")
    make_features(path, seed=0)
    return path


def test_run_writes_the_results_files_and_plans_rows_and_sources_once(host, features, tmp_path, monkeypatch):
    calls = {"rows": 0, "sources": 0}
    rows, sources = plan.plan_rows, plan.plan_sources

    def counting_rows(*a, **k):
        calls["rows"] += 1
        return rows(*a, **k)

    def counting_sources(*a, **k):
        calls["sources"] += 1
        return sources(*a, **k)

    monkeypatch.setattr(plan, "plan_rows", counting_rows)
    monkeypatch.setattr(plan, "plan_sources", counting_sources)
    out = str(tmp_path / "run")
    spec = check(RunSpec(aug=("none",), features=((features,),), epochs=2, batch_size=32, out=out, format="markdown", quiet=True))
    result = run(spec, host)
    assert isinstance(result, RunResult) and result.out == out
    assert calls == {"rows": 1, "sources": 1}
    assert sorted(os.listdir(out)) == ["featbench.sqlite", "results.json", "table.md"]
    with open(os.path.join(out, "table.md")) as f:
        assert f.read() == result.text + "\n"
    with open(os.path.join(out, "results.json")) as f:
        assert [r["augmenter"] for r in json.load(f)["results"]] == ["none"]
    assert result.outcome.cells_finished == 1 and not result.outcome.failures and result.warnings == ()


def test_a_run_that_fails_preflight_writes_nothing(host, tmp_path):
    out = tmp_path / "never"
    spec = check(RunSpec(aug=("nonesuch",), features=((str(tmp_path / "missing.npz"),),), out=str(out)))
    with pytest.raises(UnknownNameError):
        run(spec, host)
    assert not out.exists()


def test_executors_are_the_modules_of_the_executors_package():
    assert executors.names() == ("local", "ray")
    assert executors.module("local").__name__ == "featbench.bench.executors.local"
    with pytest.raises(UnknownNameError, match="unknown executor 'slurm'"):
        executors.module("slurm")


def test_an_unknown_executor_is_rejected_by_the_spec_check():
    with pytest.raises(UnknownNameError, match="unknown executor 'slurm'"):
        check(RunSpec(executor="slurm"))
