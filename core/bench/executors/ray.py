"""Run a suite's jobs as Ray tasks (``featbench run --executor ray [--ray-address HOST:PORT]``).

The driver (:class:`featbench.bench.driver.Runner`) plans, skips what the store holds and records every result
itself, exactly as with the local executor; this module only computes. Per feature source, one *load*
task builds the :class:`FeatureSet` (extracting what the feature cache lacks) and returns it into Ray's
object store; the source's jobs (K-stacks of one cell: search chunks, then the refit) run as *train*
tasks that take that object as an argument, so every node reads it from the object store and nothing is
loaded or extracted twice. Sources that share a (data set, backbone) pair are loaded one after the other,
so a pair is extracted once even where file locks do not reach across nodes; at most
:attr:`RayConfig.max_open_sources` feature sets are held at a time, each released once its jobs are done.

Resources: every task asks for ``threads`` CPUs (``--threads``, default 1) and trains with exactly that
many torch threads (the thread count changes the last bits of CPU results, so equal thread counts give
equal numbers under both executors); with a CUDA device, ``--ray-gpus`` GPUs (default 1, a fraction packs
tasks on one GPU). Retries: a task whose worker or node dies, or that raises ``OSError`` (a shared file
system's hiccup), is run again up to ``--ray-retries`` times (Ray's ``max_retries`` /
``retry_exceptions``); any other exception is deterministic for a seeded job (bad input, a bug) and is
not retried. A job that still fails comes back as a :class:`JobFailure`: its cells are reported failed
and the others go on. Ray is imported only here, and only when this executor is asked for.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import warnings
from collections import deque
from collections.abc import Iterator

import attrs

from ...errors import ConfigError, first_line
from ...inputs.features import FeatureSet
from ...records import REFIT
from ..jobs import JobFailure, JobResult, LoadOptions, TrainJob, execute_job, load_source
from ..options import option
from ..plan import SourceSpec
from ..progress import Listener
from ..threads import torch_threads

INSTALL_HINT = "pip install 'featbench[ray]'"
RETRIED_EXCEPTIONS = (OSError,)  # besides worker and node deaths, which Ray always retries


def import_ray():
    """The ``ray`` module, or a one-line :class:`ConfigError` naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray, which is not installed", INSTALL_HINT) from None
    return ray


@attrs.frozen
class Options:
    """The Ray executor's run options (flags and suite keys of ``featbench run``)."""

    ray_address: str | None = option(
        None,
        metavar="HOST:PORT",
        help="the Ray cluster (`ray start --head` prints it; default: RAY_ADDRESS, a cluster "
        "on this machine, or a new local one)",
    )
    ray_gpus: float = option(1.0, metavar="F", help="GPUs per Ray task on CUDA (0.5 puts two tasks on a GPU)")
    ray_retries: int = option(
        3, metavar="N", help="re-runs of a Ray task whose worker or node died; errors are not retried"
    )

    def check(self, spec) -> None:
        if not self.ray_gpus > 0:
            raise ConfigError(
                f"--ray-gpus {self.ray_gpus} must be above 0", "e.g. --ray-gpus 1, or 0.5 for two tasks per GPU"
            )
        if self.ray_retries < 0:
            raise ConfigError(f"--ray-retries {self.ray_retries} must be >= 0", "e.g. --ray-retries 3")
        if self.ray_address is not None and spec.executor != "ray":
            raise ConfigError(
                f"--ray-address {self.ray_address} is given but the executor is {spec.executor}", "add --executor ray"
            )


_DEFAULT = Options()


@attrs.frozen
class RayConfig:
    """How jobs become Ray tasks (from a run's :class:`Options` and ``--threads``)."""

    address: str | None = (
        _DEFAULT.ray_address
    )  # a running cluster (HOST:PORT, ``auto``); None: RAY_ADDRESS, a local one, or a new one
    cpus: int = 1  # CPUs per task, and torch threads per task
    gpus: float = _DEFAULT.ray_gpus  # GPUs per task when jobs run on CUDA
    retries: int = _DEFAULT.ray_retries  # re-runs after a worker or node death (or an OSError)
    max_open_sources: int = 0

    @classmethod
    def from_spec(cls, spec) -> RayConfig:
        return cls(address=spec.ray_address, cpus=spec.threads or 1, gpus=spec.ray_gpus, retries=spec.ray_retries)


