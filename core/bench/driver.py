"""The benchmark runner: cells = feature source (data set × backbone set) × augmenter row × seed.

The driver (:class:`Runner`) plans every cell, asks the results store what is already recorded, and
hands the rest to an executor as :class:`TrainJob` s: one job is one K-stack of configurations of one
cell, in the SEARCH phase (grid points, scored on validation and test) or the REFIT phase (the
configuration chosen on validation, trained on train+val, scored on test). Executors only compute; the
driver alone writes the store, one transaction per finished job, so a run killed at any moment resumes
with every finished stack kept. Stacks are planned from the full grid (structural groups cut into
``max_heads`` chunks) and recorded all-or-nothing, so a resumed run trains exactly the stacks an
uninterrupted one would have, and gets bit-identical numbers.

With ``--search halving`` (featbench.training.halving) a cell's search is a sequence of rungs: a rung's
jobs are the K-stacks of the configurations still alive, each trained from the previous rung's recorded
head states to the rung's epoch; when every stack of a rung is recorded, the best fraction on
validation goes on. Each rung record carries its ``rung_epoch``; the states are kept in the store until
the cell is finished, so a killed run resumes at the last finished rung. With ``--probe lbfgs`` every
source and seed also gets a probe cell, one PROBE job (featbench.training.probe) whose sweep and refit
are recorded together.

An executor implements :class:`Executor` (``submit`` + ``completed``); :class:`LocalExecutor` runs jobs
one after the other in this process; ``featbench.bench.executors.ray.RayExecutor`` runs :func:`execute_job` as
Ray tasks. A job that raises (or whose worker dies for good) comes back as a :class:`JobFailure`: the
cells that needed it are reported failed, every other cell goes on, and a rerun retries only them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

import attrs
import numpy as np

from ..errors import ConfigError, UnknownNameError
from ..inputs.features import FeatureSet
from ..training.protocol import ConfigOutcome, default_max_heads, select_best, stacks, train_configs
from .records import PROBE, REFIT, SEARCH, CellRecord, ConfigRecord, stable_hash
from .spec import DEFAULT_STACK, RunSpec
from ..training.trainer import TrainSettings

PROTOCOL_VERSION = 1  # bump when a change of the protocol changes recorded numbers
MOMENTUM = 0.9
DEMO_NAME = "digits-pixels"


# ---- feature sources --------------------------------------------------------------------------


@attrs.frozen
class SourceSpec:
    """Where a cell's features come from: feature files (an ensemble, in order), or a data set under a
    backbone set resolved through :func:`featbench.inputs.sources.feature_set_for`."""

    dataset: str  # the table column
    backbones: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    metric: str | None = None  # override of the source's own metric
    builtin: bool = False  # the embedded default (scikit-learn digits pixels), when no source is named

    @property
    def backbone_label(self) -> str:
        return "+".join(self.backbones)


@attrs.frozen
class LoadOptions:
    """How executors resolve (dataset, backbones) sources."""

    cache_dir: str | None = None
    device: str = "auto"
    weights: Mapping[str, str] = attrs.field(factory=dict)
    progress: bool = False
    data_root: str | None = None
    image_size: int | None = None  # crop size for every backbone (None: each backbone's own)
    extract_batch_size: int = 64
    workers: int | None = None


_DIGESTS: dict[tuple, str] = {}


def file_digest(path: str) -> str:
    """SHA-256 of a file's bytes (memoised per path, size and modification time)."""
    try:
        st = os.stat(path)
    except OSError:
        from ..errors import DataError

        raise DataError(f"feature file not found: {path}", "check the path (suite paths are relative to the suite file)") from None
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def source_id(src: SourceSpec, weights: Mapping[str, str]) -> str:
    """Identity of a source's numbers: file contents, or the data set, backbones and weight files used."""
    if src.builtin:
        ident = {"builtin": src.dataset}
    elif src.files:
        ident = {"files": [file_digest(p) for p in src.files]}
    else:
        used = {b: _weights_identity(weights[b]) for b in src.backbones if b in weights}
        ident = {"dataset": src.dataset, "backbones": list(src.backbones), "weights": used}
    return stable_hash({**ident, "metric": src.metric})


def _weights_identity(path: str) -> object:
    return file_digest(path) if os.path.isfile(path) else path


