"""Hostile input, round 2: sizes and limits, bombs, the results store, signals and the registry's paths.

Every case drives the real command line in a subprocess, under ``peak_rss.py``, and checks what the first
round checks (one ``featbench: error: PROBLEM (FIX)`` line, a non-zero exit, no traceback, nothing written
outside, nothing recorded lost) plus a peak resident memory under 1 GiB, measured with
``getrusage(RUSAGE_CHILDREN)`` around the subprocess. Limits are refused before anything is allocated.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from cli_util import (
    PEAK_LIMIT_KIB,
    assert_clean_error,
    cli_env,
    featbench,
    featbench_measured,
    files_under,
    peak_kib,
    start_measured,
)
from conftest import make_blobs

FEAT = ["run", "--epochs", "1", "--aug", "none", "--quiet", "--features"]


def _npz(path, **change):
    """A small valid feature file (60 train / 30 test rows, 8 features, 3 classes) with ``change`` applied."""
    arrays = make_blobs(n_train=60, n_test=30, d=8, C=3)
    arrays.update(change)
    np.savez(path, **arrays)


def _bomb_yaml(where: str) -> str:
    """A "billion laughs" document: nine levels of nine aliases (9**9 leaves) under the setting ``where``."""
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


def _write_zip_bomb(path: str, gib: float = 1.0) -> None:
    """An .npz whose train_x member unpacks to ``gib`` GiB of zeros (a few MB on disk), streamed to disk."""
    arrays = make_blobs(n_train=60, n_test=30, d=8, C=3)
    rows = int(gib * (1 << 30)) // (8 * 4)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("train_x.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (rows, 8)})
            chunk = bytes(1 << 22)
            left = rows * 8 * 4
            while left:
                f.write(chunk[: min(left, len(chunk))])
                left -= min(left, len(chunk))
        for key in ("train_y", "test_x", "test_y"):
            with zf.open(f"{key}.npy", "w") as f:
                np.lib.format.write_array(f, arrays[key])  # (train_y's 60 rows are never compared: refused first)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A directory of hostile inputs."""
    d = tmp_path_factory.mktemp("hostile2")
    blobs = make_blobs(n_train=4, n_test=2, d=8, C=2)
    _npz(
        d / "huge_label.npz",
        train_x=blobs["train_x"],
        train_y=np.array([0, 1, 0, 2**62]),
        test_x=blobs["test_x"],
        test_y=np.array([0, 1]),
    )
    y = make_blobs(n_train=60, n_test=30, d=8, C=3)["train_y"].astype(np.uint64)
    y[5] = np.uint64(2**64 - 1)
    _npz(d / "uint64_label.npz", train_y=y)
    big = make_blobs(n_train=60, n_test=30, d=8, C=3)
    x = big["train_x"].astype(np.float64)
    x[0, 0] = 1e300
    _npz(d / "overflow.npz", train_x=x)
    _write_zip_bomb(str(d / "zip_bomb.npz"))
    _npz(d / "ok.npz")

    for where in ("epochs", "datasets", "plugins"):
        (d / f"bomb_{where}.yaml").write_text(_bomb_yaml(where) + f"{where}: *a9\nfeatures: [ok.npz]\n")
    (d / "bomb_registry.yaml").write_text(_bomb_yaml("grids") + "grids:\n  quick:\n    trainer: {lr: *a9}\n")
    with open(d / "huge.yaml", "w") as f:  # one 50 MB scalar
        f.write("a" * (50 << 20))
    (d / "nested.yaml").write_text("aug: " + "[" * 100_000 + "]" * 100_000 + "\n")
    (d / "digits.yaml").write_text("epochs: " + "1" * 5000 + "\nfeatures: [ok.npz]\n")  # beyond int('...') of Python
    (d / "int65.yaml").write_text(f"epochs: {2**64}\nfeatures: [ok.npz]\n")
    return d


def _check(proc, peak: int, problem=(), fix=()) -> str:
    line = assert_clean_error(proc, problem, fix)
    assert peak < PEAK_LIMIT_KIB, f"peak memory {peak / 1024:.0f} MiB"
    return line


def _hostile_case(hostile, tmp_path, argv, **kw):
    """Run ``argv`` ({d} = the hostile directory, {out} = a run directory that must not appear); checks that
    nothing was written next to the inputs nor at --out."""
    out = tmp_path / "out"
    args = [a.format(d=hostile, out=out) for a in argv]
    if args[0] == "run" and "--out" not in args:
        args += ["--out", str(out)]
    before = files_under(str(hostile))
    proc, peak = featbench_measured(*args, cwd=str(tmp_path), **kw)
    assert not out.exists(), files_under(str(out))
    assert files_under(str(hostile)) == before
    return proc, peak


