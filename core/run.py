"""One ``featbench run``, from a checked :class:`~featbench.bench.spec.RunSpec` to its results files, as
pytest's ``main.py`` wraps a test session.

The lifecycle, in order:

1. **preflight**: names, hyper-parameters and feature files (all but their values) are checked and the
   plan (rows with their grids, feature sources) is made, before anything is written; then the data sets
   and checkpoints the run needs and this machine lacks are downloaded (one plan line first);
2. **session**: the executor named by the spec opens (the Ray executor connects to its cluster) and
   gives the device jobs train on; the matrix-product precision is checked against it, and ``grid: auto``
   becomes the grid for that device;
3. **store**: the ``--out`` directory and its results store are opened or created;
4. **driver**: :class:`~featbench.bench.driver.Runner` trains what the store lacks and records it;
5. **results**: the tables are rendered from the store and written (``results.json``, ``table.EXT``).

A run that fails before recording anything leaves no trace (its run record, and a store or directory it
created, are removed); a run in which every cell failed on one bad input is that input's one-line error.
Nothing here prints: the caller (:mod:`featbench.cli`) shows :class:`RunResult` and the listener's progress.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping

import attrs

from .bench import executors
from .bench.driver import Runner, RunOutcome
from .bench.jobs import LoadOptions
from .bench.plan import Plan, make_plan
from .bench.progress import Listener
from .bench.spec import RunSpec
from .errors import ConfigError, FeatbenchError, UnknownNameError, storage_error


@attrs.frozen
class RunResult:
    """What a finished (or interrupted) run has to show: its outcome, its tables in the spec's format, one
    warning line per cell with diverged configurations, and the run directory (None without ``--out``)."""

    outcome: RunOutcome
    text: str
    warnings: tuple[str, ...]
    out: str | None


def build_spec(flags: Mapping[str, object], config: str | None = None) -> RunSpec:
    """The spec of ``featbench run``: defaults < the suite file ``config`` < ``flags``, checked, its output format
    and table layout among those :mod:`featbench.reporting.tables` renders."""
    from .bench.spec import build_spec as assemble
    from .reporting.tables import FORMATS, LAYOUTS

    spec = assemble(flags, config)
    if spec.format not in FORMATS:
        raise UnknownNameError("output format", spec.format, FORMATS)
    if spec.layout not in LAYOUTS:
        raise UnknownNameError("table layout", spec.layout, LAYOUTS)
    return spec


def preflight(spec: RunSpec, host, registry_path: str | None = None) -> Plan:
    """The run's plan, after checking names, hyper-parameters and feature files (all but their NaN/Inf
    values); feature-file runs fail here before torch is even imported."""
    plan = make_plan(spec, host, registry_path)
    for src in plan.sources:
        missing = [f for f in src.files if not os.path.exists(f)]
        if missing and spec.feature_files_script:
            script = os.path.relpath(spec.feature_files_script)
            script = script if not script.startswith("..") else spec.feature_files_script
            raise ConfigError(
                f"feature file not found: {missing[0]}",
                f"this suite's feature files are written by {script}: run python {script} first",
            )
        if src.files:
            from .inputs.features import check_feature_files  # numpy: only when there are feature files

            check_feature_files(list(src.files), name=src.dataset)
        elif not src.builtin:
            host.get_dataset(src.dataset)
    for b in spec.backbones:
        if not spec.feature_files or any(ds not in spec.feature_files for ds in spec.datasets):
            host.get_backbone(b)
    return plan


def run(spec: RunSpec, host, *, registry_path: str | None = None, listener: Listener | None = None) -> RunResult:
    """Run ``spec`` (see the module docstring). Raises :class:`FeatbenchError` on bad input, leaving no run behind."""
    from .bench.spec import resolve_grid
    from .bench.store import Store, db_path
    from .reporting.divergence import divergence_warnings
    from .reporting.recorded import render_run
    from .reporting.tables import FORMATS
    from .training.trainer import check_matmul

    listener = listener or Listener()
    plan = preflight(resolve_grid(spec, "cpu"), host, registry_path)  # names and grids checked before any download
    fetch_inputs_of(spec, registry_path, listener)
    new_dir = spec.out is not None and not os.path.isdir(spec.out)
    new_db = spec.out is None or not os.path.exists(db_path(spec.out))
    with contextlib.ExitStack() as context:
        device = context.enter_context(executors.module(spec.executor).session(spec))
        check_matmul(spec.matmul, device)
        resolved = resolve_grid(spec, device)  # grid auto: paper-auto when training on a GPU, quick on the CPU
        if resolved is not spec:
            spec, plan = resolved, make_plan(resolved, host, registry_path)
        out = prepare_out(spec.out)
        try:
            store = context.enter_context(Store(out, check=not new_db))  # a store being resumed is checked first
        except BaseException:
            _remove_new_store(out, new_db, new_dir)
            raise
        last_run = max((r.id for r in store.runs()), default=0)
        try:
            load = LoadOptions.from_spec(spec, device, progress=not spec.quiet)
            outcome = Runner(
                spec, host, store, device=device, registry_path=registry_path, listener=listener, load=load, plan=plan
            ).run()
            _raise_if_nothing_but_bad_input(outcome)
        except BaseException:
            _forget_failed_run(store, out, last_run, new_db, new_dir)
            raise
        warnings = divergence_warnings(store, store.cells(store.planned_cells(outcome.run_id)))
        text = render_run(store, outcome.run_id, spec.format, spec.layout, spec.gain_of, spec.digits)
        if out:  # the files first: a command that fails prints nothing on stdout
            json_text = render_run(store, outcome.run_id, "json", spec.layout, spec.gain_of, spec.digits)
            write_atomic(os.path.join(out, "results.json"), json_text + "\n")
            write_atomic(os.path.join(out, f"table.{FORMATS[spec.format]}"), text + "\n")
    return RunResult(outcome, text, tuple(warnings), out)


def fetch_inputs_of(spec: RunSpec, registry_path: str | None, listener) -> None:
    """Download the catalog data sets and registry checkpoints the run extracts features from and this machine
    lacks (``featbench.inputs.fetch``): one plan line first, refused offline or when the disk is short."""
    image_datasets = [ds for ds in spec.datasets if ds not in spec.feature_files] if spec.backbones else []
    if not image_datasets:
        return
    from .inputs.fetch import fetch_inputs

    fetch_inputs(
        image_datasets,
        spec.backbones,
        registry_path=registry_path,
        data_root=spec.data_root,
        cache_dir=spec.cache_dir,
        weights=spec.weights,
        listener=listener,
        # a checkpoint every cell needs and no script can fetch stops the run before anything is downloaded
        required=set.intersection(*(set(b) for b in spec.backbone_sets())),
    )


def prepare_out(path: str | None) -> str | None:
    """Create ``path`` if needed and check it is writable (a one-line ConfigError if not; a directory this
    created is removed again)."""
    if path is None:
        return None
    existed = os.path.isdir(path)
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".featbench-write-test{os.getpid()}")
        with open(probe, "w") as f:
            f.write("")
        os.remove(probe)
    except OSError as exc:
        if not existed and os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)
        raise ConfigError(
            f"cannot write to --out {path}: {exc.strerror or exc}", "choose a writable directory"
        ) from None
    return path


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (``featbench.inputs.files``); a failure is a one-line StorageError."""
    from .inputs.files import write_text

    try:
        write_text(path, text)
    except OSError as exc:
        raise storage_error(exc, os.path.basename(path), path) from None