# ---- the cluster --------------------------------------------------------------------------------


def _check_reachable(address: str) -> None:
    """Fail fast, in one line, when nothing listens at HOST:PORT (``ray.init`` would retry for a long time)."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(
            f"--ray-address {address!r} is not HOST:PORT",
            "e.g. --ray-address 10.0.0.1:6379 (the head's `ray start --head` address)",
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise ConfigError(
            f"no Ray cluster reachable at {address} ({exc.strerror or exc})",
            "start one with `ray start --head` on the head node and pass its address, or leave --ray-address out "
            "for a local cluster",
        ) from None


def init(address: str | None) -> bool:
    """Connect this process to the Ray cluster at ``address`` (None: ``RAY_ADDRESS``, a cluster started on
    this machine, else a new local one). False if it was already connected (then nothing changes)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address not in (None, "auto", "local"):
        _check_reachable(address)
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, TimeoutError, ValueError, ray.exceptions.RayError) as exc:
        where = f"at {address}" if address else "(local)"
        raise ConfigError(
            f"cannot connect to the Ray cluster {where}: {first_line(exc)}",
            "start one with `ray start --head` and pass its HOST:PORT to --ray-address",
        ) from None
    return True


@contextlib.contextmanager
def connect(address: str | None) -> Iterator[object]:
    """:func:`init` for the block; yields ``ray``. A connection made here is closed on the way out
    (``ray.shutdown()``, which also stops a local cluster started here); one that existed is left open."""
    made = init(address)
    try:
        yield import_ray()
    finally:
        if made:
            import_ray().shutdown()


@contextlib.contextmanager
def session(spec) -> Iterator[str]:
    """Connected to the cluster of ``spec.ray_address`` for the block; yields the device jobs train on there."""
    with connect(spec.ray_address):
        yield cluster_device(spec.device)


def default_threads() -> int:
    """Torch threads (and CPUs) a task gets when ``--threads`` is not given."""
    return RayConfig().cpus


def create(spec, host, load: LoadOptions, listener: Listener) -> RayExecutor:
    return RayExecutor(host, load, RayConfig.from_spec(spec), listener)


def cluster_device(requested: str) -> str:
    """``--device`` for jobs on the cluster: ``auto`` is CUDA when the cluster has GPUs (the driver may
    have none); a CUDA index is dropped, since each task sees only the GPU Ray gave it."""
    ray = import_ray()
    gpus = ray.cluster_resources().get("GPU", 0)
    if requested == "auto":
        return "cuda" if gpus else "cpu"
    if requested.startswith("cuda"):
        if not gpus:
            raise ConfigError("--device cuda was asked for but the Ray cluster has no GPU", "use --device cpu or auto")
        return "cuda"
    return requested


# ---- worker side --------------------------------------------------------------------------------

_HOSTS: dict = {}  # plugin recipe -> plugin host, built once per worker process


def _worker_host(recipe):
    if recipe not in _HOSTS:
        _HOSTS[recipe] = recipe.load()
    return _HOSTS[recipe]


def _load_task(source: SourceSpec, recipe, options: LoadOptions, threads: int) -> tuple[bool, FeatureSet]:
    """Worker: the source's feature set (extracted into the shared cache if missing). The first return
    value is a small flag the driver waits on, so the feature set itself never travels to the driver."""
    with torch_threads(threads):
        return True, load_source(source, _worker_host(recipe), options)


