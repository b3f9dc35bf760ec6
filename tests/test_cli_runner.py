"""``featbench run --config``, ``report`` and ``plot`` end to end, and ``kill -9`` in the middle of a run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from runner_util import feature_grid, single_thread

from featbench.bench.store import Store
from featbench.cli import main


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Every run here (in this process and in subprocesses) uses one torch thread: faster on tiny tensors."""
    undo = single_thread()
    yield {**os.environ, "OMP_NUM_THREADS": "1", "FEATBENCH_DISABLE_ENTRY_POINTS": "1"}
    undo()

SUITE = """
description: tiny CLI suite
aug: [none, sea]
datasets: [d1, d2]
backbones: [A, B]
combos: [A, A+B]
feature_files:
  d1: {{A: {d1A}, B: {d1B}}}
  d2: {{A: {d2A}, B: {d2B}}}
hp: {{lr: [0.5, 2], eta: [0.4, 0.8]}}
epochs: {epochs}
batch_size: 32
seeds: 2
stack_size: 1
"""


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    f = feature_grid(str(d), n_train=120, n_test=80, dim=8)
    path = d / "suite.yaml"
    path.write_text(SUITE.format(d1A=f["d1"]["A"], d1B=f["d1"]["B"], d2A=f["d2"]["A"], d2B=f["d2"]["B"], epochs=3))
    return str(path)