GRID = [
    "--hp",
    "lr=" + ",".join(f"{0.001 * (i + 1):g}" for i in range(2000)),
    "--hp",
    "wd=" + ",".join(f"{1e-7 * (i + 1):g}" for i in range(1000)),
]

CASES = [
    pytest.param([*FEAT, "{d}/huge_label.npz"], ("training labels go up to 4611686018427387904", "only 4 training rows"), ("0..C-1",), id="label-2**62"),
    pytest.param([*FEAT, "{d}/uint64_label.npz"], ("holds label 18446744073709551615",), ("0..C-1",), id="label-uint64-max"),
    pytest.param(["run", "--config", "{d}/bomb_epochs.yaml"], ("bomb_epochs.yaml", "aliases expand to more than 100,000 nodes"), ("FEATBENCH_YAML_MAX_NODES",), id="yaml-bomb-epochs"),
    pytest.param(["run", "--config", "{d}/bomb_datasets.yaml"], ("aliases expand to more than 100,000 nodes",), ("FEATBENCH_YAML_MAX_NODES",), id="yaml-bomb-datasets"),
    pytest.param(["run", "--config", "{d}/bomb_plugins.yaml"], ("aliases expand to more than 100,000 nodes",), ("FEATBENCH_YAML_MAX_NODES",), id="yaml-bomb-plugins"),
    pytest.param(["--registry", "{d}/bomb_registry.yaml", "run", "--features", "{d}/ok.npz", "--grid", "quick"], ("bomb_registry.yaml", "aliases expand to more than 100,000 nodes"), ("FEATBENCH_YAML_MAX_NODES",), id="yaml-bomb-registry-grid"),
    pytest.param(["run", "--config", "{d}/huge.yaml"], ("suite file", "huge.yaml is 50.0 MiB", "limit of 1.0 MiB"), ("FEATBENCH_YAML_MAX_BYTES",), id="yaml-50MB-scalar"),
    pytest.param(["run", "--config", "{d}/nested.yaml"], ("nested.yaml", "nested deeper than 64 levels", "line 1"), ("FEATBENCH_YAML_MAX_DEPTH",), id="yaml-100k-brackets"),
    pytest.param(["run", "--config", "{d}/digits.yaml"], ("digits.yaml", "a value cannot be read", "4300 digits"), ("fix that value",), id="yaml-5000-digit-int"),
    pytest.param(["run", "--config", "{d}/int65.yaml"], ("epochs: 18446744073709551616 is outside", "9223372036854775807"), ("whole number in that range",), id="yaml-int-beyond-64-bits"),
    pytest.param([*FEAT, "{d}/ok.npz", "--device", "x" * 100_000], ("--device 'xxx", "...xxx", "xxx' is not a device"), ("--device auto",), id="device-100k-chars"),
    pytest.param(["run", "--features", "/" + "x" * 100_000], ("feature file not found: /xxx", "xxx...xxx"), ("--features",), id="path-100k-chars"),
    pytest.param(["run", "--epochs", "9" * 5000], ("argument --epochs: invalid int value: '999", "...999"), ("--help",), id="flag-5000-digits-not-echoed"),
    pytest.param(["run", "--epochs", "100", "--aug", "none", *GRID, "--features", "{d}/ok.npz"], ("the run would train 2,000,001 configurations", "row none searches 2,000,000 (lr 2,000 × wd 1,000)", "more than --max-configs 100,000", "2,000,001 configurations × 100 epochs ≈", " h here"), ("--max-configs 2000001",), id="grid-2M-aug-none"),
    pytest.param(["run", "--epochs", "100", "--aug", "all", *GRID, "--features", "{d}/ok.npz"], ("configurations", "more than --max-configs 100,000"), ("--max-configs",), id="grid-2M-aug-all"),
    pytest.param([*FEAT, "{d}/ok.npz", "--seed", str(2**64)], ("--seed 18446744073709551616", "9223372036854775807"), ("--seed",), id="seed-2**64"),
    pytest.param([*FEAT, "{d}/ok.npz", "--seed", str(2**63 - 1), "--seeds", "2"], ("--seed 9223372036854775807 --seeds 2", "9223372036854775808", "9223372036854775807"), ("--seed",), id="seed-range-overflow"),
    pytest.param([*FEAT, "{d}/ok.npz", "--threads", "100000"], ("--threads 100000", "CPU core(s)"), ("--threads",), id="threads-100000"),
    pytest.param([*FEAT, "{d}/overflow.npz"], ("train_x", "beyond float32", "1e+300"), ("rescale",), id="float32-overflow"),
]