def plan_sources(spec: RunSpec) -> list[SourceSpec]:
    """Feature-file columns first, then every data set × backbone set."""
    out = [SourceSpec("+".join(os.path.splitext(os.path.basename(p))[0] for p in files), (), tuple(files), spec.metric)
           for files in spec.features]
    sets = spec.backbone_sets()
    for ds in spec.datasets:
        for bset in sets:
            files = tuple(spec.feature_files[ds][b] for b in bset) if ds in spec.feature_files else ()
            out.append(SourceSpec(ds, tuple(bset), files, spec.metric))
    if not out:
        out.append(SourceSpec(DEMO_NAME, (), (), spec.metric, builtin=True))
    return out


def load_source(src: SourceSpec, host, options: LoadOptions) -> FeatureSet:
    """The feature set of ``src``: its files ensembled, or extracted/cached through ``featbench.inputs.sources``."""
    if src.builtin:
        from ..inputs.demo import digits_features

        fs = digits_features(seed=0)
        return attrs.evolve(fs, metric=src.metric) if src.metric else fs
    if src.files:
        from ..inputs.features import load_features

        return load_features(list(src.files), name=src.dataset, metric=src.metric)
    try:
        from ..inputs import sources
    except ImportError:
        raise ConfigError(f"data set {src.dataset!r} with backbones {src.backbone_label} needs featbench.inputs.sources "
                          "(backbones and data sets), which this installation lacks",
                          "pass feature files with --features or feature_files in the suite") from None
    fs = sources.feature_set_for(src.dataset, list(src.backbones), host=host, cache_dir=options.cache_dir,
                                 device=options.device, weights=dict(options.weights) or None, progress=options.progress,
                                 data_root=options.data_root, preprocess=options.image_size,
                                 batch_size=options.extract_batch_size, workers=options.workers)
    if src.metric is not None and fs.metric != src.metric:
        fs = attrs.evolve(fs, metric=src.metric)
    return fs


# ---- rows and grids -----------------------------------------------------------------------------


@attrs.frozen
class RowPlan:
    """One augmenter row with its grid."""

    label: str
    augmenter: str
    params: Mapping
    configs: tuple[Mapping[str, float], ...]


def plan_rows(spec: RunSpec, host, registry_path: str | None = None) -> list[RowPlan]:
    """Resolve rows, the loss and each row's grid (registry grid < NAME=... < ROW.NAME=... < the row's own hp)."""
    from ..config import grid_values, load_registry
    from ..training.grid import expand_grid, hparams_for

    rows = spec.rows(host.list_augmenters())
    loss_cls = host.get_loss(spec.loss)
    registry = load_registry(registry_path) if spec.grid else None
    labels = [r.label for r in rows]
    scoped: dict[str, dict[str, tuple[float, ...]]] = {}
    plain: dict[str, tuple[float, ...]] = {}
    for name, values in spec.hp.items():
        prefix, dot, rest = name.partition(".")
        if dot:
            if prefix not in labels:
                raise UnknownNameError("augmenter row in --hp", prefix, labels, f"in {name}=...")
            scoped.setdefault(prefix, {})[rest] = values
        else:
            plain[name] = values
    out, known = [], set()
    for row in rows:
        cls = host.get_augmenter(row.augmenter)
        params = hparams_for(loss_cls, cls)
        known |= set(params)
        values = grid_values(registry, spec.grid, ["trainer", spec.loss, row.augmenter]) if registry is not None else {}
        values = {k: v for k, v in values.items() if k in params}
        values.update({k: v for k, v in plain.items() if k in params})
        for name, v in {**scoped.get(row.label, {}), **row.hp}.items():
            if name not in params:
                raise UnknownNameError("hyper-parameter", name, params, f"for row {row.label} ({row.augmenter} with --loss {spec.loss})")
            values[name] = v
        out.append(RowPlan(row.label, row.augmenter, params, tuple(expand_grid(params, values))))
    for k in plain:
        if k not in known:
            raise UnknownNameError("hyper-parameter", k, known, f"for --aug {','.join(labels)} with --loss {spec.loss}")
    return out


# ---- cells and jobs ---------------------------------------------------------------------------