def _raise_if_nothing_but_bad_input(outcome: RunOutcome) -> None:
    """A run in which every cell failed on the same bad input (NaN in a feature file, say, which only loading
    finds) is a bad-input error like those found before training: one line, and no run left behind."""
    errors = {f.error for f in outcome.failures.values()}
    if (
        len(errors) == 1
        and outcome.cells_failed == len(outcome.cell_keys)
        and outcome.configs_trained == 0
        and all(f.user_error for f in outcome.failures.values())
    ):
        raise FeatbenchError(errors.pop())


def _forget_failed_run(store, out: str | None, last_run: int, new_db: bool, new_dir: bool) -> None:
    """A run that failed before recording anything leaves no trace: its run record is deleted, and the
    results store (and the --out directory) too when this run created them. Best effort: the original
    error is what the user needs to see."""
    if out is None:
        return
    try:
        if new_db and store.count_configs() == 0 and not store.runs_of_other_processes(os.getpid()):
            store.close()
            _remove_new_store(out, new_db, new_dir)
            return
        for run in store.runs():
            if run.id > last_run:
                store.discard_run(run.id)
    except Exception:  # noqa: BLE001 - never hide the error that made the run fail
        pass


def _remove_new_store(out: str | None, new_db: bool, new_dir: bool) -> None:
    """Remove the results store this run created (and the --out directory, if it created that and it is empty)."""
    from .bench.store import db_path

    if out is None or not new_db:
        return
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(db_path(out) + suffix):
            os.remove(db_path(out) + suffix)
    if new_dir and os.path.isdir(out) and not os.listdir(out):
        os.rmdir(out)