def _main(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_prints_both_layouts_and_report_reprints_them(suite, tmp_path, capsys):
    out_dir = str(tmp_path / "run")
    code, out, err = _main(capsys, "run", "--config", suite, "--out", out_dir, "--log-every", "1")
    assert code == 0, err
    assert "[table5 layout: backbones A]" in out and "[table5 layout: backbones A+B]" in out
    assert "[table4 layout: backbone combinations]" in out and "Gain (sea - none)" in out
    assert "[16/16]" in err  # a progress line per cell when stderr is not a TTY
    printed = {}
    for fmt in ("table", "markdown", "csv", "latex", "json"):
        code, again, _ = _main(capsys, "run", "--config", suite, "--out", out_dir, "--format", fmt, "--quiet")
        assert code == 0
        printed[fmt] = again
        code, rep, _ = _main(capsys, "report", out_dir, "--format", fmt, "--run", "1")
        assert code == 0
        if fmt == "table":
            assert rep == out  # the store alone rebuilds exactly what the run printed
        if fmt != "json":  # JSON names its run id
            assert rep == again
    with open(os.path.join(out_dir, "table.tex")) as f:
        assert f.read() == printed["latex"]
    with open(os.path.join(out_dir, "results.json")) as f:
        assert f.read() == printed["json"]
    with Store(out_dir) as store:
        assert [r.status for r in store.runs()] == ["finished"] * 6
        assert store.count_configs(run_id=1) == store.count_configs() > 0


def test_plot_writes_pngs(suite, tmp_path, capsys):
    out_dir = str(tmp_path / "run")
    assert _main(capsys, "run", "--config", suite, "--dataset", "d1", "--out", out_dir, "--log-every", "1", "--quiet")[0] == 0
    code, out, err = _main(capsys, "plot", out_dir)
    assert code == 0, err
    paths = out.split()
    names = sorted(os.path.basename(p) for p in paths)
    assert "hp_lr__d1__A.png" in names and "hp_eta__d1__A+B.png" in names
    assert "epochs__sea__d1__A.png" in names and "epochs__none__d1__A+B.png" in names
    import matplotlib.image

    for p in paths:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        img = matplotlib.image.imread(p)
        assert img.shape[0] > 200 and img.shape[1] > 300
        assert img[..., :3].std() > 0.05  # not a blank canvas
    code, out, _ = _main(capsys, "plot", out_dir, "--hp", "wd", "--out", str(tmp_path / "p2"))
    assert code == 0 and [os.path.basename(p) for p in out.split()][0].startswith("epochs__")


@pytest.mark.parametrize("argv,message", [
    (["report", "{tmp}/nowhere"], "no such run directory"),
    (["report", "{tmp}"], "no featbench results store in"),
    (["run", "--config", "{tmp}/missing.yaml"], "suite file not found"),
    (["run", "--aug", "none", "--combos", "all"], "--combos needs --backbones"),
    (["run", "--aug", "none", "--dataset", "d"], "--dataset needs --backbones"),
    (["run", "--aug", "none", "--format", "xml"], "unknown output format 'xml'"),
    (["run", "--aug", "none", "--hp", "sea.eta=1"], "unknown augmenter row in --hp 'sea'"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, out, err = _main(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("featbench: error: ") and message in err


def test_ray_executor_without_ray_installed_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where the extra is not installed
    code, out, err = _main(capsys, "run", "--aug", "none", "--executor", "ray", "--out", str(tmp_path))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("featbench: error: --executor ray needs Ray") and "pip install 'featbench[ray]'" in err


def _configs(out_dir: str) -> int:
    if not os.path.exists(os.path.join(out_dir, "featbench.sqlite")):
        return 0
    with Store(out_dir) as store:
        return store.count_configs()


def test_kill_9_halfway_then_rerun_finishes_without_recomputing(tmp_path, capsys, one_thread):
    d = tmp_path / "feat"
    d.mkdir()
    f = feature_grid(str(d), n_train=200, n_test=100, dim=16)
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE.format(d1A=f["d1"]["A"], d1B=f["d1"]["B"], d2A=f["d2"]["A"], d2B=f["d2"]["B"], epochs=10))
    argv = ["run", "--config", str(suite), "--dataset", "d1"]
    reference = str(tmp_path / "reference")
    code, ref_out, _ = _main(capsys, *argv, "--out", reference, "--quiet")
    assert code == 0
    total = _configs(reference)

    killed = str(tmp_path / "killed")
    proc = subprocess.Popen([sys.executable, "-m", "featbench", *argv, "--out", killed, "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=one_thread)
    deadline = time.time() + 120
    while _configs(killed) < total // 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    recorded = _configs(killed)
    assert 0 < recorded < total, "the run was not killed halfway"
    with Store(killed) as store:
        assert store.integrity_ok() and store.runs()[0].status == "running"  # it never got to say goodbye

    code, out, err = _main(capsys, *argv, "--out", killed)
    assert code == 0
    assert f"trained {total - recorded} configuration(s)" in err  # nothing recorded was trained again
    assert out == ref_out  # the same tables as the uninterrupted run
    assert _configs(killed) == total


def test_matmul_precision_is_a_flag_and_part_of_each_result(tmp_path, capsys):
    from runner_util import make_features

    feats = make_features(str(tmp_path / "f.npz"), seed=4)
    out_dir = str(tmp_path / "run")
    common = ["run", "--features", feats, "--aug", "none,sea", "--hp", "eta=0.4", "--epochs", "3", "--batch-size", "32",
              "--out", out_dir, "--format", "json", "--quiet"]
    code, out, err = _main(capsys, *common)
    assert code == 0, err
    code, out, err = _main(capsys, *common, "--matmul", "bf16")
    assert code == 0, err
    with Store(out_dir) as store:
        assert store.count_configs() == 4  # bf16 results are new configurations, not the fp32 ones resumed
    code, out, err = _main(capsys, *common, "--matmul", "bf16", "--storage", "auto", "--cuda-graphs")
    assert code == 0, err
    with Store(out_dir) as store:
        assert store.count_configs() == 4  # CUDA graphs and chunking do not change results: resumed


@pytest.mark.parametrize("flags,expected", [(["--matmul", "tf32"], "matmul precision 'tf32' is not available on cpu"),
                                            (["--matmul", "fp16"], "valid: bf16, fp32, tf32"),
                                            (["--storage", "int8"], "valid: auto, bfloat16, float16, float32")])
def test_bad_performance_flags_fail_before_any_output(tmp_path, capsys, flags, expected):
    from runner_util import make_features

    feats = make_features(str(tmp_path / "f.npz"), seed=4)
    out_dir = tmp_path / "run"
    code, out, err = _main(capsys, "run", "--features", feats, "--aug", "none", "--device", "cpu", "--out", str(out_dir), *flags)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
    assert not out_dir.exists()