def _train_task(job: TrainJob, fs: FeatureSet, recipe) -> JobResult:
    """Worker: one job on its feature set (resolved by Ray from the load task's object: its arrays are
    read-only views of the object store, which training only reads), with ``job.threads`` torch threads."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
        return execute_job(job, fs, _worker_host(recipe))


# ---- driver side --------------------------------------------------------------------------------


@attrs.define
class _Source:
    spec: SourceSpec
    pairs: frozenset  # (data set, backbone) pairs its load may extract
    queue: deque = attrs.field(factory=deque)  # jobs not yet handed to Ray
    running: int = 0  # train tasks in Ray
    state: str = "idle"  # idle | loading | ready | broken
    features: object = None  # ObjectRef of the FeatureSet while ready
    error: JobFailure | None = None  # why it is broken (a failure of its first job, reused for the others)


class RayExecutor:
    """Runs :class:`TrainJob` s as Ray tasks (see the module docstring); the driver records the results."""

    def __init__(self, host, options: LoadOptions, config: RayConfig = RayConfig(), listener: Listener | None = None):
        self.ray = ray = import_ray()
        if host.recipe is None:
            raise ConfigError(
                "the Ray executor needs a plugin host built by featbench.load_plugins",
                "build it with load_plugins(...) so that workers can rebuild it",
            )
        init(config.address)  # the Python API without featbench.cli: connected for the process' lifetime
        self.config = config
        self.recipe = host.recipe
        # every node resolves the cache at the same place: the driver's (share it, see README)
        from ...inputs.cache import default_cache_dir

        self.options = attrs.evolve(options, progress=False, cache_dir=options.cache_dir or default_cache_dir())
        self.listener = listener or Listener()
        self._sources: dict[str, _Source] = {}  # in first-submission order
        self._tasks: dict[object, tuple[str, object]] = {}  # ObjectRef -> ("load", source id) | ("train", job)
        self._failed: deque[JobFailure] = deque()  # failures found by the driver, to yield
        self._busy_pairs: set = set()
        self._load_fn = ray.remote(_load_task)
        self._train_fn = ray.remote(_train_task)
        self._open_limit = config.max_open_sources or max(2, self._slots())
        self._check_feasible(self.options.device.startswith("cuda"))

    def _slots(self) -> int:
        """Tasks the cluster runs at once (CPU tasks; GPU tasks when it has GPUs)."""
        res = self.ray.cluster_resources()
        cpu = int(res.get("CPU", 0) // self.config.cpus)
        gpu = int(res.get("GPU", 0) // self.config.gpus) if res.get("GPU") else 0
        return gpu or cpu

    def _resources(self, cuda: bool) -> dict:
        return {
            "num_cpus": self.config.cpus,
            "num_gpus": self.config.gpus if cuda else 0,
            "max_retries": self.config.retries,
            "retry_exceptions": list(RETRIED_EXCEPTIONS),
        }

    def _check_feasible(self, cuda: bool) -> None:
        """A task no node can hold would wait forever: say so instead."""
        nodes = [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]
        cpus = max((r.get("CPU", 0) for r in nodes), default=0)
        if cpus < self.config.cpus:
            raise ConfigError(
                f"--threads {self.config.cpus}: no node of the Ray cluster has that many CPUs (largest: {cpus:g})",
                "lower --threads or add larger nodes",
            )
        gpus = max((r.get("GPU", 0) for r in nodes), default=0)
        if cuda and gpus < self.config.gpus:
            raise ConfigError(
                f"--ray-gpus {self.config.gpus:g}: no node of the Ray cluster has that many GPUs (largest: {gpus:g})",
                "lower --ray-gpus or use --device cpu",
            )

    # -- the Executor protocol -------------------------------------------------------------

    def submit(self, job: TrainJob) -> None:
        src = self._sources.get(job.source_id)
        if src is None:
            pairs = (
                frozenset((job.source.dataset, b) for b in job.source.backbones)
                if not (job.source.files or job.source.builtin)
                else frozenset()
            )
            src = self._sources[job.source_id] = _Source(job.source, pairs)
        if job.phase == REFIT:
            src.queue.appendleft(job)  # finish cells early
        else:
            src.queue.append(job)

    def completed(self) -> Iterator[JobResult | JobFailure]:
        try:
            while True:
                self._schedule()
                while self._failed:
                    failure = self._failed.popleft()
                    yield failure
                    self._release(failure.job.source_id)
                if not self._tasks:
                    if any(s.queue for s in self._sources.values()):
                        continue  # the runner submitted more while a failure was out
                    return
                (ref,), _ = self.ray.wait(list(self._tasks), num_returns=1)
                kind, what = self._tasks.pop(ref)
                if kind == "load":
                    self._loaded(what, ref)
                    continue
                job: TrainJob = what
                src = self._sources[job.source_id]
                src.running -= 1
                try:
                    result = self.ray.get(ref)
                except self.ray.exceptions.RayError as exc:
                    yield _failure(job, exc, self.ray)
                else:
                    for e in range(1, job.settings.epochs + 1):  # progress comes in one piece per job
                        self.listener.epoch(job, e)
                    yield result
                self._release(job.source_id)
        finally:
            for ref in list(self._tasks):  # the run stopped early (Ctrl-C, an error in the driver)
                with contextlib.suppress(Exception):
                    self.ray.cancel(ref, force=True)
            self._tasks.clear()

    # -- scheduling ------------------------------------------------------------------------

    def _open(self) -> int:
        return sum(s.state in ("loading", "ready") for s in self._sources.values())

    def _schedule(self) -> None:
        """Load sources (in order, within the open limit, one load per (data set, backbone) pair at a
        time) and hand the jobs of loaded sources to Ray."""
        for sid, src in self._sources.items():
            if not src.queue:
                continue
            if src.state == "broken":
                while src.queue:
                    self._failed.append(attrs.evolve(src.error, job=src.queue.popleft()))
            elif src.state == "ready":
                while src.queue:
                    job = src.queue.popleft()
                    ref = self._train_fn.options(**self._resources(job.settings.device.startswith("cuda"))).remote(
                        attrs.evolve(job, threads=self.config.cpus), src.features, self.recipe
                    )  # threads = CPUs asked for
                    self._tasks[ref] = ("train", job)
                    src.running += 1
                    self.listener.job_started(job)
            elif src.state == "idle" and self._open() < self._open_limit and not (src.pairs & self._busy_pairs):
                self.listener.loading(src.spec)
                cuda = self.options.device.startswith("cuda") and bool(src.pairs)  # extraction runs on the GPU
                flag, features = self._load_fn.options(num_returns=2, **self._resources(cuda)).remote(
                    src.spec, self.recipe, self.options, self.config.cpus
                )
                self._tasks[flag] = ("load", sid)
                src.state, src.features = "loading", features
                self._busy_pairs |= src.pairs

    def _loaded(self, sid: str, flag) -> None:
        src = self._sources[sid]
        self._busy_pairs -= src.pairs
        try:
            self.ray.get(flag)
        except self.ray.exceptions.RayError as exc:
            src.state, src.features = "broken", None
            src.error = _failure(src.queue[0], exc, self.ray) if src.queue else None
            if src.error is None:
                src.state = "idle"
        else:
            src.state = "ready"

    def _release(self, sid: str) -> None:
        """Drop a source's feature set once nothing of it is queued or running (the runner has already
        submitted the refits that its last result unlocked); a later job loads it again."""
        src = self._sources.get(sid)
        if src is not None and src.state == "ready" and not src.queue and not src.running:
            src.state, src.features = "idle", None


def _failure(job: TrainJob, exc: BaseException, ray) -> JobFailure:
    """A job's failure from what ``ray.get`` raised: the task's own exception, or the death of its worker."""
    cause = getattr(exc, "cause", None) if isinstance(exc, ray.exceptions.RayTaskError) else None
    failure = JobFailure.from_exception(job, cause if isinstance(cause, BaseException) else exc)
    return attrs.evolve(failure, detail=str(exc))  # Ray's text carries the worker's traceback