@attrs.frozen
class CellPlan:
    """One cell: what to train and the keys under which the store knows its parts."""

    key: str
    source: SourceSpec
    source_id: str
    row: RowPlan
    loss: str
    seed: int
    settings: TrainSettings
    search_keys: tuple[str, ...]  # one per grid configuration (empty without a search, or with halving)
    stacks: tuple[tuple[int, ...], ...]  # grid indices trained together
    rungs: tuple[int, ...] = ()  # successive halving: the rung epochs (empty: the grid search)
    keep: float = 1.0  # halving: the fraction of configurations each rung passes on
    rung_keys: tuple[tuple[str, ...], ...] = ()  # halving: per rung, one key per grid configuration
    probe: bool = False  # the L-BFGS probe's row (featbench.training.probe), not an augmenter

    @property
    def augmenter(self) -> str:
        return self.row.augmenter

    @property
    def configs(self):
        return self.row.configs


@attrs.frozen
class TrainJob:
    """One K-stack of one cell, in one phase. Everything a worker needs, and nothing it must not write."""

    source: SourceSpec
    source_id: str
    augmenter: str
    loss: str
    phase: str
    configs: tuple[Mapping[str, float], ...]
    keys: tuple[str, ...]
    settings: TrainSettings
    val_fraction: float
    log_every: int
    label: str  # for progress messages: "ROW on DATASET/BACKBONES seed S"
    threads: int | None = None  # torch CPU threads to train with (None: leave the process' setting)
    stop_epoch: int | None = None  # a halving rung: train up to this epoch (None: all ``settings.epochs``)
    states: tuple[bytes, ...] = ()  # a halving rung after the first: each head's state at the rung before


@attrs.frozen
class JobFailure:
    """A job that could not be computed: what :meth:`Executor.completed` yields instead of a result."""

    job: TrainJob
    error: str  # one line: "TypeName: message"
    detail: str = ""  # the traceback (``featbench run --debug`` prints it)
    user_error: bool = False  # a FeatbenchError: bad input the user can fix (exit status 2, not 1)

    @classmethod
    def from_exception(cls, job: TrainJob, exc: BaseException) -> JobFailure:
        from ..errors import FeatbenchError

        return cls(job, _one_line(exc), "".join(traceback.format_exception(exc)), isinstance(exc, FeatbenchError))


def _one_line(exc: BaseException) -> str:
    from ..errors import FeatbenchError, first_line

    if isinstance(exc, FeatbenchError) or not str(exc).strip():
        return first_line(exc)  # a FeatbenchError's own line, or the bare type name
    return f"{type(exc).__name__}: {first_line(exc)}"


@attrs.frozen
class SourceInfo:
    """What the store keeps about a feature source (the driver never loads features itself)."""

    dataset: str
    backbones: str
    metric: str
    num_classes: int
    test_y: np.ndarray = attrs.field(eq=False, repr=False)
    cache_keys: tuple[str, ...] = ()
    files: tuple[str, ...] = ()


@attrs.frozen
class JobResult:
    job: TrainJob
    outcomes: tuple[ConfigOutcome, ...]
    source: SourceInfo
    device: str


def _settings_ident(job_or_cell_settings: TrainSettings, val_fraction: float) -> dict:
    """The settings that make a result what it is. Reduced-precision products and storage change the numbers,
    so they are part of it when not the default; chunking and CUDA graphs do not (tested equal)."""
    s = job_or_cell_settings
    precision = {k: v for k, v in (("matmul", s.matmul), ("storage", s.storage))
                 if v != attrs.fields_dict(TrainSettings)[k].default}
    return {"v": PROTOCOL_VERSION, "epochs": s.epochs, "batch_size": s.batch_size, "momentum": s.momentum,
            "seed": s.seed, "val_fraction": val_fraction, **precision}


def config_key(source_id: str, augmenter: str, loss: str, phase: str, hp: Mapping[str, float], settings: TrainSettings,
               val_fraction: float, rung: int | None = None) -> str:
    """Identity of one trained configuration (independent of the grid it came from and of the row label);
    ``rung``: scored after that epoch of a halving search."""
    extra = {} if rung is None else {"rung": int(rung)}
    return stable_hash({"source": source_id, "augmenter": augmenter, "loss": loss, "phase": phase,
                        "hp": {k: v if isinstance(v, str) else float(v) for k, v in hp.items()}, **extra,
                        **_settings_ident(settings, val_fraction)})


