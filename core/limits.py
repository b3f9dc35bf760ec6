"""Limits on what featbench accepts, checked before anything is allocated, and the settings that raise them.

Each limit has one place that names it: an error that hits it says the limit and the flag or environment
variable that raises it. Limits without a flag are environment variables (they reach every command and
every worker): ``FEATBENCH_YAML_MAX_BYTES``, ``FEATBENCH_YAML_MAX_DEPTH``, ``FEATBENCH_YAML_MAX_NODES``
and ``FEATBENCH_BUSY_TIMEOUT``. Memory is the process' own: what the machine has available, capped by
``ulimit -v`` / ``ulimit -d`` and a cgroup's ``memory.max``.
"""

from __future__ import annotations

import os
import resource

from .errors import ConfigError

#: SQLite stores integers as signed 64-bit: every seed, seed + seeds - 1 included, must fit.
SQLITE_INT_MAX = 2**63 - 1

#: The most configurations a run may train without ``--max-configs`` (searches and refits over every row,
#: source and seed): about half an hour of ``none`` on the digits default here. The paper suites, which
#: need a GPU, raise it in their YAML (Table 5: 961,532).
DEFAULT_MAX_CONFIGS = 100_000

YAML_MAX_BYTES = ("FEATBENCH_YAML_MAX_BYTES", 1 << 20)  # a suite or registry file
YAML_MAX_DEPTH = ("FEATBENCH_YAML_MAX_DEPTH", 64)  # nesting of lists and mappings
YAML_MAX_NODES = ("FEATBENCH_YAML_MAX_NODES", 100_000)  # values, counting every alias as the copy it stands for
BUSY_TIMEOUT_S = ("FEATBENCH_BUSY_TIMEOUT", 10.0)  # how long to wait for another process' lock on a results store


def setting(limit: tuple[str, float | int]) -> float | int:
    """The value of ``limit`` (``(VARIABLE, default)``): the environment variable if set, else the default."""
    name, default = limit
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = type(default)(float(raw)) if isinstance(default, int) else float(raw)
    except ValueError:
        value = -1
    if not value > 0:
        raise ConfigError(f"{name}={raw[:40]!r} is not a positive number", f"e.g. {name}={default}, or unset it")
    return value


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes this process could still allocate: the machine's available memory, capped by ``ulimit -v``,
    ``ulimit -d`` and a cgroup v2 ``memory.max`` (None where none of them is known)."""
    found = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    for which in (resource.RLIMIT_AS, getattr(resource, "RLIMIT_DATA", None)):
        if which is None:
            continue
        soft, _ = resource.getrlimit(which)
        if soft != resource.RLIM_INFINITY:
            found.append(max(soft - _virtual_bytes(), 0))
    try:
        with open("/sys/fs/cgroup/memory.max") as f, open("/sys/fs/cgroup/memory.current") as g:
            cap = f.read().strip()
            if cap != "max":
                found.append(max(int(cap) - int(g.read().strip()), 0))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def _virtual_bytes() -> int:
    """This process' current virtual size (what RLIMIT_AS counts), from /proc (0 where unknown)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def size(n: float) -> str:
    """``1.0 GiB``, ``50.0 MiB``, ``512 B``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"
