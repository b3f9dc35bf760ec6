"""Executors: where a run's training jobs execute. Each module of this package is one executor, named by
its module name (``--executor NAME``), and provides:

``session(spec)``
    a context manager for the run's duration that yields the device jobs train on (``local``: this
    machine's; ``ray``: connects to the cluster and yields the cluster's);
``create(spec, host, load, listener)``
    the :class:`Executor` that runs the jobs;
``default_threads()``
    the torch threads a job trains with when ``--threads`` is not given (recorded with the run);
``Options`` (optional)
    an attrs class of the executor's own run options, declared with :func:`featbench.bench.options.option`
    (flags, suite keys and their checks; ``check(spec)`` validates them against the whole spec).

An executor only computes: it never imports the driver, and never writes the results store.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Protocol


class Executor(Protocol):
    """Runs :class:`~featbench.bench.jobs.TrainJob` s. ``submit`` never blocks on training; ``completed`` yields
    each finished job's result as it finishes and returns once nothing is pending (jobs submitted while
    iterating are included). A job that cannot be computed is yielded as a
    :class:`~featbench.bench.jobs.JobFailure` (never raised), so the other jobs go on. Results must be
    returned to the caller, never written anywhere by the executor."""

    def submit(self, job) -> None: ...

    def completed(self) -> Iterator: ...


def names() -> tuple[str, ...]:
    """The executors this installation has (``local`` first)."""
    found = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    return tuple(sorted(found, key=lambda n: n != "local"))


def module(name: str):
    """The module of executor ``name`` (an unknown name is a one-line error listing the others)."""
    if name not in names():
        from ...errors import UnknownNameError

        raise UnknownNameError("executor", name, names())
    return importlib.import_module(f"{__name__}.{name}")


def create(spec, host, load, listener):
    """The executor named by ``spec.executor``."""
    return module(spec.executor).create(spec, host, load, listener)