def cell_rungs(spec: RunSpec, n_configs: int) -> tuple[int, ...]:
    """The rung epochs of a cell with ``n_configs`` configurations; () when the search is the grid (also
    when halving would have a single rung)."""
    if spec.search != "halving" or n_configs < 2:
        return ()
    from ..training.halving import check_rungs, default_rungs

    rungs = check_rungs(spec.halving_rungs, spec.epochs) if spec.halving_rungs else default_rungs(spec.epochs, n_configs, spec.halving_keep)
    return rungs if len(rungs) > 1 else ()


def plan_cells(spec: RunSpec, rows: Sequence[RowPlan], device: str, load: LoadOptions) -> list[CellPlan]:
    """Every (source, row, seed) cell in table order, with its keys and stacks."""
    cells = []
    for src in plan_sources(spec):
        sid = source_id(src, load.weights)
        for row in rows:
            for seed in spec.seed_list:
                settings = TrainSettings(epochs=spec.epochs, batch_size=spec.batch_size, momentum=MOMENTUM, seed=seed, device=device,
                                         matmul=spec.matmul, storage=spec.storage, cuda_graphs=spec.cuda_graphs)
                rungs = cell_rungs(spec, len(row.configs))
                search = len(row.configs) > 1 and not rungs
                keys = tuple(config_key(sid, row.augmenter, spec.loss, SEARCH, c, settings, spec.val_fraction)
                             for c in row.configs) if search else ()
                rung_keys = tuple(tuple(config_key(sid, row.augmenter, spec.loss, SEARCH, c, settings, spec.val_fraction, r)
                                        for c in row.configs) for r in rungs)
                chunk = spec.max_heads or DEFAULT_STACK
                groups = tuple(tuple(g) for g in stacks(row.params, row.configs, chunk)) if search else ()
                halving = {"halving": {"rungs": list(rungs), "keep": spec.halving_keep}} if rungs else {}
                key = stable_hash({"row": row.label, "search": list(keys), "configs": [dict(c) for c in row.configs],
                                   "source": sid, "augmenter": row.augmenter, "loss": spec.loss, **halving,
                                   **_settings_ident(settings, spec.val_fraction)})
                cells.append(CellPlan(key, src, sid, row, spec.loss, seed, settings, keys, groups, rungs,
                                      spec.halving_keep, rung_keys))
        if spec.probe:
            cells += [_probe_cell(spec, src, sid, seed, device) for seed in spec.seed_list]
    return cells


PROBE_LOSS = "ce"