@pytest.mark.parametrize("argv,problem,fix", CASES)
def test_limits_are_one_line_before_any_allocation(hostile, tmp_path, argv, problem, fix):
    proc, peak = _hostile_case(hostile, tmp_path, argv, timeout=120)
    line = _check(proc, peak, problem, fix)
    assert len(line) < 600, line  # never a whole user value
    assert "diverge" not in line


def test_a_zip_bomb_member_is_refused_from_its_zip_header(hostile, tmp_path):
    """1 GiB of zeros in 1 MB on disk, in a process that may use 768 MiB: refused before decompressing."""
    proc, peak = _hostile_case(hostile, tmp_path, [*FEAT, "{d}/zip_bomb.npz"], as_limit=768 << 20, timeout=120)
    _check(proc, peak, ("zip_bomb.npz", "train_x.npy unpacks to 1.0 GiB", "MiB of memory available"), ("ulimit",))
    assert os.path.getsize(hostile / "zip_bomb.npz") < (8 << 20)


def test_max_configs_lets_a_larger_grid_run(hostile, tmp_path):
    argv = [
        "run",
        "--features",
        str(hostile / "ok.npz"),
        "--aug",
        "none",
        "--epochs",
        "1",
        "--quiet",
        "--hp",
        "lr=0.5,1,2",
        "--hp",
        "wd=0,1e-5",
        "--format",
        "csv",
    ]
    proc, peak = featbench_measured(*argv, "--max-configs", "5", cwd=str(tmp_path))
    _check(proc, peak, ("7 configurations", "(lr 3 × wd 2)", "more than --max-configs 5"), ("--max-configs 7",))
    proc = featbench(*argv, "--max-configs", "7", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr


def test_seeds_at_the_top_of_the_range_are_accepted(hostile, tmp_path):
    proc = featbench(
        *FEAT,
        str(hostile / "ok.npz"),
        "--seed",
        str(2**63 - 2),
        "--seeds",
        "2",
        "--out",
        str(tmp_path / "run"),
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr


# ---- the registry's weights paths --------------------------------------------------------------


@pytest.mark.parametrize(
    "entry,problem",
    [
        ({"url": "file:///etc/passwd", "file": "../../../x"}, "file '../../../x' leaves the weights cache"),
        (
            {"url": "file:///etc/passwd", "file": "/tmp/featbench-evil-x"},
            "file '/tmp/featbench-evil-x' leaves the weights cache",
        ),
        ({"url": "file:///etc/passwd", "file": "passwd.pth"}, "url 'file:///etc/passwd' is not an http(s) URL"),
    ],
    ids=["dotdot", "absolute", "file-url"],
)
def test_registry_weights_stay_inside_the_cache(tmp_path, entry, problem):
    import yaml

    from featbench.config import registry_path

    with open(registry_path()) as f:
        reg = yaml.safe_load(f)
    reg["backbones"]["EVIL"] = {"arch": "resnet50", "doc": "evil", **entry}
    path = tmp_path / "deep" / "er" / "registry.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(reg))
    cache = tmp_path / "deep" / "er" / "cache"
    before = files_under(str(tmp_path))
    proc, peak = featbench_measured(
        "--registry",
        str(path),
        "extract",
        "--quiet",
        "--backbones",
        "EVIL",
        "--dataset",
        "digits",
        "--cache-dir",
        str(cache),
        cwd=str(tmp_path / "deep"),
    )
    _check(proc, peak, ("registry backbones.EVIL", problem), ("--weights EVIL=",))
    assert files_under(str(tmp_path)) == before  # nothing at all, in the cache or outside it
    assert not os.path.exists("/tmp/featbench-evil-x")


def test_a_weights_file_may_not_leave_the_cache_through_a_symbolic_link(tmp_path):
    from featbench.api import WeightsSource
    from featbench.errors import ConfigError
    from featbench.inputs.weights import locate

    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "cache" / "weights").mkdir(parents=True)
    os.symlink(outside, tmp_path / "cache" / "weights" / "link")
    source = WeightsSource(file="link/w.pth", url="https://example.invalid/w.pth")
    with pytest.raises(ConfigError, match="leaves the weights cache \\(through a symbolic link\\)"):
        locate("X", source, str(tmp_path / "cache"))
    assert os.listdir(outside) == []


def test_a_file_url_is_accepted_where_the_user_gave_it(tmp_path):
    from featbench.inputs.safe_paths import user_file

    target = tmp_path / "w.pth"
    target.write_bytes(b"x")
    assert user_file(f"file://{target}") == str(target)
    assert user_file(str(target)) == str(target)


# ---- the results store --------------------------------------------------------------------------


def _run_argv(features: str, out: str, lr: str = "0.5,1,2") -> list[str]:
    """``featbench run`` of 2 rows x len(lr) configurations of 2 epochs on ``features`` into ``out``."""
    return ["run", "--features", features, "--aug", "none,sea", "--hp", f"lr={lr}", "--epochs", "2", "--quiet", "--out", out]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A run directory with a finished run of 2 rows x 3 configurations (made in this process)."""
    from featbench.cli import main

    d = tmp_path_factory.mktemp("finished")
    _npz(d / "f.npz")
    out = str(d / "run")
    assert main(_run_argv(str(d / "f.npz"), out)) == 0
    return out


def _copy_run(src: str, dst) -> str:
    import shutil

    shutil.copytree(src, dst)
    return str(dst)


def _snapshot(directory: str) -> dict[str, tuple[bytes, int]]:
    out = {}
    for name in sorted(os.listdir(directory)):
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            with open(p, "rb") as f:
                out[name] = (f.read(), os.stat(p).st_mtime_ns)
    return out


@pytest.mark.parametrize("content", ["foreign", "empty"])
def test_report_refuses_a_file_that_is_not_a_featbench_store_untouched(tmp_path, content):
    d = tmp_path / "dir"
    d.mkdir()
    db = d / "featbench.sqlite"
    if content == "foreign":
        conn = sqlite3.connect(db)
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        conn.execute("INSERT INTO notes (text) VALUES ('mine')")
        conn.commit()
        conn.close()
    else:
        db.write_bytes(b"")
    before = _snapshot(str(d))
    proc, peak = featbench_measured("report", str(d), cwd=str(tmp_path))
    _check(proc, peak, (str(db), "is not a featbench results store"), ("--out directory of a featbench run",))
    assert _snapshot(str(d)) == before  # same bytes, same mtime, no -wal / -shm / -journal


@pytest.fixture
def read_only_mount(tmp_path):
    """``(source, mounted)``: a read-only bind mount of ``source``; skipped where this process may not mount."""
    source, mounted = tmp_path / "src", tmp_path / "ro"
    source.mkdir()
    mounted.mkdir()
    if subprocess.run(["mount", "--bind", str(source), str(mounted)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here (needs root); the chmod and unchanged-bytes checks still run")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(mounted)], capture_output=True).returncode:
            pytest.skip("cannot remount read-only here")
        yield source, mounted
    finally:
        subprocess.run(["umount", "-l", str(mounted)], capture_output=True)


def test_report_and_plot_only_read(finished_run, tmp_path):
    """report and plot on a chmod'ed run directory: same output as before, the store's bytes and mtime
    unchanged (the tests run as root, whom chmod does not stop)."""
    run = _copy_run(finished_run, tmp_path / "run")
    want = featbench("report", finished_run, "--format", "csv", cwd=str(tmp_path))
    assert want.returncode == 0, want.stderr
    before = _snapshot(run)
    os.chmod(run, 0o555)
    try:
        proc, peak = featbench_measured("report", run, "--format", "csv", cwd=str(tmp_path))
        assert proc.returncode == 0 and proc.stdout == want.stdout and proc.stderr == "", proc.stderr
        assert peak < PEAK_LIMIT_KIB
        proc, peak = featbench_measured("plot", run, "--out", str(tmp_path / "plots"), cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stderr
        assert peak < PEAK_LIMIT_KIB
    finally:
        os.chmod(run, 0o755)
    assert _snapshot(run) == before
    assert os.listdir(tmp_path / "plots")


def test_report_and_plot_on_a_read_only_mount(finished_run, read_only_mount, tmp_path):
    source, mounted = read_only_mount
    _copy_run(finished_run, source / "run")
    before = _snapshot(str(source / "run"))
    proc, peak = featbench_measured("report", str(mounted / "run"), "--format", "csv-wide", cwd=str(tmp_path))
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout.startswith("augmenter,"), proc.stderr
    proc, peak2 = featbench_measured("plot", str(mounted / "run"), "--out", str(tmp_path / "plots"), cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert max(peak, peak2) < PEAK_LIMIT_KIB
    assert _snapshot(str(source / "run")) == before


def _damage_an_index(db: str) -> None:
    """Overwrite the b-tree header of an index's root page with garbage (the table pages stay intact)."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'configs_by_cell'").fetchone()[0]
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    with open(db, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\x0a\xff\xff\xff\xff\xff\xff\xff" + bytes(range(256)) * 4)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA quick_check").fetchone()[0] != "ok"
    assert conn.execute("SELECT COUNT(*) FROM configs").fetchone()[0] > 0  # the table itself still reads
    conn.close()


@pytest.mark.parametrize("command", ["report", "run"])
def test_a_damaged_store_is_reported_not_used(finished_run, tmp_path, command):
    run = _copy_run(finished_run, tmp_path / "run")
    db = os.path.join(run, "featbench.sqlite")
    _damage_an_index(db)
    before = _snapshot(run)
    features = os.path.join(os.path.dirname(finished_run), "f.npz")
    argv = ["report", run] if command == "report" else _run_argv(features, run)
    proc, peak = featbench_measured(*argv, cwd=str(tmp_path))
    _check(
        proc, peak, (db, "is damaged", "quick_check"), (f"sqlite3 {db} .recover | sqlite3 NEW.sqlite", "move it away")
    )
    assert _snapshot(run) == before


def test_a_busy_store_is_one_line_after_a_bounded_wait(finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path / "run")
    db = os.path.join(run, "featbench.sqlite")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sqlite3, sys, time\n"
                f"c = sqlite3.connect({db!r}, isolation_level=None)\n"
                "c.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\ntime.sleep(120)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            configs = c.execute("SELECT COUNT(*) FROM configs").fetchone()[0]
        start = time.monotonic()
        features = os.path.join(os.path.dirname(finished_run), "f.npz")
        proc, peak = featbench_measured(
            *_run_argv(features, run, lr="0.5,1,2,4"), cwd=str(tmp_path), env=cli_env(FEATBENCH_BUSY_TIMEOUT="2")
        )
        took = time.monotonic() - start
        _check(proc, peak, (db, "is locked by another process", "waited 2 s"), ("FEATBENCH_BUSY_TIMEOUT",))
        assert took < 60
    finally:
        holder.kill()
        holder.wait()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:  # nothing lost, no run left behind
        assert c.execute("SELECT COUNT(*) FROM configs").fetchone()[0] == configs
        assert [r[0] for r in c.execute("SELECT status FROM runs")] == ["finished"]


# ---- signals ------------------------------------------------------------------------------------


def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    feats = tmp_path / "f.npz"
    _npz(feats)
    out = str(tmp_path / "run")
    report = str(tmp_path / "peak.json")
    db = os.path.join(out, "featbench.sqlite")
    lrs = ",".join(f"{0.1 * (i + 1):g}" for i in range(40))
    proc = start_measured(
        "run",
        "--features",
        str(feats),
        "--aug",
        "none,sea",
        "--hp",
        f"lr={lrs}",
        "--seeds",
        "3",
        "--epochs",
        "40",
        "--stack-size",
        "4",
        "--quiet",
        "--format",
        "csv",
        "--out",
        out,
        report=report,
        cwd=str(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    cells = 0
    while proc.poll() is None and time.time() < deadline and cells < 1:
        time.sleep(0.2)
        if os.path.exists(db):
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
                    cells = c.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
            except sqlite3.Error:
                pass
    assert proc.poll() is None and cells >= 1, "the run ended before it could be interrupted"
    with open(report + ".pid") as f:
        os.kill(int(f.read()), signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("featbench: terminated (SIGTERM);") and "rerun the same command to resume" in stderr
    assert peak_kib(report) < PEAK_LIMIT_KIB
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        assert [r[0] for r in c.execute("SELECT status FROM runs")] == ["interrupted"]
        finished = c.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    assert results["run"]["status"] == "interrupted"
    assert results["cells"]["finished"] == finished >= 1
    assert os.path.exists(os.path.join(out, "table.csv"))


def test_a_closed_stdout_pipe_exits_quietly(finished_run, tmp_path):
    """``featbench report DIR | head -2``: no "Broken pipe" error, the exit status of a SIGPIPE."""
    report = str(tmp_path / "peak.json")
    proc = start_measured(
        "report", finished_run, report=report, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # the reader is gone before featbench writes anything
    stderr = proc.stderr.read().decode()
    proc.wait(120)
    assert stderr == "" and proc.returncode == 128 + signal.SIGPIPE, (proc.returncode, stderr)
    assert peak_kib(report) < PEAK_LIMIT_KIB
    shell = subprocess.run(
        f"{sys.executable} -m featbench report {finished_run} | head -2",
        shell=True,
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=str(tmp_path),
    )
    assert shell.stderr == "" and len(shell.stdout.splitlines()) == 2
