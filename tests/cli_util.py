"""The featbench command line in a subprocess, and the checks every hostile-input and fault test makes."""

from __future__ import annotations

import os
import subprocess
import sys

ERROR = "featbench: error: "


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a featbench subprocess: no third-party plugins, strict plugins, one torch thread."""
    env = {**os.environ, "FEATBENCH_DISABLE_ENTRY_POINTS": "1", "FEATBENCH_STRICT_PLUGINS": "1", "OMP_NUM_THREADS": "1",
           "OMP_WAIT_POLICY": "PASSIVE"}
    env.update(extra)
    return env


def featbench(*args: str, cwd: str | None = None, env: dict[str, str] | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m featbench ARGS`` and capture its output."""
    return subprocess.run([sys.executable, "-m", "featbench", *args], cwd=cwd, env=env or cli_env(), capture_output=True,
                          text=True, timeout=timeout)


def assert_clean_error(proc: subprocess.CompletedProcess, problem: tuple[str, ...] = (), fix: tuple[str, ...] = ()) -> str:
    """Exit status 2, nothing on stdout, no traceback, and exactly one ``featbench: error: PROBLEM (FIX)`` line
    on stderr that contains every word of ``problem`` and of ``fix``; returns that line."""
    err = proc.stderr.strip()
    assert proc.returncode == 2, f"exit {proc.returncode}: {proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    line = lines[0]
    assert line.startswith(ERROR), line
    assert line.endswith(")") and " (" in line, f"no fix in parentheses: {line}"
    for word in (*problem, *fix):
        assert word in line, f"{word!r} not in {line!r}"
    assert proc.stdout == "", proc.stdout
    return line


def files_under(path: str) -> list[str]:
    """Every file below ``path`` (relative paths, sorted); [] if it does not exist."""
    out = []
    for root, _, names in os.walk(path):
        out += [os.path.relpath(os.path.join(root, n), path) for n in names]
    return sorted(out)


def cache_debris(cache_dir: str) -> list[str]:
    """Files of the feature cache that are not part of a complete entry (x.npy, y.npy, meta.json)."""
    complete = {"x.npy", "y.npy", "meta.json"}
    out = []
    for rel in files_under(os.path.join(cache_dir, "features")):
        entry, name = os.path.split(rel)
        if name not in complete or not os.path.isfile(os.path.join(cache_dir, "features", entry, "meta.json")):
            out.append(rel)
    return out


PEAK_LIMIT_KIB = 1 << 20  # 1 GiB: no hostile input may make featbench use more
_PEAK_RSS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peak_rss.py")


def start_measured(*args: str, report: str, cwd: str | None = None, env: dict[str, str] | None = None,
                   as_limit: int | None = None, **popen) -> subprocess.Popen:
    """Start ``python -m featbench ARGS`` under ``peak_rss.py`` (its peak memory lands in ``report``)."""
    limit = ["--as-limit", str(as_limit)] if as_limit else []
    return subprocess.Popen([sys.executable, _PEAK_RSS, report, *limit, "--", sys.executable, "-m", "featbench", *args],
                            cwd=cwd, env=env or cli_env(), start_new_session=True, **popen)


def peak_kib(report: str) -> int:
    """The peak resident memory (KiB) that ``peak_rss.py`` measured around its command."""
    import json

    with open(report) as f:
        return json.load(f)["maxrss_kib"]


def featbench_measured(*args: str, cwd: str, env: dict[str, str] | None = None, timeout: float = 300,
                       as_limit: int | None = None) -> tuple[subprocess.CompletedProcess, int]:
    """``featbench(ARGS)`` and its peak resident memory in KiB (``getrusage(RUSAGE_CHILDREN)`` around it)."""
    import signal
    import tempfile

    report = os.path.join(tempfile.mkdtemp(prefix="featbench-peak-"), "peak.json")
    proc = start_measured(*args, report=report, cwd=cwd, env=env, as_limit=as_limit, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    peak = peak_kib(report)
    for p in (report, report + ".pid"):
        os.remove(p)
    os.rmdir(os.path.dirname(report))
    return subprocess.CompletedProcess(args, proc.returncode, out, err), peak