def _probe_cell(spec: RunSpec, src: SourceSpec, sid: str, seed: int, device: str) -> CellPlan:
    """The L-BFGS probe's cell of one source and seed (its row is labelled ``lbfgs``)."""
    from ..training import probe

    settings = TrainSettings(epochs=probe.MAX_ITER, batch_size=0, momentum=0.0, seed=seed, device=device)
    row = RowPlan(probe.NAME, probe.NAME, {}, ({},))
    key = stable_hash({"row": probe.NAME, "source": sid, "probe": probe.identity(), **_settings_ident(settings, spec.val_fraction)})
    return CellPlan(key, src, sid, row, PROBE_LOSS, seed, settings, (), (), probe=True)


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` torch CPU threads (restored afterwards); ``None`` changes nothing.

    The thread count is part of what makes numbers reproducible: CPU matrix products split their sums
    across threads, so 1 and 2 threads differ in the last bits (measured on the trainer's shapes).
    """
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def execute_job(job: TrainJob, fs: FeatureSet, host, on_epoch: Callable[[int], None] | None = None) -> JobResult:
    """Train one job on its (already loaded) feature set, with ``job.threads`` threads. Pure computation:
    writes nothing."""
    if job.phase == PROBE:
        from ..training import probe

        with torch_threads(job.threads):
            outcomes = probe.run(fs, job.settings.seed, job.val_fraction, job.settings.device)
        return JobResult(job, tuple(outcomes), _source_info(job, fs), job.settings.device)
    aug_cls = host.get_augmenter(job.augmenter)
    loss = host.get_loss(job.loss)()
    cap = default_max_heads(fs.num_classes, fs.dim)
    outcomes: list[ConfigOutcome] = []
    states = None
    if job.states:
        from ..training.halving import decode

        states = [decode(b) for b in job.states]
    with torch_threads(job.threads):
        for start in range(0, len(job.configs), cap):
            outcomes += train_configs(fs, aug_cls, loss, job.configs[start:start + cap], job.settings, job.phase,
                                      job.val_fraction, job.log_every, on_epoch, stop=job.stop_epoch,
                                      states=states[start:start + cap] if states else None)
    return JobResult(job, tuple(outcomes), _source_info(job, fs), job.settings.device)


def _source_info(job: TrainJob, fs: FeatureSet) -> SourceInfo:
    return SourceInfo(dataset=job.source.dataset, backbones=job.source.backbone_label, metric=fs.metric,
                      num_classes=fs.num_classes, test_y=fs.test_y, cache_keys=tuple(fs.cache_keys), files=tuple(fs.sources))


# ---- executors --------------------------------------------------------------------------------


class Executor(Protocol):
    """Runs :class:`TrainJob` s. ``submit`` never blocks on training; ``completed`` yields each finished
    job's result as it finishes and returns once nothing is pending (jobs submitted while iterating are
    included). A job that cannot be computed is yielded as a :class:`JobFailure` (never raised), so the
    other jobs go on. Results must be returned to the caller, never written anywhere by the executor."""

    def submit(self, job: TrainJob) -> None: ...

    def completed(self) -> Iterator[JobResult | JobFailure]: ...


class LocalExecutor:
    """Runs jobs one at a time in this process, REFIT jobs first so cells finish as early as possible.

    Keeps the most recently loaded feature set, so jobs of one source share one load. A job that raises
    is yielded as a :class:`JobFailure` (no retry: training is deterministic, so it would raise again); a
    source that fails to load fails its later jobs with the same error without loading it again.
    """

    def __init__(self, host, options: LoadOptions, listener: Listener | None = None):
        self.host = host
        self.options = options
        self.listener = listener or Listener()
        self._refits: deque[TrainJob] = deque()
        self._search: deque[TrainJob] = deque()
        self._loaded: tuple[str, FeatureSet] | None = None
        self._broken: dict[str, BaseException] = {}  # source id -> why it could not be loaded

    def submit(self, job: TrainJob) -> None:
        (self._refits if job.phase == REFIT else self._search).append(job)

    def _features(self, job: TrainJob) -> FeatureSet:
        if job.source_id in self._broken:
            raise self._broken[job.source_id]
        if self._loaded is None or self._loaded[0] != job.source_id:
            self._loaded = None  # free the previous source first
            self.listener.loading(job.source)
            try:
                self._loaded = (job.source_id, load_source(job.source, self.host, self.options))
            except Exception as exc:
                self._broken[job.source_id] = exc
                raise
        return self._loaded[1]

    def completed(self) -> Iterator[JobResult | JobFailure]:
        while self._refits or self._search:
            job = self._refits.popleft() if self._refits else self._search.popleft()
            try:
                fs = self._features(job)
                self.listener.job_started(job)
                result = execute_job(job, fs, self.host, on_epoch=lambda e, j=job: self.listener.epoch(j, e))
            except Exception as exc:  # KeyboardInterrupt is no job failure: it stops the run
                yield JobFailure.from_exception(job, exc)
                continue
            yield result


def make_executor(spec: RunSpec, host, load: LoadOptions, listener: Listener) -> Executor:
    """The executor named by ``spec.executor`` (validated against ``suite.EXECUTORS``)."""
    if spec.executor == "local":
        return LocalExecutor(host, load, listener)
    if spec.executor == "ray":
        from .executors.ray import RayConfig, RayExecutor

        return RayExecutor(host, load, RayConfig.from_spec(spec), listener)
    raise ConfigError(f"executor {spec.executor!r} is not available in this installation", "use --executor local")


# ---- progress ---------------------------------------------------------------------------------


class Listener:
    """What the runner reports while it works (the CLI turns it into progress bars); all no-ops here."""

    def planned(self, cells_total: int, cells_done: int, configs_todo: int, epochs: int) -> None: ...

    def loading(self, source: SourceSpec) -> None: ...

    def job_started(self, job: TrainJob) -> None: ...

    def epoch(self, job: TrainJob, epoch: int) -> None: ...

    def job_finished(self, job: TrainJob, new_configs: int) -> None: ...

    def job_failed(self, failure: JobFailure) -> None: ...

    def cell_finished(self, cell: CellRecord, done: int, total: int) -> None: ...


# ---- the driver -------------------------------------------------------------------------------


@attrs.frozen
class RunOutcome:
    run_id: int
    cell_keys: tuple[str, ...]  # planned, in table order
    cells_finished: int  # cells finished by this run
    cells_skipped: int  # cells already in the store
    configs_trained: int  # configurations newly recorded by this run
    interrupted: bool
    failures: Mapping[str, JobFailure] = attrs.field(factory=dict)  # cell key -> the job failure that stopped it

    @property
    def cells_failed(self) -> int:
        return len(self.failures)


def environment(device: str, executor: str = "local", threads: int | None = None) -> dict:
    """Versions and machine facts recorded with every run (the driver's; Ray workers must match them)."""
    import numpy
    import torch

    from .. import __version__

    v = {"featbench": __version__, "python": platform.python_version(), "torch": torch.__version__,
         "numpy": numpy.__version__, "platform": platform.platform(), "device": device, "executor": executor,
         "threads": threads if threads is not None else (1 if executor == "ray" else torch.get_num_threads())}
    if device.startswith("cuda") and torch.cuda.is_available():  # a Ray driver may have no GPU of its own
        v["gpu"] = torch.cuda.get_device_name(0)
    return v


class Runner:
    """Plans cells, skips what the store holds, feeds the rest to an executor and records every result."""

    def __init__(self, spec: RunSpec, host, store, *, device: str, registry_path: str | None = None,
                 executor: Executor | None = None, listener: Listener | None = None, load: LoadOptions | None = None):
        self.spec = spec
        self.host = host
        self.store = store
        self.device = device
        self.listener = listener or Listener()
        self.load = load or LoadOptions(cache_dir=spec.cache_dir, device=device, weights=dict(spec.weights))
        self.rows = plan_rows(spec, host, registry_path)
        self.cells = plan_cells(spec, self.rows, device, self.load)
        self.executor = executor or make_executor(spec, host, self.load, self.listener)
        self._by_key = {c.key: c for c in self.cells}

    def run(self) -> RunOutcome:
        spec, store = self.spec, self.store
        keys = [c.key for c in self.cells]
        run_id = store.begin_run(spec.to_json(), environment(self.device, spec.executor, spec.threads), keys)
        done = store.done_cells(keys)
        pending = [c for c in self.cells if c.key not in done]
        self._run_id = run_id
        self._owners: dict[str, list[str]] = {}  # config key -> cells waiting on it
        self._waiting: dict[str, set[str]] = {}  # cell key -> search keys it still needs
        self._in_flight: set[str] = set()
        self._sources: set[str] = set()
        self._finished = 0
        self._failures: dict[str, JobFailure] = {}
        self._trained = 0
        self._done_total = len(done)
        todo = 0
        interrupted = False
        try:
            for cell in pending:
                todo += self._start(cell)
            self.listener.planned(len(keys), len(done), todo, spec.epochs)
            for result in self.executor.completed():
                if isinstance(result, JobFailure):
                    self._fail(result)
                else:
                    self._record(result)
        except KeyboardInterrupt:
            interrupted = True
        except BaseException:
            store.finish_run(run_id, "failed")  # everything finished so far stays recorded
            raise
        store.finish_run(run_id, "interrupted" if interrupted else "failed" if self._failures else "finished")
        return RunOutcome(run_id, tuple(keys), self._finished, len(done), self._trained, interrupted, dict(self._failures))

    # -- scheduling ------------------------------------------------------------------------

    def _job(self, cell: CellPlan, phase: str, configs: Sequence[Mapping[str, float]], keys: Sequence[str],
             stop: int | None = None, states: Sequence[bytes] = ()) -> TrainJob:
        bb = f"/{cell.source.backbone_label}" if cell.source.backbones else ""
        rung = f" (rung: epoch {stop})" if stop is not None else ""
        return TrainJob(source=cell.source, source_id=cell.source_id, augmenter=cell.row.augmenter, loss=cell.loss,
                        phase=phase, configs=tuple(dict(c) for c in configs), keys=tuple(keys),
                        settings=cell.settings, val_fraction=self.spec.val_fraction, log_every=self.spec.log_every,
                        label=f"{cell.row.label} on {cell.source.dataset}{bb} seed {cell.seed}{rung}", threads=self.spec.threads,
                        stop_epoch=stop, states=tuple(states))

    def _submit(self, job: TrainJob) -> int:
        self._in_flight.update(job.keys)
        self.executor.submit(job)
        return len(job.keys)

    def _start(self, cell: CellPlan) -> int:
        """Submit what the cell still needs; returns the number of configurations submitted."""
        if cell.rungs:
            return self._start_rung(cell)
        if cell.probe:
            key = self._refit_key(cell, {})
            if key in self.store.configs([key]):
                self._finish(cell)
                return 0
            self._owners.setdefault(key, []).append(cell.key)
            return self._submit(self._job(cell, PROBE, [{}], [key]))
        if not cell.search_keys:
            return self._refit(cell)
        recorded = self.store.configs(cell.search_keys)
        missing: set[str] = set()
        n = 0
        for group in cell.stacks:
            gkeys = [cell.search_keys[i] for i in group]
            if all(k in recorded for k in gkeys):
                continue
            missing.update(k for k in gkeys if k not in recorded)
            if not any(k in self._in_flight for k in gkeys):
                n += self._submit(self._job(cell, SEARCH, [cell.configs[i] for i in group], gkeys))
        if not missing:
            return self._refit(cell)
        self._waiting[cell.key] = missing
        for k in missing:
            self._owners.setdefault(k, []).append(cell.key)
        return n + 1  # and its refit, later

    def _halving(self, cell: CellPlan) -> tuple[int, list[int], list[ConfigRecord]]:
        """Where a halving cell stands: (the first rung not fully recorded, or len(rungs) when all are;
        the configurations alive at it; every rung record so far, rung by rung)."""
        from ..training.halving import survivors

        alive = list(range(len(cell.configs)))
        done: list[ConfigRecord] = []
        for r in range(len(cell.rungs)):
            keys = [cell.rung_keys[r][i] for i in alive]
            recs = self.store.configs(keys)
            if len(recs) < len(keys):
                return r, alive, done
            done += [recs[k] for k in keys]
            if r + 1 < len(cell.rungs):
                alive = [alive[j] for j in survivors([recs[k].val for k in keys], cell.keep)]
        return len(cell.rungs), alive, done

    def _start_rung(self, cell: CellPlan) -> int:
        """Submit the K-stacks of the cell's first unfinished rung (its refit once every rung is recorded)."""
        r, alive, _ = self._halving(cell)
        if r == len(cell.rungs):
            return self._refit(cell)
        keys = cell.rung_keys[r]
        recorded = self.store.configs([keys[i] for i in alive])
        before = self.store.head_states([cell.rung_keys[r - 1][i] for i in alive]) if r else {}
        missing: set[str] = set()
        n = 0
        chunk = self.spec.max_heads or DEFAULT_STACK
        for group in stacks(cell.row.params, [cell.configs[i] for i in alive], chunk):
            idx = [alive[j] for j in group]
            gkeys = [keys[i] for i in idx]
            if all(k in recorded for k in gkeys):
                continue
            missing.update(k for k in gkeys if k not in recorded)
            if any(k in self._in_flight for k in gkeys):
                continue
            states = [before.get(cell.rung_keys[r - 1][i]) for i in idx] if r else []
            if any(s is None for s in states):  # a state that is gone is recomputed from epoch 0 (same numbers)
                states = []
            n += self._submit(self._job(cell, SEARCH, [cell.configs[i] for i in idx], gkeys, cell.rungs[r], states))
        self._waiting[cell.key] = missing
        for k in missing:
            self._owners.setdefault(k, []).append(cell.key)
        return n + 1

    def _probe_key(self, cell: CellPlan, wd: float) -> str:
        return config_key(cell.source_id, cell.augmenter, cell.loss, SEARCH, {"wd": wd}, cell.settings, self.spec.val_fraction)

    def _chosen(self, cell: CellPlan) -> tuple[dict, list[ConfigRecord]]:
        if cell.probe:
            from ..training.probe import candidates

            key = self._refit_key(cell, {})
            recs = self.store.configs([key, *(self._probe_key(cell, wd) for wd in candidates())])
            search = sorted((r for k, r in recs.items() if k != key), key=lambda r: r.hp["wd"])
            return dict(recs[key].hp), search
        if cell.rungs:
            _, alive, done = self._halving(cell)
            last = done[-len(alive):]
            return dict(cell.configs[alive[select_best([rec.val for rec in last])]]), done
        if not cell.search_keys:
            return dict(cell.configs[0]), []
        recs = self.store.configs(cell.search_keys)
        search = [recs[k] for k in cell.search_keys]
        return dict(cell.configs[select_best([r.val for r in search])]), search

    def _refit_key(self, cell: CellPlan, hp: Mapping[str, float]) -> str:
        if cell.probe:  # one key for the whole probe (its weight decay is chosen inside the job)
            return config_key(cell.source_id, cell.augmenter, cell.loss, REFIT, {"probe": cell.augmenter}, cell.settings,
                              self.spec.val_fraction)
        return config_key(cell.source_id, cell.row.augmenter, cell.loss, REFIT, hp, cell.settings, self.spec.val_fraction)

    def _refit(self, cell: CellPlan) -> int:
        hp, _ = self._chosen(cell)
        key = self._refit_key(cell, hp)
        if key in self.store.configs([key]):
            self._finish(cell)
            return 0
        self._owners.setdefault(key, []).append(cell.key)
        if key in self._in_flight:
            return 0
        return self._submit(self._job(cell, REFIT, [hp], [key]))

    # -- recording -------------------------------------------------------------------------

    def _record(self, result: JobResult) -> None:
        job = result.job
        if job.source_id not in self._sources:
            s = result.source
            self.store.record_source(job.source_id, s.dataset, s.backbones, s.metric, s.num_classes, s.test_y,
                                     s.cache_keys, s.files)
            self._sources.add(job.source_id)
        keys, phases = job.keys, [job.phase] * len(job.keys)
        if job.phase == PROBE:  # the sweep's keys follow from the values it tried; the refit's is the job's
            cell = self._by_key[self._owners[job.keys[0]][0]]
            keys = [self._probe_key(cell, o.hp["wd"]) for o in result.outcomes[:-1]] + list(job.keys)
            phases = [SEARCH] * (len(keys) - 1) + [REFIT]
        records = [ConfigRecord(key=k, source_id=job.source_id, augmenter=job.augmenter, loss=job.loss, seed=job.settings.seed,
                                phase=p, device=result.device, **attrs.asdict(o, recurse=False))
                   for k, p, o in zip(keys, phases, result.outcomes)]
        new = self.store.record_configs(self._run_id, records)
        self._trained += new
        self._in_flight.difference_update(job.keys)
        self.listener.job_finished(job, new)
        for k in job.keys:
            for cell_key in self._owners.pop(k, []):
                cell = self._by_key[cell_key]
                if job.phase in (REFIT, PROBE):
                    self._finish(cell)
                    continue
                waiting = self._waiting.get(cell_key)
                if waiting is not None:
                    waiting.discard(k)
                    if not waiting:
                        del self._waiting[cell_key]
                        self._start_rung(cell) if cell.rungs else self._refit(cell)

    def _fail(self, failure: JobFailure) -> None:
        """A job failed for good: every cell waiting on it fails in this run (what it recorded stays)."""
        job = failure.job
        self._in_flight.difference_update(job.keys)
        self.listener.job_failed(failure)
        for k in job.keys:
            for cell_key in self._owners.pop(k, []):
                self._waiting.pop(cell_key, None)  # its other search stacks still get recorded, but no refit
                self._failures.setdefault(cell_key, failure)

    def _finish(self, cell: CellPlan) -> None:
        hp, search = self._chosen(cell)
        key = self._refit_key(cell, hp)
        refit = self.store.configs([key])[key]
        if cell.rungs or cell.probe:
            val = next((r.val for r in reversed(search) if r.hp == hp), None)
        else:
            val = search[select_best([r.val for r in search])].val if search else None
        rec = CellRecord(key=cell.key, source_id=cell.source_id, dataset=cell.source.dataset,
                         backbones=cell.source.backbone_label, row=cell.row.label, augmenter=cell.row.augmenter,
                         loss=cell.loss, seed=cell.seed, metric=self._metric(cell), value=refit.test, top1=refit.top1,
                         mean_per_class=refit.mean_per_class, hp=hp, val_value=val, grid_size=len(cell.configs),
                         diverged_configs=sum(r.diverged for r in search) + int(refit.diverged),
                         seconds=sum(r.seconds for r in search) + refit.seconds, refit_key=key)
        if cell.rungs:
            self.store.drop_head_states([k for keys in cell.rung_keys for k in keys])
        if self.store.record_cell(self._run_id, rec, [*(r.key for r in search), key]):
            self._finished += 1
            self._done_total += 1
            self.listener.cell_finished(rec, self._done_total, len(self.cells))

    def _metric(self, cell: CellPlan) -> str:
        return self.store.source_metric(cell.source_id)

